"""The format-free front door: find a checkpoint folder, tell its format, load it, save one (see the package docstring)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal

import torch

from itd_core.atomic import atomic_folder, interrupted_swap
from itd_core.encoders import parse_dtype
from itd_core.errors import ItdError
from itd_core.hub import hub_snapshot
from itd_core.sae import TopKSAE
from itd_core.sae_formats import itd
from itd_core.sae_formats.registry import SaeFormat, checkpoint_files, formats, get_format
from itd_core.sae_formats.streaming import WEIGHT_DTYPES, materialise


def detect_format(path: str | os.PathLike[str]) -> SaeFormat:
    """The checkpoint format of a folder, told by its files (see the package docstring)."""
    folder = _existing_folder(path)
    complete = [handler.name for handler in formats() if all((folder / name).is_file() for name in handler.files)]
    if len(complete) == 1:
        return complete[0]
    if len(complete) > 1:
        raise ItdError(
            f"{folder} holds files of several SAE formats ({', '.join(complete)}); "
            f"pass format= one of them explicitly"
        )
    partial = [
        (handler.name, [name for name in handler.files if not (folder / name).is_file()])
        for handler in formats()
        if any((folder / name).is_file() for name in handler.files)
    ]
    if partial:
        fmt, missing = partial[0]
        raise ItdError(f"{folder} looks like a '{fmt}' SAE checkpoint but {', '.join(missing)} is missing")
    expected = "; ".join(f"{handler.name}: {' + '.join(handler.files)}" for handler in formats())
    raise ItdError(f"{folder} is not an SAE checkpoint folder: expected one of {expected}")


def load_sae(
    path: str | os.PathLike[str],
    *,
    format: SaeFormat | Literal["auto"] = "auto",
    dtype: torch.dtype | str | None = torch.float32,
    device: torch.device | str = "cpu",
) -> TopKSAE:
    """Load an SAE checkpoint folder into a :class:`TopKSAE` of ``dtype`` (None: the dtype it is stored in) on
    ``device``; sets ``sae.fingerprint``."""
    folder = _existing_folder(path)
    handler = get_format(detect_format(folder) if format == "auto" else format)
    target_dtype = None if dtype is None else _weight_dtype(dtype)
    target_device = _check_device(device)
    if sys.byteorder != "little":
        raise ItdError("SAE checkpoints are little-endian; this machine is not")
    return materialise(handler.read(folder), target_dtype, target_device)


def save_sae(sae: TopKSAE, path: str | os.PathLike[str], *, format: SaeFormat = "native") -> Path:
    """Write ``sae`` (in its own dtype) as a checkpoint folder, atomically; returns the folder.

    The folder is built next to ``path`` under a temporary name and renamed into place, so a crash never
    leaves a half-written checkpoint. An existing folder is replaced only if it holds nothing but
    checkpoint files.
    """
    handler = get_format(format)
    _check_saveable(sae)
    folder = Path(path)
    _check_replaceable(folder)
    with atomic_folder(folder) as tmp:
        handler.write(sae, tmp)
    return folder


def resolve_sae_path(ref: str | os.PathLike[str], subfolder: str | None = None) -> Path:
    """A local checkpoint folder, or a Hugging Face hub repo id (+ subfolder) fetched into the hub cache.

    ``HF_HUB_OFFLINE=1`` is honoured at call time: then only the local cache is looked at.
    """
    local = Path(ref).expanduser()
    if local.exists():
        folder = local / subfolder if subfolder else local
        if not folder.is_dir():
            raise ItdError(f"{folder} is not a folder (expected an SAE checkpoint folder)")
        return folder
    repo_id = str(ref)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ItdError(f"{repo_id}: no such local folder, and not a Hugging Face hub repo id (owner/name)")
    local_hint = (
        f"a path to the SAE checkpoint folder holding {itd.CONFIG_FILENAME} + {itd.WEIGHTS_FILENAME}, "
        f"or another supported format"
    )
    return hub_snapshot(repo_id, what="SAE", subfolder=subfolder, local_hint=local_hint)


def _existing_folder(path: str | os.PathLike[str]) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        swapped_out = interrupted_swap(folder)
        if swapped_out is not None:
            raise ItdError(f"{folder}: no such folder, but a save that was interrupted left the previous checkpoint at "
                           f"{swapped_out}: rename it back to {folder.name} to use it")
        raise ItdError(f"{folder}: no such folder (expected an SAE checkpoint folder)")
    if not folder.is_dir():
        raise ItdError(f"{folder} is a file; pass the checkpoint folder that holds it")
    return folder


def _weight_dtype(dtype: torch.dtype | str) -> torch.dtype:
    resolved = parse_dtype(dtype)
    if resolved not in WEIGHT_DTYPES:
        raise ItdError(f"unsupported dtype {resolved}: use float32, bfloat16 or float16")
    return resolved


def _check_device(device: torch.device | str) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ItdError(f"unknown device {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ItdError(f"device {device!r} asked for, but CUDA is not available here")
    if resolved.type == "meta":
        raise ItdError("cannot load weights onto the meta device")
    return resolved


def _check_saveable(sae: TopKSAE) -> None:
    if not isinstance(sae, TopKSAE):
        raise ItdError(f"save_sae needs a TopKSAE, got {type(sae).__name__}")
    cfg = sae.config
    expected = {"W_enc": (cfg.n_latents, cfg.d_model), "W_dec": (cfg.n_latents, cfg.d_model),
                "b_lat": (cfg.n_latents,), "b_pre": (cfg.d_model,), "stats_last_nonzero": (cfg.n_latents,)}
    for name, shape in expected.items():
        tensor = getattr(sae, name)
        if tuple(tensor.shape) != shape:
            raise ItdError(f"cannot save: {name} has shape {list(tensor.shape)} but the config needs {list(shape)}")
        if tensor.device.type == "meta":
            raise ItdError(f"cannot save: {name} is on the meta device (no values)")
        if name != "stats_last_nonzero" and tensor.dtype not in WEIGHT_DTYPES:
            raise ItdError(f"cannot save: {name} is {tensor.dtype}; expected float32, bfloat16 or float16")


def _check_replaceable(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ItdError(f"{folder} exists and is not a folder; not overwriting it")
    if folder.is_dir():
        keep = checkpoint_files()
        others = sorted(entry.name for entry in folder.iterdir() if entry.name not in keep)
        if others:
            raise ItdError(
                f"{folder} already holds other files ({', '.join(others[:5])}); not overwriting it - "
                f"save into a new or empty folder"
            )
