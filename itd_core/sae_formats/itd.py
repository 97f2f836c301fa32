"""``itd`` - the ItD / OpenAI ``sparse_autoencoder`` format, as the paper's released checkpoints use it::

    config.json      {"n_dirs_local": n, "d_model": d, "k": k, "auxk": auxk, "dead_steps_threshold": int}
    state_dict.pth   torch.save({"state_dict": {
                         "encoder.weight": [n, d],      = W_enc
                         "decoder.weight": [d, n],      = W_dec.T
                         "pre_bias": [d],               = b_pre
                         "latent_bias": [n],            = b_lat
                         "stats_last_nonzero": [n] int64}})

Read with ``torch.load(weights_only=True, mmap=True)``: a pickle that carries code is refused, never run.
``hook_layer`` / ``model_id`` have no place in this format and are not kept.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from itd_core.errors import ItdError
from itd_core.sae import TopKSAE
from itd_core.sae_formats.registry import SaeFormatHandler, make_config, read_json, register, require_files, write_json
from itd_core.sae_formats.streaming import Checkpoint, Source, writable_bytes

CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "state_dict.pth"


def read(folder: Path) -> Checkpoint:
    config_file, weights_file = require_files(folder, "itd")
    raw = read_json(config_file)
    for key in ("n_dirs_local", "d_model", "k"):
        if key not in raw:
            raise ItdError(f"{config_file}: missing key '{key}'")
    config = make_config(
        config_file,
        n_latents=raw["n_dirs_local"],
        d_model=raw["d_model"],
        k=raw["k"],
        auxk=raw.get("auxk", 256),
        dead_steps_threshold=raw.get("dead_steps_threshold", 1000),
    )
    obj = _torch_load(weights_file)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ItdError(f"{weights_file}: expected a dict with a 'state_dict' dict, got {type(obj).__name__}")
    keys = {"W_enc": "encoder.weight", "W_dec": "decoder.weight", "b_lat": "latent_bias", "b_pre": "pre_bias"}
    missing = [key for key in keys.values() if not isinstance(state.get(key), torch.Tensor)]
    if missing:
        raise ItdError(f"{weights_file}: missing tensor(s) {', '.join(missing)} in its state_dict")
    maps = _file_mappings(weights_file)
    sources = {
        name: _torch_source(weights_file, key, state[key], maps, transposed=(name == "W_dec"))
        for name, key in keys.items()
    }
    stats = state.get("stats_last_nonzero")
    stats_source = _torch_source(weights_file, "stats_last_nonzero", stats, maps) if isinstance(stats, torch.Tensor) else None
    return Checkpoint(config, weights_file, sources, stats_source, keep=obj)


def write(sae: TopKSAE, folder: Path) -> None:
    cfg = sae.config
    write_json(
        folder / CONFIG_FILENAME,
        {
            "n_dirs_local": cfg.n_latents,
            "d_model": cfg.d_model,
            "k": cfg.k,
            "auxk": cfg.auxk,
            "dead_steps_threshold": cfg.dead_steps_threshold,
        },
    )
    state = {
        "encoder.weight": sae.W_enc.detach().cpu(),
        "decoder.weight": sae.W_dec.detach().T.contiguous().cpu(),
        "pre_bias": sae.b_pre.detach().cpu(),
        "latent_bias": sae.b_lat.detach().cpu(),
        "stats_last_nonzero": sae.stats_last_nonzero.detach().to("cpu", torch.int64),
    }
    path = folder / WEIGHTS_FILENAME
    with open(path, "wb") as handle:
        torch.save({"state_dict": state}, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
            raise ItdError(
                f"{path}: refused to load: its pickle carries code or objects other than tensors and plain "
                f"containers, which is never unpickled here" + (f" ({detail})" if detail else "")
            ) from exc
        raise ItdError(f"{path}: corrupt pickle ({exc})") from exc
    except RuntimeError as exc:
        text = str(exc)
        if "mmap can only be used" in text:
            raise ItdError(
                f"{path}: not a torch zip checkpoint (truncated, corrupt, or saved in the legacy format; "
                f"re-save it with a recent torch.save)"
            ) from exc
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ItdError(f"{path}: truncated or corrupt torch checkpoint ({first})") from exc
    except (EOFError, ValueError, OSError) as exc:
        raise ItdError(f"{path}: truncated or corrupt torch checkpoint ({type(exc).__name__}: {exc})") from exc


def _file_mappings(path: Path) -> list[tuple[int, int, int]]:
    """``(start, end, file offset)`` of each memory mapping of ``path`` in this process (Linux), else []."""
    target = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].rstrip("\n") == target:
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    found.append((start, end, int(parts[2], 16)))
    except OSError:
        return []
    return found


def _torch_source(
    path: Path, key: str, tensor: torch.Tensor, maps: list[tuple[int, int, int]], *, transposed: bool = False
) -> Source:
    """Where a tensor from ``torch.load(mmap=True)`` lies in the file: its address in the mapping tells."""
    source = Source(key, tuple(tensor.shape), tensor.dtype, transposed, view=tensor)
    if not tensor.is_contiguous() or tensor.numel() == 0:
        return source
    address = tensor.data_ptr()
    for start, end, file_offset in maps:
        if start <= address and address + source.nbytes <= end:
            offset = address - start + file_offset
            with open(path, "rb") as handle:  # cross-check a few bytes before trusting the offset
                handle.seek(offset)
                probe = handle.read(min(64, source.nbytes))
            if probe == bytes(writable_bytes(tensor.reshape(-1)[: len(probe) // tensor.element_size()])):
                source.offset = offset
            break
    return source


register(SaeFormatHandler("itd", (CONFIG_FILENAME, WEIGHTS_FILENAME), read, write))
