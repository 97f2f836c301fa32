"""Save/load of TopK SAEs in the ItD, SAELens and native formats (tiny sizes)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from itd_core.errors import ItdError
from itd_core.sae import SAEConfig, TopKSAE
from itd_core.sae_formats import detect_format, fingerprint, load_sae, native, resolve_sae_path, save_sae, weights_fingerprint

N, D, K = 64, 16, 4
WEIGHTS = ("W_enc", "W_dec", "b_lat", "b_pre")
FORMATS = ("itd", "saelens", "native")


def build_sae(seed: int = 0, **overrides) -> TopKSAE:
    cfg = SAEConfig(**{"d_model": D, "n_latents": N, "k": K, **overrides})
    sae = TopKSAE.random(cfg, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_lat.copy_(torch.randn(cfg.n_latents, generator=generator))
        sae.b_pre.copy_(torch.randn(cfg.d_model, generator=generator))
    sae.stats_last_nonzero.copy_(torch.randint(0, 10_000, (cfg.n_latents,), generator=generator))
    return sae


def write_itd_by_hand(folder: Path, sae: TopKSAE, *, config: dict | None = None, extra: dict | None = None) -> Path:
    """An ItD checkpoint exactly as the paper's release lays it out (not via save_sae)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"n_dirs_local": sae.n_latents, "d_model": sae.d_model, "k": sae.k, "auxk": 256, "dead_steps_threshold": 1000}
    (folder / "config.json").write_text(json.dumps({**cfg, **(config or {})}))
    state = {
        "encoder.weight": sae.W_enc.detach().clone(),
        "decoder.weight": sae.W_dec.detach().T.contiguous(),
        "pre_bias": sae.b_pre.detach().clone(),
        "latent_bias": sae.b_lat.detach().clone(),
        "stats_last_nonzero": sae.stats_last_nonzero.clone(),
    }
    torch.save({"state_dict": state, **(extra or {})}, folder / "state_dict.pth")
    return folder


def assert_same_weights(a: TopKSAE, b: TopKSAE, *, stats: bool = True) -> None:
    for name in WEIGHTS + (("stats_last_nonzero",) if stats else ()):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.fixture
def small_blocks(monkeypatch):
    """Stream in many tiny blocks (several per tensor, a short last one)."""
    monkeypatch.setattr(fingerprint, "BLOCK_BYTES", 7 * D * 4)


# ---- the ItD format as released


def test_loads_a_hand_built_itd_checkpoint(tmp_path):
    sae = build_sae()
    folder = write_itd_by_hand(tmp_path / "itd", sae)

    assert detect_format(folder) == "itd"
    loaded = load_sae(folder)

    assert loaded.config.n_latents == N and loaded.config.d_model == D and loaded.config.k == K
    assert_same_weights(loaded, sae)
    assert loaded.W_enc.dtype == torch.float32 and loaded.W_enc.device.type == "cpu"
    assert loaded.fingerprint == weights_fingerprint(sae)


def test_loads_an_itd_checkpoint_with_a_strided_decoder(tmp_path):
    """A decoder saved as a transposed view (not contiguous) is read through torch's mapping instead."""
    sae = build_sae()
    folder = write_itd_by_hand(tmp_path / "itd", sae)
    state = torch.load(folder / "state_dict.pth", weights_only=True)
    state["state_dict"]["decoder.weight"] = sae.W_dec.detach().clone().T
    assert not state["state_dict"]["decoder.weight"].is_contiguous()
    torch.save(state, folder / "state_dict.pth")
    loaded = load_sae(folder)
    assert_same_weights(loaded, sae)
    assert loaded.fingerprint == weights_fingerprint(sae)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fmt", FORMATS)
def test_loads_onto_cuda(tmp_path, fmt):
    sae = build_sae()
    loaded = load_sae(save_sae(sae, tmp_path / fmt, format=fmt), device="cuda", dtype="bf16")
    assert loaded.W_enc.device.type == "cuda" and loaded.W_enc.dtype == torch.bfloat16
    assert loaded.fingerprint == weights_fingerprint(sae)
    assert torch.equal(loaded.W_dec.cpu(), sae.W_dec.to(torch.bfloat16))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_without_cuda(tmp_path):
    folder = save_sae(build_sae(), tmp_path / "ck")
    with pytest.raises(ItdError, match="CUDA is not available"):
        load_sae(folder, device="cuda")


def test_save_itd_writes_the_released_layout(tmp_path):
    sae = build_sae()
    folder = save_sae(sae, tmp_path / "itd", format="itd")

    assert json.loads((folder / "config.json").read_text()) == {
        "n_dirs_local": N, "d_model": D, "k": K, "auxk": 256, "dead_steps_threshold": 1000,
    }
    state = torch.load(folder / "state_dict.pth", weights_only=True)["state_dict"]
    assert set(state) == {"encoder.weight", "decoder.weight", "pre_bias", "latent_bias", "stats_last_nonzero"}
    assert torch.equal(state["encoder.weight"], sae.W_enc)
    assert torch.equal(state["decoder.weight"], sae.W_dec.T) and state["decoder.weight"].shape == (D, N)
    assert torch.equal(state["pre_bias"], sae.b_pre) and torch.equal(state["latent_bias"], sae.b_lat)
    assert state["stats_last_nonzero"].dtype == torch.int64


def test_saelens_files_read_by_the_safetensors_library(tmp_path):
    sae = build_sae(hook_layer="text_model.encoder.layers.9", model_id="org/model")
    folder = save_sae(sae, tmp_path / "sl", format="saelens")

    with safe_open(folder / "sae_weights.safetensors", framework="pt") as weights:
        assert set(weights.keys()) == {"W_enc", "W_dec", "b_enc", "b_dec"}
        assert torch.equal(weights.get_tensor("W_enc"), sae.W_enc.T)
        assert torch.equal(weights.get_tensor("W_dec"), sae.W_dec)
        assert torch.equal(weights.get_tensor("b_enc"), sae.b_lat)
        assert torch.equal(weights.get_tensor("b_dec"), sae.b_pre)
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["d_in"] == D and cfg["d_sae"] == N and cfg["k"] == K
    assert cfg["activation_fn_kwargs"] == {"k": K}
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["hook_name"] == cfg["metadata"]["hook_name"] == "text_model.encoder.layers.9"
    assert cfg["model_name"] == cfg["metadata"]["model_name"] == "org/model"


def test_native_files_read_by_the_safetensors_library(tmp_path):
    sae = build_sae()
    folder = save_sae(sae, tmp_path / "nat")

    config = json.loads((folder / "sae_config.json").read_text())
    assert config["format"] == "itd-explorer-sae" and config["format_version"] == 1
    with safe_open(folder / "sae.safetensors", framework="pt") as weights:
        for name in WEIGHTS + ("stats_last_nonzero",):
            assert torch.equal(weights.get_tensor(name), getattr(sae, name)), name


# ---- round trips and fingerprints


@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
def test_round_trip_itd_saelens_native_itd_is_bit_exact(tmp_path, request, blocks):
    if blocks == "many blocks":
        request.getfixturevalue("small_blocks")
    original = build_sae()
    start = load_sae(write_itd_by_hand(tmp_path / "itd0", original))

    via_saelens = load_sae(save_sae(start, tmp_path / "sl", format="saelens"))
    assert_same_weights(via_saelens, original, stats=False)  # SAELens keeps no stats_last_nonzero
    assert not via_saelens.stats_last_nonzero.any()
    via_native = load_sae(save_sae(via_saelens, tmp_path / "nat", format="native"))
    assert_same_weights(via_native, via_saelens)
    back = load_sae(save_sae(via_native, tmp_path / "itd1", format="itd"))
    assert_same_weights(back, via_saelens)
    assert start.fingerprint == via_saelens.fingerprint == via_native.fingerprint == back.fingerprint

    # and the formats that keep stats_last_nonzero keep it
    kept = load_sae(save_sae(load_sae(save_sae(start, tmp_path / "nat2"), format="native"), tmp_path / "itd2", format="itd"))
    assert_same_weights(kept, original)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, "bf16", "fp16"])
def test_fingerprint_is_the_same_across_formats_and_load_dtypes(tmp_path, fmt, dtype, small_blocks):
    sae = build_sae(seed=3)
    loaded = load_sae(save_sae(sae, tmp_path / fmt, format=fmt), dtype=dtype)
    assert loaded.fingerprint == weights_fingerprint(sae)


def test_fingerprint_follows_the_documented_recipe():
    sae = build_sae(seed=5)
    expected = hashlib.sha256()
    for name in WEIGHTS:
        tensor = getattr(sae, name).detach()
        expected.update(struct.pack(f"<q{tensor.dim()}q", tensor.dim(), *tensor.shape))
        expected.update(tensor.numpy().astype("<f4").tobytes())
    assert weights_fingerprint(sae) == expected.hexdigest()
    other = build_sae(seed=6)
    assert weights_fingerprint(other) != weights_fingerprint(sae)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16), (torch.bfloat16, torch.bfloat16),
     ("fp16", torch.float16), ("float16", torch.float16), ("float32", torch.float32), ("fp32", torch.float32)],
)
def test_load_dtype(tmp_path, dtype, expected):
    sae = build_sae()
    loaded = load_sae(write_itd_by_hand(tmp_path / "itd", sae), dtype=dtype)
    for name in WEIGHTS:
        tensor = getattr(loaded, name)
        assert tensor.dtype == expected, name
        assert torch.equal(tensor, getattr(sae, name).to(expected)), name
    assert loaded.stats_last_nonzero.dtype == torch.int64


@pytest.mark.parametrize("fmt", FORMATS)
def test_half_precision_checkpoints_are_saved_in_their_dtype(tmp_path, fmt):
    half = build_sae().to(torch.bfloat16)
    loaded = load_sae(save_sae(half, tmp_path / fmt, format=fmt), dtype="bf16")
    assert_same_weights(loaded, half, stats=fmt != "saelens")
    assert loaded.fingerprint == weights_fingerprint(half)
    widened = load_sae(tmp_path / fmt)  # bf16 -> fp32 is exact, same fingerprint
    assert widened.W_enc.dtype == torch.float32 and widened.fingerprint == loaded.fingerprint


@pytest.mark.parametrize("fmt", FORMATS)
def test_loaded_sae_encodes_and_decodes_like_the_original(tmp_path, fmt):
    sae = build_sae(seed=7)
    loaded = load_sae(save_sae(sae, tmp_path / fmt, format=fmt))
    x = torch.randn(3, 5, D, generator=torch.Generator().manual_seed(0))

    code, loaded_code = sae.encode(x), loaded.encode(x)
    assert torch.equal(code.indices.sort(-1).values, loaded_code.indices.sort(-1).values)
    assert torch.equal(loaded.encode_dense(x), sae.encode_dense(x))
    assert torch.equal(loaded(x), sae(x))
    assert torch.equal(loaded.decode_dense(sae.encode_dense(x)), sae.decode_dense(sae.encode_dense(x)))


def test_provenance_kept_by_native_and_saelens(tmp_path):
    sae = build_sae(hook_layer="h.9", model_id="org/m", auxk=32, dead_steps_threshold=7)
    for fmt in ("native", "saelens"):
        assert load_sae(save_sae(sae, tmp_path / fmt, format=fmt)).config == sae.config


# ---- saving


def test_save_replaces_an_existing_checkpoint_whole(tmp_path):
    folder = save_sae(build_sae(seed=1), tmp_path / "ck", format="itd")
    save_sae(build_sae(seed=2), folder, format="native")
    assert sorted(p.name for p in folder.iterdir()) == ["sae.safetensors", "sae_config.json"]
    assert load_sae(folder).fingerprint == weights_fingerprint(build_sae(seed=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp folders left


def test_save_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "notes.txt").write_text("mine")
    with pytest.raises(ItdError, match="notes.txt"):
        save_sae(build_sae(), tmp_path / "ck")


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(native, "write_safetensors", crash)
    with pytest.raises(OSError):
        save_sae(build_sae(), tmp_path / "ck")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old = build_sae(seed=1)
    folder = save_sae(old, tmp_path / "ck")
    monkeypatch.setattr(native, "write_safetensors", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_sae(build_sae(seed=2), folder)
    assert load_sae(folder).fingerprint == weights_fingerprint(old)


# ---- errors


def test_detect_format_lists_what_it_expects(tmp_path):
    with pytest.raises(ItdError, match="config.json.*state_dict.pth.*cfg.json.*sae_weights.safetensors"):
        detect_format(tmp_path)
    with pytest.raises(ItdError, match="no such folder"):
        detect_format(tmp_path / "absent")
    (tmp_path / "file.pth").write_bytes(b"x")
    with pytest.raises(ItdError, match="is a file"):
        load_sae(tmp_path / "file.pth")


def test_detect_format_refuses_mixed_folders(tmp_path):
    sae = build_sae()
    folder = write_itd_by_hand(tmp_path / "ck", sae)
    native.write(sae, folder)
    with pytest.raises(ItdError, match="several SAE formats"):
        detect_format(folder)
    assert load_sae(folder, format="native").fingerprint == weights_fingerprint(sae)


@pytest.mark.parametrize(("fmt", "remove"), [("itd", "state_dict.pth"), ("saelens", "cfg.json"), ("native", "sae.safetensors")])
def test_missing_file_is_named(tmp_path, fmt, remove):
    folder = save_sae(build_sae(), tmp_path / fmt, format=fmt)
    (folder / remove).unlink()
    with pytest.raises(ItdError, match=rf"{remove}.*missing"):
        load_sae(folder)
    with pytest.raises(ItdError, match=rf"{remove}: missing"):
        load_sae(folder, format=fmt)


@pytest.mark.parametrize(("fmt", "weights"), [("itd", "state_dict.pth"), ("saelens", "sae_weights.safetensors"), ("native", "sae.safetensors")])
@pytest.mark.parametrize("keep", [0.5, 0.99, 5])
def test_truncated_weights_are_refused(tmp_path, fmt, weights, keep):
    folder = save_sae(build_sae(), tmp_path / fmt, format=fmt)
    path = folder / weights
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(ItdError, match=rf"{weights}.*(truncated|corrupt)"):
        load_sae(folder)


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    folder = write_itd_by_hand(tmp_path / "itd", build_sae(), config={"n_dirs_local": 2 * N})
    with pytest.raises(ItdError, match=rf"encoder.weight' has shape \[{N}, {D}\].*n_latents={2 * N}.*\[{2 * N}, {D}\]"):
        load_sae(folder)


@pytest.mark.parametrize("fmt", ["saelens", "native"])
def test_shape_mismatch_in_safetensors_formats(tmp_path, fmt):
    folder = save_sae(build_sae(), tmp_path / fmt, format=fmt)
    config_file = folder / ("cfg.json" if fmt == "saelens" else "sae_config.json")
    config = json.loads(config_file.read_text())
    config["d_in" if fmt == "saelens" else "d_model"] = D + 1
    config_file.write_text(json.dumps(config))
    with pytest.raises(ItdError, match=rf"has shape .*d_model={D + 1}"):
        load_sae(folder)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class _PlainObject:
    pass


@pytest.mark.parametrize("payload", ["reduce", "object"])
def test_a_pickle_carrying_code_is_refused_not_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    extra = {"hook": _RunsCode(marker) if payload == "reduce" else _PlainObject()}
    folder = write_itd_by_hand(tmp_path / "itd", build_sae(), extra=extra)
    with pytest.raises(ItdError, match=r"state_dict.pth: refused to load: its pickle carries code"):
        load_sae(folder)
    assert not marker.exists()


def test_non_finite_weights_are_refused(tmp_path):
    sae = build_sae()
    with torch.no_grad():
        sae.W_dec[5, 3] = float("nan")
    folder = write_itd_by_hand(tmp_path / "itd", sae)
    with pytest.raises(ItdError, match="decoder.weight' holds NaN or inf"):
        load_sae(folder)


@pytest.mark.parametrize("dtype", ["fp8", "int8", "float64", torch.float64, 3])
def test_unknown_dtype_is_refused(tmp_path, dtype):
    folder = save_sae(build_sae(), tmp_path / "ck")
    with pytest.raises(ItdError, match="dtype"):
        load_sae(folder, dtype=dtype)


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ItdError, match="unknown SAE format 'gguf'"):
        save_sae(build_sae(), tmp_path / "ck", format="gguf")


def test_k_larger_than_n_is_refused(tmp_path):
    folder = write_itd_by_hand(tmp_path / "itd", build_sae(), config={"k": N + 1})
    with pytest.raises(ItdError, match=r"config.json: invalid SAE config .*k=65 exceeds n_latents=64"):
        load_sae(folder)


def _edit_cfg(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "cfg.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (folder / "cfg.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architecture": "jumprelu"}, "architecture 'jumprelu' .*not a TopK SAE"),
        ({"architecture": "standard", "activation_fn_str": "relu"}, "architecture 'standard' with activation 'relu'"),
        ({"apply_b_dec_to_input": False}, "apply_b_dec_to_input=False is not supported"),
        ({"normalize_activations": "layer_norm"}, "normalize_activations='layer_norm' is not supported"),
        ({"k": K + 1}, f"k={K + 1} disagrees with activation_fn_kwargs.k={K}"),
        ({"k": None, "activation_fn_kwargs": None}, "missing 'k'"),
    ],
)
def test_saelens_config_checks(tmp_path, changes, message):
    folder = save_sae(build_sae(), tmp_path / "sl", format="saelens")
    _edit_cfg(folder, **changes)
    with pytest.raises(ItdError, match=rf"cfg.json: {message}"):
        load_sae(folder)


@pytest.mark.parametrize(
    "changes",
    [
        {"k": None},  # k only in activation_fn_kwargs (older SAELens)
        {"activation_fn_kwargs": None, "activation_fn_str": None},  # k only at top level (current SAELens)
        {"architecture": "standard", "activation_fn_str": "topk"},  # older spelling of a TopK SAE
        {"metadata": None, "normalize_activations": None, "apply_b_dec_to_input": None},  # defaults
    ],
)
def test_saelens_config_variants_load(tmp_path, changes):
    sae = build_sae()
    folder = save_sae(sae, tmp_path / "sl", format="saelens")
    _edit_cfg(folder, **changes)
    loaded = load_sae(folder)
    assert loaded.k == K
    assert loaded.fingerprint == weights_fingerprint(sae)


def test_saelens_extra_tensor_is_refused(tmp_path):
    folder = save_sae(build_sae(), tmp_path / "sl", format="saelens")
    weights = folder / "sae_weights.safetensors"
    with safe_open(weights, framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    tensors["threshold"] = torch.zeros(N)
    from safetensors.torch import save_file

    save_file(tensors, weights)
    with pytest.raises(ItdError, match="unexpected tensor.*threshold"):
        load_sae(folder)


def test_native_format_version_is_checked(tmp_path):
    folder = save_sae(build_sae(), tmp_path / "nat")
    config = json.loads((folder / "sae_config.json").read_text())
    config["format_version"] = 2
    (folder / "sae_config.json").write_text(json.dumps(config))
    with pytest.raises(ItdError, match="format_version 2 is not supported"):
        load_sae(folder)


def test_corrupt_json_is_named(tmp_path):
    folder = write_itd_by_hand(tmp_path / "itd", build_sae())
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ItdError, match="config.json: unreadable or invalid JSON"):
        load_sae(folder)


# ---- resolving a checkpoint reference


def test_resolve_local_folder_and_subfolder(tmp_path):
    folder = save_sae(build_sae(), tmp_path / "repo" / "step_1000")
    assert resolve_sae_path(str(folder)) == folder
    assert resolve_sae_path(str(tmp_path / "repo"), "step_1000") == folder
    with pytest.raises(ItdError, match="not a folder"):
        resolve_sae_path(str(tmp_path / "repo"), "step_9")


def test_resolve_hub_id_not_cached_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so the id cannot be a relative local path
    with pytest.raises(ItdError) as caught:
        resolve_sae_path("itd-explorer-tests/no-such-sae-repo", "checkpoint_step_1000")
    message = str(caught.value)
    assert "itd-explorer-tests/no-such-sae-repo" in message and "checkpoint_step_1000" in message
    assert "local" in message and "HF_HUB_OFFLINE" in message


def test_resolve_rejects_nonsense(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ItdError, match="not a Hugging Face hub repo id"):
        resolve_sae_path("no/such/local/path")


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_with_uneven_blocks(tmp_path, fmt, small_blocks):
    """Shapes that leave short last blocks when reading and writing, transposed tensors included."""
    sae = build_sae(seed=9, n_latents=50, d_model=40, k=3)
    loaded = load_sae(save_sae(sae, tmp_path / fmt, format=fmt))
    assert_same_weights(loaded, sae, stats=fmt != "saelens")
    assert loaded.fingerprint == weights_fingerprint(sae)


@pytest.mark.parametrize(("fmt", "weights"), [("saelens", "sae_weights.safetensors"), ("native", "sae.safetensors")])
def test_a_forged_header_length_is_refused_before_it_is_read(tmp_path, fmt, weights):
    import struct

    folder = save_sae(build_sae(), tmp_path / fmt, format=fmt)
    path = folder / weights
    with open(path, "r+b") as handle:
        handle.write(struct.pack("<Q", 2**30))  # 1 GiB header in a small file
        handle.truncate(2**30 + 64)  # sparse: the length fits the file, so only the cap can stop the read
    with pytest.raises(ItdError, match=rf"{weights}.*header of 1,073,741,824 bytes"):
        load_sae(folder)


def test_saving_over_a_checkpoint_swaps_it_in_one_step_and_leaves_nothing_behind(tmp_path):
    folder = save_sae(build_sae(), tmp_path / "sae", format="native")
    other = TopKSAE.random(SAEConfig(d_model=D, n_latents=N, k=4), seed=99)
    save_sae(other, folder, format="native")
    assert load_sae(folder).fingerprint == weights_fingerprint(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"], "no .old or .partial left"


def test_an_interrupted_swap_is_reported_with_where_the_old_checkpoint_is(tmp_path):
    folder = save_sae(build_sae(), tmp_path / "sae", format="native")
    folder.rename(tmp_path / ".sae.1a2b3c4d.old")  # a writer killed between its two renames
    with pytest.raises(ItdError, match=r"interrupted.*\.sae\.1a2b3c4d\.old: rename it back to sae"):
        load_sae(folder)


def test_stale_unfinished_saves_are_removed_by_the_next_save(tmp_path):
    import os
    import time

    stale, fresh = tmp_path / ".sae.deadbeef.partial", tmp_path / ".sae.cafebabe.partial"
    for partial in (stale, fresh):
        partial.mkdir()
        (partial / "sae.safetensors").write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    save_sae(build_sae(), tmp_path / "sae", format="native")
    assert not stale.exists() and fresh.exists(), "a fresh one may be another writer's, still at work"
