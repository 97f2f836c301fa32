"""``saelens`` - SAELens (``SAE.load_from_disk``), architecture ``"topk"``::

    cfg.json                  {"architecture": "topk", "d_in": d, "d_sae": n, "k": k,
                               "activation_fn_kwargs": {"k": k}, "apply_b_dec_to_input": true,
                               "normalize_activations": "none", "dtype", "device", "hook_name", "model_name",
                               "metadata": {"hook_name", "model_name", "auxk", "dead_steps_threshold"}}
    sae_weights.safetensors   W_enc [d, n] = W_enc.T, W_dec [n, d], b_enc [n] = b_lat, b_dec [d] = b_pre

Loading accepts ``k`` at top level or in ``activation_fn_kwargs`` and the older spelling
``architecture="standard"`` + ``activation_fn_str="topk"``; it refuses any other architecture,
``apply_b_dec_to_input=false`` and ``normalize_activations`` other than ``"none"`` (their maths differs).
``stats_last_nonzero`` is not kept (SAELens would reject an extra tensor).
"""

from __future__ import annotations

from pathlib import Path

from itd_core.errors import ItdError
from itd_core.sae import TopKSAE
from itd_core.sae_formats.registry import SaeFormatHandler, make_config, read_json, register, require_files, write_json
from itd_core.sae_formats.safetensors_file import Stored, check_tensor_names, safetensors_sources, write_safetensors
from itd_core.sae_formats.streaming import Checkpoint

CONFIG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"


def read(folder: Path) -> Checkpoint:
    cfg_file, weights_file = require_files(folder, "saelens")
    cfg = read_json(cfg_file)
    architecture = cfg.get("architecture", "standard")
    activation = cfg.get("activation_fn_str")
    if not (architecture == "topk" or (architecture == "standard" and activation == "topk")):
        raise ItdError(
            f"{cfg_file}: architecture {architecture!r}"
            + (f" with activation {activation!r}" if activation else "")
            + " is not a TopK SAE; only architecture 'topk' can be loaded"
        )
    if cfg.get("apply_b_dec_to_input", True) is not True:
        raise ItdError(f"{cfg_file}: apply_b_dec_to_input={cfg['apply_b_dec_to_input']!r} is not supported (needs true)")
    for key in ("normalize_activations", "reshape_activations"):
        if cfg.get(key) not in (None, "none"):
            raise ItdError(f"{cfg_file}: {key}={cfg[key]!r} is not supported (needs 'none')")
    fn_kwargs = cfg.get("activation_fn_kwargs")
    k_top, k_kwargs = cfg.get("k"), fn_kwargs.get("k") if isinstance(fn_kwargs, dict) else None
    if k_top is not None and k_kwargs is not None and k_top != k_kwargs:
        raise ItdError(f"{cfg_file}: k={k_top} disagrees with activation_fn_kwargs.k={k_kwargs}")
    k = k_top if k_top is not None else k_kwargs
    for key, value in (("d_in", cfg.get("d_in")), ("d_sae", cfg.get("d_sae")), ("k", k)):
        if value is None:
            raise ItdError(f"{cfg_file}: missing '{key}'" + (" (or activation_fn_kwargs.k)" if key == "k" else ""))
    meta = cfg["metadata"] if isinstance(cfg.get("metadata"), dict) else {}
    config = make_config(
        cfg_file,
        d_model=cfg["d_in"],
        n_latents=cfg["d_sae"],
        k=k,
        auxk=meta.get("auxk", 256),
        dead_steps_threshold=meta.get("dead_steps_threshold", 1000),
        hook_layer=meta.get("hook_name", cfg.get("hook_name")),
        model_id=meta.get("model_name", cfg.get("model_name")),
    )
    stored = safetensors_sources(weights_file)
    keys = {"W_enc": "W_enc", "W_dec": "W_dec", "b_lat": "b_enc", "b_pre": "b_dec"}
    check_tensor_names(weights_file, stored, required=set(keys.values()), optional=set())
    sources = {name: stored[key] for name, key in keys.items()}
    sources["W_enc"].transposed = True
    return Checkpoint(config, weights_file, sources, None)


def write(sae: TopKSAE, folder: Path) -> None:
    cfg = sae.config
    meta = {
        "model_name": cfg.model_id,
        "hook_name": cfg.hook_layer,
        "auxk": cfg.auxk,
        "dead_steps_threshold": cfg.dead_steps_threshold,
    }
    write_json(
        folder / CONFIG_FILENAME,
        {
            "architecture": "topk",
            "d_in": cfg.d_model,
            "d_sae": cfg.n_latents,
            "k": cfg.k,
            "activation_fn_str": "topk",
            "activation_fn_kwargs": {"k": cfg.k},
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "dtype": str(sae.W_enc.dtype).removeprefix("torch."),
            "device": "cpu",
            "hook_name": cfg.hook_layer,
            "model_name": cfg.model_id,
            "metadata": meta,
        },
    )
    write_safetensors(
        folder / WEIGHTS_FILENAME,
        {
            "W_enc": Stored(sae.W_enc.detach(), transposed=True),
            "W_dec": Stored(sae.W_dec.detach()),
            "b_enc": Stored(sae.b_lat.detach()),
            "b_dec": Stored(sae.b_pre.detach()),
        },
    )


register(SaeFormatHandler("saelens", (CONFIG_FILENAME, WEIGHTS_FILENAME), read, write))
