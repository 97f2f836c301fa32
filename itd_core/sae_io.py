"""Load and save a :class:`~itd_core.sae.TopKSAE` in three on-disk formats, plus a format-free fingerprint.

Every checkpoint is a folder. The format is told by the files in it (:func:`detect_format`).

``itd`` - the ItD / OpenAI ``sparse_autoencoder`` format, as the paper's released checkpoints use it::

    config.json      {"n_dirs_local": n, "d_model": d, "k": k, "auxk": auxk, "dead_steps_threshold": int}
    state_dict.pth   torch.save({"state_dict": {
                         "encoder.weight": [n, d],      = W_enc
                         "decoder.weight": [d, n],      = W_dec.T
                         "pre_bias": [d],               = b_pre
                         "latent_bias": [n],            = b_lat
                         "stats_last_nonzero": [n] int64}})

    Read with ``torch.load(weights_only=True, mmap=True)``: a pickle that carries code is refused, never run.
    ``hook_layer`` / ``model_id`` have no place in this format and are not kept.

``saelens`` - SAELens (``SAE.load_from_disk``), architecture ``"topk"``::

    cfg.json                  {"architecture": "topk", "d_in": d, "d_sae": n, "k": k,
                               "activation_fn_kwargs": {"k": k}, "apply_b_dec_to_input": true,
                               "normalize_activations": "none", "dtype", "device", "hook_name", "model_name",
                               "metadata": {"hook_name", "model_name", "auxk", "dead_steps_threshold"}}
    sae_weights.safetensors   W_enc [d, n] = W_enc.T, W_dec [n, d], b_enc [n] = b_lat, b_dec [d] = b_pre

    Loading accepts ``k`` at top level or in ``activation_fn_kwargs`` and the older spelling
    ``architecture="standard"`` + ``activation_fn_str="topk"``; it refuses any other architecture,
    ``apply_b_dec_to_input=false`` and ``normalize_activations`` other than ``"none"`` (their maths differs).
    ``stats_last_nonzero`` is not kept (SAELens would reject an extra tensor).

``native`` - ours::

    sae_config.json   {"format": "itd-explorer-sae", "format_version": 1, <the SAEConfig fields>}
    sae.safetensors   W_enc [n, d], W_dec [n, d], b_lat [n], b_pre [d], stats_last_nonzero [n] int64

All weights are copied as stored (fp32/bf16/fp16), so round trips between the formats are bit-exact.

Loading never builds a throw-away model: the module is made on the ``meta`` device and each weight is
read in row blocks (positional reads at offsets from the safetensors header, or from where
``torch.load(mmap=True)`` mapped the record) into a tensor of the requested dtype/device, each block
cast, checked for NaN/inf and hashed on the way, so peak memory stays close to the loaded weights' size.

Fingerprint (:func:`weights_fingerprint`): sha256 over, for W_enc [n, d], W_dec [n, d], b_lat [n], b_pre [d]
in that order, ``ndim`` then each dimension as little-endian int64, then the values as little-endian float32
in row-major order. It does not depend on the file format, and :func:`load_sae` computes it from the values
in the file before any dtype cast.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import glob
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import struct
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError

from itd_core.atomic import remove_stale_siblings
from itd_core.errors import ItdError
from itd_core.sae import SAEConfig, TopKSAE

__all__ = [
    "SaeFormat",
    "detect_format",
    "load_sae",
    "save_sae",
    "weights_fingerprint",
    "resolve_sae_path",
]

SaeFormat = Literal["itd", "saelens", "native"]
FORMATS: tuple[SaeFormat, ...] = ("itd", "saelens", "native")

ITD_CONFIG_FILENAME = "config.json"
ITD_WEIGHTS_FILENAME = "state_dict.pth"
SAELENS_CFG_FILENAME = "cfg.json"
SAELENS_WEIGHTS_FILENAME = "sae_weights.safetensors"
NATIVE_CONFIG_FILENAME = "sae_config.json"
NATIVE_WEIGHTS_FILENAME = "sae.safetensors"
NATIVE_FORMAT_NAME = "itd-explorer-sae"
NATIVE_FORMAT_VERSION = 1

FORMAT_FILES: dict[SaeFormat, tuple[str, str]] = {
    "itd": (ITD_CONFIG_FILENAME, ITD_WEIGHTS_FILENAME),
    "saelens": (SAELENS_CFG_FILENAME, SAELENS_WEIGHTS_FILENAME),
    "native": (NATIVE_CONFIG_FILENAME, NATIVE_WEIGHTS_FILENAME),
}
_CHECKPOINT_FILES = frozenset(name for pair in FORMAT_FILES.values() for name in pair)

# Canonical order of the fingerprinted weights (see module docstring).
WEIGHT_NAMES = ("W_enc", "W_dec", "b_lat", "b_pre")

_BLOCK_BYTES = 8 * 2**20  # rows streamed per step: ~8 MiB of fp32

_DTYPE_ALIASES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}
_WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

_ST_DTYPES: dict[str, torch.dtype] = {
    "F32": torch.float32,
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ST_CODES = {dtype: code for code, dtype in _ST_DTYPES.items()}


# --------------------------------------------------------------------------------------------------
# public API


def detect_format(path: str | os.PathLike[str]) -> SaeFormat:
    """The checkpoint format of a folder, told by its files (see the module docstring)."""
    folder = _existing_folder(path)
    complete = [fmt for fmt, files in FORMAT_FILES.items() if all((folder / name).is_file() for name in files)]
    if len(complete) == 1:
        return complete[0]
    if len(complete) > 1:
        raise ItdError(
            f"{folder} holds files of several SAE formats ({', '.join(complete)}); "
            f"pass format= one of them explicitly"
        )
    partial = [
        (fmt, [name for name in files if not (folder / name).is_file()])
        for fmt, files in FORMAT_FILES.items()
        if any((folder / name).is_file() for name in files)
    ]
    if partial:
        fmt, missing = partial[0]
        raise ItdError(f"{folder} looks like a '{fmt}' SAE checkpoint but {', '.join(missing)} is missing")
    expected = "; ".join(f"{fmt}: {' + '.join(files)}" for fmt, files in FORMAT_FILES.items())
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
    fmt = detect_format(folder) if format == "auto" else _check_format(format)
    target_dtype = None if dtype is None else _parse_dtype(dtype)
    target_device = _check_device(device)
    if sys.byteorder != "little":
        raise ItdError("SAE checkpoints are little-endian; this machine is not")
    return _materialise(_READERS[fmt](folder), target_dtype, target_device)


def save_sae(sae: TopKSAE, path: str | os.PathLike[str], *, format: SaeFormat = "native") -> Path:
    """Write ``sae`` (in its own dtype) as a checkpoint folder, atomically; returns the folder.

    The folder is built next to ``path`` under a temporary name and renamed into place, so a crash never
    leaves a half-written checkpoint. An existing folder is replaced only if it holds nothing but
    checkpoint files.
    """
    fmt = _check_format(format)
    _check_saveable(sae)
    folder = Path(path)
    _check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(folder, ".partial")  # unfinished saves of killed writers
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    try:
        _WRITERS[fmt](sae, tmp)
        _fsync_path(tmp)
        _move_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def weights_fingerprint(sae: TopKSAE) -> str:
    """sha256 of the weights' values as float32 (format- and dtype-of-file-independent, see module docstring)."""
    hasher = hashlib.sha256()
    for name in WEIGHT_NAMES:
        tensor = getattr(sae, name).detach()
        hasher.update(_shape_bytes(tensor.shape))
        for i0, i1 in _row_blocks(tensor):
            hasher.update(_le_float32_bytes(tensor[i0:i1].to("cpu", torch.float32).contiguous()))
    return hasher.hexdigest()


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
    where = f"{repo_id}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    hint = (
        "Download it where there is network access (hf download "
        f"{repo_id}{' --include ' + repr(subfolder + '/*') if subfolder else ''}) "
        "or point at a local checkpoint folder instead (a path to the folder holding "
        f"{ITD_CONFIG_FILENAME} + {ITD_WEIGHTS_FILENAME}, or another supported format)."
    )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(
            repo_id,
            allow_patterns=[f"{subfolder}/*"] if subfolder else None,
            local_files_only=offline,
        )
    except Exception as exc:  # noqa: BLE001 - network / cache / auth failures all mean the same to the user
        state = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else "it could not be fetched"
        raise ItdError(f"SAE {where}: {state} ({type(exc).__name__}). {hint}") from exc
    folder = Path(snapshot) / subfolder if subfolder else Path(snapshot)
    if not folder.is_dir():
        raise ItdError(f"hub repo {repo_id} has no subfolder {subfolder!r} (snapshot at {snapshot})")
    return folder


# --------------------------------------------------------------------------------------------------
# loading: a checkpoint is a config plus where each tensor lies in the weights file
#
# Tensors are read with positional reads into preallocated buffers (the destination itself where no
# cast is needed). Reading through a memory map instead would count the mapped file pages in RSS, and
# on recent kernels one page fault maps a whole large folio (hundreds of KB), so a strided read of a
# transposed tensor would map most of the file.


@dataclass
class _Source:
    """One tensor as stored. ``transposed``: stored as our ``.T`` (ItD's decoder, SAELens's encoder).

    ``offset`` is where its bytes start in the file; where it is unknown (a torch file on a system
    without ``/proc/self/maps``) ``view``, the mmap-backed tensor from ``torch.load``, is read instead.
    """

    key: str  # name in the file, for messages
    shape: tuple[int, ...]  # as stored
    dtype: torch.dtype
    transposed: bool = False
    offset: int | None = None
    view: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


@dataclass
class _Checkpoint:
    config: SAEConfig
    weights_file: Path
    sources: dict[str, _Source]  # keyed by WEIGHT_NAMES
    stats: _Source | None
    keep: Any = None  # what must stay alive while reading (the torch.load result behind ``view``s)


def _materialise(ckpt: _Checkpoint, dtype: torch.dtype | None, device: torch.device) -> TopKSAE:
    """Stream the stored tensors into fresh tensors of ``dtype`` (None: the decoder's stored dtype) on ``device``;
    hash them on the way."""
    cfg = ckpt.config
    n, d = cfg.n_latents, cfg.d_model
    expected = {"W_enc": (n, d), "W_dec": (n, d), "b_lat": (n,), "b_pre": (d,)}
    for name, source in ckpt.sources.items():
        want = expected[name][::-1] if source.transposed else expected[name]
        if source.shape != want:
            raise ItdError(
                f"{ckpt.weights_file}: tensor '{source.key}' has shape {list(source.shape)} but the config "
                f"(n_latents={n}, d_model={d}) needs {list(want)}"
            )
        if source.dtype not in _WEIGHT_DTYPES:
            raise ItdError(
                f"{ckpt.weights_file}: tensor '{source.key}' is {source.dtype}; expected float32, bfloat16 or float16"
            )
    stats = ckpt.stats
    if stats is not None and (stats.shape != (n,) or stats.dtype.is_floating_point or stats.dtype == torch.bool):
        raise ItdError(
            f"{ckpt.weights_file}: stats_last_nonzero is {stats.dtype} {list(stats.shape)}; "
            f"expected an integer tensor of shape [{n}]"
        )

    if dtype is None:
        dtype = ckpt.sources["W_dec"].dtype
    sae = TopKSAE(cfg, device="meta", dtype=dtype)
    state: dict[str, torch.Tensor] = {}
    with _FileReader(ckpt.weights_file) as reader, _BlockHasher() as hasher:
        for name in WEIGHT_NAMES:
            dst = torch.empty(expected[name], dtype=dtype, device=device)
            _stream_into(ckpt.sources[name], dst, hasher, reader)
            state[name] = dst
        fingerprint = hasher.hexdigest()
        state["stats_last_nonzero"] = torch.zeros(n, dtype=torch.long, device=device)
        if stats is not None:
            state["stats_last_nonzero"].copy_(reader.read_whole(stats))
    _trim_heap()
    sae.load_state_dict(state, strict=True, assign=True)
    sae.fingerprint = fingerprint
    return sae


def _stream_into(source: _Source, dst: torch.Tensor, hasher: "_BlockHasher", reader: "_FileReader") -> None:
    """Fill ``dst`` one row block at a time: read, cast, check finite, hash (as fp32).

    Hashing runs one block behind in a worker thread, so two scratch buffers alternate.
    """
    hasher.update(_shape_bytes(dst.shape))
    direct = (  # read straight into the destination: no scratch, no extra copy
        not source.transposed
        and source.dtype == dst.dtype == torch.float32
        and dst.device.type == "cpu"
        and dst.is_contiguous()
    )
    scratch = [_Scratch(), _Scratch()]
    for index, (i0, i1) in enumerate(_row_blocks(dst)):
        if direct:
            block32 = dst[i0:i1]
            reader.read_rows(source, i0, i1, block32)
        else:
            block32 = scratch[index % 2].read(reader, source, i0, i1)
        if not _all_finite(block32):
            raise ItdError(
                f"{reader.path}: tensor '{source.key}' holds NaN or inf values (rows {i0}-{i1}): "
                f"the checkpoint is corrupt"
            )
        if not direct:
            dst[i0:i1].copy_(block32)
        hasher.update(_le_float32_bytes(block32))
    hasher.flush()


class _Scratch:
    """Reusable buffers that turn one stored block into a contiguous fp32 block in our layout."""

    def __init__(self) -> None:
        self.staged: torch.Tensor | None = None  # source dtype, stored layout
        self.out: torch.Tensor | None = None  # fp32, our layout

    def read(self, reader: "_FileReader", source: _Source, i0: int, i1: int) -> torch.Tensor:
        rows = i1 - i0
        if not source.transposed:
            shape = (rows, *source.shape[1:])
            staged = self._buffer("staged", math.prod(shape), source.dtype).view(shape)
            reader.read_rows(source, i0, i1, staged)
            if source.dtype == torch.float32:
                return staged
            out = self._buffer("out", staged.numel(), torch.float32).view(shape)
            return out.copy_(staged)
        width = source.shape[0]  # stored [width, n]; we want rows i0:i1 of its transpose
        staged = self._buffer("staged", width * rows, source.dtype).view(width, rows)
        reader.read_columns(source, i0, i1, staged)
        out = self._buffer("out", width * rows, torch.float32).view(rows, width)
        return out.copy_(staged.T)  # a whole 2-D transpose: torch's blocked fast path

    def _buffer(self, slot: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        buffer = getattr(self, slot)
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            buffer = torch.empty(numel, dtype=dtype)
            setattr(self, slot, buffer)
        return buffer[:numel]


class _FileReader:
    """Positional reads of stored tensors into contiguous CPU tensors of the stored dtype."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "rb", buffering=0)

    def __enter__(self) -> "_FileReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def read_rows(self, source: _Source, i0: int, i1: int, out: torch.Tensor) -> None:
        """Stored rows ``i0:i1`` into ``out``."""
        if source.offset is None:
            out.copy_(source.view[i0:i1])
            return
        row_bytes = math.prod(source.shape[1:]) * _itemsize(source.dtype)
        self._read_into(_writable_bytes(out), source.offset + i0 * row_bytes, source)

    def read_columns(self, source: _Source, i0: int, i1: int, out: torch.Tensor) -> None:
        """Stored columns ``i0:i1`` of a 2-D tensor into ``out`` (``[rows_stored, i1 - i0]``): one read per row."""
        if source.offset is None:
            out.copy_(source.view[:, i0:i1])
            return
        itemsize, width = _itemsize(source.dtype), source.shape[1]
        segment = (i1 - i0) * itemsize
        buffer = _writable_bytes(out)
        for row in range(source.shape[0]):
            start = source.offset + (row * width + i0) * itemsize
            self._read_into(buffer[row * segment : (row + 1) * segment], start, source)

    def read_whole(self, source: _Source) -> torch.Tensor:
        out = torch.empty(source.shape, dtype=source.dtype)
        if source.offset is None:
            return out.copy_(source.view)
        self._read_into(_writable_bytes(out), source.offset, source)
        return out

    def _read_into(self, buffer: memoryview, offset: int, source: _Source) -> None:
        done = 0
        while done < len(buffer):
            self._file.seek(offset + done)
            got = self._file.readinto(buffer[done:])
            if not got:
                raise ItdError(f"{self.path}: truncated file: tensor '{source.key}' runs past the end of the file")
            done += got


class _BlockHasher:
    """sha256 fed by a worker thread one block behind the reading (hashlib releases the GIL).

    ``update`` first waits for the previous block, so at most one block is in flight and the caller may
    reuse the buffer of the block before the last one.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sae-hash")
        self._pending: Future[None] | None = None

    def update(self, data: bytes | memoryview) -> None:
        self.flush()
        self._pending = self._pool.submit(self._hash.update, data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def hexdigest(self) -> str:
        self.flush()
        return self._hash.hexdigest()

    def __enter__(self) -> "_BlockHasher":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)


def _all_finite(block: torch.Tensor) -> bool:
    """No NaN/inf in ``block``. A NaN or inf always makes the sum non-finite, so only then look closer
    (the sum may also overflow); cheaper than ``isfinite`` and with no block-sized temporary."""
    return bool(torch.isfinite(block.sum())) or bool(torch.isfinite(block).all())


def _row_blocks(tensor: torch.Tensor) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of about ``_BLOCK_BYTES`` (as fp32) each; a 1-D tensor is one block."""
    rows = tensor.shape[0]
    if tensor.dim() < 2:
        yield 0, rows
        return
    step = max(1, _BLOCK_BYTES // max(1, math.prod(tensor.shape[1:]) * 4))
    for i0 in range(0, rows, step):
        yield i0, min(rows, i0 + step)


def _shape_bytes(shape: torch.Size | tuple[int, ...]) -> bytes:
    return struct.pack(f"<q{len(shape)}q", len(shape), *shape)


def _le_float32_bytes(block: torch.Tensor) -> memoryview | bytes:
    array = block.numpy()
    if sys.byteorder != "little":
        return array.astype("<f4").tobytes()
    return memoryview(array).cast("B")


def _writable_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, as a writable flat memoryview (any dtype, bf16 included)."""
    return memoryview(tensor.view(-1).view(torch.uint8).numpy())


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _libc() -> ctypes.CDLL | None:
    """The C library on Linux (errno kept for the caller), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _trim_heap() -> None:
    """Hand freed scratch memory back to the OS (glibc keeps it otherwise)."""
    trim = getattr(_libc(), "malloc_trim", None)  # None: not glibc
    if trim is not None:
        trim(0)


# ---- ItD / OpenAI format


def _read_itd(folder: Path) -> _Checkpoint:
    config_file, weights_file = _require_files(folder, "itd")
    raw = _read_json(config_file)
    for key in ("n_dirs_local", "d_model", "k"):
        if key not in raw:
            raise ItdError(f"{config_file}: missing key '{key}'")
    config = _make_config(
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
    return _Checkpoint(config, weights_file, sources, stats_source, keep=obj)


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
) -> _Source:
    """Where a tensor from ``torch.load(mmap=True)`` lies in the file: its address in the mapping tells."""
    source = _Source(key, tuple(tensor.shape), tensor.dtype, transposed, view=tensor)
    if not tensor.is_contiguous() or tensor.numel() == 0:
        return source
    address = tensor.data_ptr()
    for start, end, file_offset in maps:
        if start <= address and address + source.nbytes <= end:
            offset = address - start + file_offset
            with open(path, "rb") as handle:  # cross-check a few bytes before trusting the offset
                handle.seek(offset)
                probe = handle.read(min(64, source.nbytes))
            if probe == bytes(_writable_bytes(tensor.reshape(-1)[: len(probe) // tensor.element_size()])):
                source.offset = offset
            break
    return source


# ---- safetensors (SAELens, native)

MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors format's own cap on the JSON header


def _safetensors_sources(path: Path) -> dict[str, _Source]:
    """Parse the (small, documented) safetensors header: name -> dtype, shape, absolute byte offset."""
    size = path.stat().st_size
    if size < 8:
        raise ItdError(f"{path}: truncated safetensors file ({size} bytes)")
    with open(path, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        if header_len > MAX_SAFETENSORS_HEADER:  # checked before reading: a forged length would allocate gigabytes
            raise ItdError(f"{path}: corrupt safetensors file (header of {header_len:,} bytes; the safetensors limit is {MAX_SAFETENSORS_HEADER:,})")
        if 8 + header_len > size:
            raise ItdError(f"{path}: truncated or corrupt safetensors file (header of {header_len} bytes, file of {size})")
        header_bytes = handle.read(header_len)
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ItdError(f"{path}: corrupt safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ItdError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    sources = {}
    for name, info in header.items():
        try:
            code, shape, (begin, end) = info["dtype"], tuple(int(x) for x in info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError) as exc:
            raise ItdError(f"{path}: corrupt safetensors header entry for '{name}'") from exc
        dtype = _ST_DTYPES.get(code)
        if dtype is None:
            raise ItdError(f"{path}: tensor '{name}' has unsupported dtype {code}")
        source = _Source(name, shape, dtype, offset=8 + header_len + begin)
        if begin < 0 or end - begin != source.nbytes:
            raise ItdError(f"{path}: corrupt safetensors header: '{name}' {code}{list(shape)} does not fit offsets {begin}-{end}")
        if 8 + header_len + end > size:
            raise ItdError(
                f"{path}: truncated file: tensor '{name}' needs bytes up to {8 + header_len + end}, the file has {size}"
            )
        sources[name] = source
    return sources


def _read_saelens(folder: Path) -> _Checkpoint:
    cfg_file, weights_file = _require_files(folder, "saelens")
    cfg = _read_json(cfg_file)
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
    config = _make_config(
        cfg_file,
        d_model=cfg["d_in"],
        n_latents=cfg["d_sae"],
        k=k,
        auxk=meta.get("auxk", 256),
        dead_steps_threshold=meta.get("dead_steps_threshold", 1000),
        hook_layer=meta.get("hook_name", cfg.get("hook_name")),
        model_id=meta.get("model_name", cfg.get("model_name")),
    )
    stored = _safetensors_sources(weights_file)
    keys = {"W_enc": "W_enc", "W_dec": "W_dec", "b_lat": "b_enc", "b_pre": "b_dec"}
    _check_tensor_names(weights_file, stored, required=set(keys.values()), optional=set())
    sources = {name: stored[key] for name, key in keys.items()}
    sources["W_enc"].transposed = True
    return _Checkpoint(config, weights_file, sources, None)


def _read_native(folder: Path) -> _Checkpoint:
    config_file, weights_file = _require_files(folder, "native")
    raw = dict(_read_json(config_file))
    if raw.pop("format", None) != NATIVE_FORMAT_NAME:
        raise ItdError(f"{config_file}: 'format' is not {NATIVE_FORMAT_NAME!r}")
    version = raw.pop("format_version", None)
    if version != NATIVE_FORMAT_VERSION:
        raise ItdError(
            f"{config_file}: format_version {version!r} is not supported (this version reads "
            f"{NATIVE_FORMAT_VERSION}); a newer ItD Explorer may have written it"
        )
    config = _make_config(config_file, **raw)
    stored = _safetensors_sources(weights_file)
    _check_tensor_names(weights_file, stored, required=set(WEIGHT_NAMES), optional={"stats_last_nonzero"})
    return _Checkpoint(config, weights_file, {name: stored[name] for name in WEIGHT_NAMES}, stored.get("stats_last_nonzero"))


def _check_tensor_names(path: Path, stored: dict[str, _Source], *, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - stored.keys())
    if missing:
        raise ItdError(f"{path}: missing tensor(s) {', '.join(missing)}")
    extra = sorted(stored.keys() - required - optional)
    if extra:
        raise ItdError(f"{path}: unexpected tensor(s) {', '.join(extra)}: not a plain TopK SAE")


_READERS: dict[SaeFormat, Callable[[Path], _Checkpoint]] = {
    "itd": _read_itd,
    "saelens": _read_saelens,
    "native": _read_native,
}


# --------------------------------------------------------------------------------------------------
# saving


def _write_itd(sae: TopKSAE, folder: Path) -> None:
    cfg = sae.config
    _write_json(
        folder / ITD_CONFIG_FILENAME,
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
    path = folder / ITD_WEIGHTS_FILENAME
    with open(path, "wb") as handle:
        torch.save({"state_dict": state}, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _write_saelens(sae: TopKSAE, folder: Path) -> None:
    cfg = sae.config
    meta = {
        "model_name": cfg.model_id,
        "hook_name": cfg.hook_layer,
        "auxk": cfg.auxk,
        "dead_steps_threshold": cfg.dead_steps_threshold,
    }
    _write_json(
        folder / SAELENS_CFG_FILENAME,
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
    _write_safetensors(
        folder / SAELENS_WEIGHTS_FILENAME,
        {
            "W_enc": _Stored(sae.W_enc.detach(), transposed=True),
            "W_dec": _Stored(sae.W_dec.detach()),
            "b_enc": _Stored(sae.b_lat.detach()),
            "b_dec": _Stored(sae.b_pre.detach()),
        },
    )


def _write_native(sae: TopKSAE, folder: Path) -> None:
    _write_json(
        folder / NATIVE_CONFIG_FILENAME,
        {"format": NATIVE_FORMAT_NAME, "format_version": NATIVE_FORMAT_VERSION, **sae.config.model_dump()},
    )
    tensors = {name: _Stored(getattr(sae, name).detach()) for name in WEIGHT_NAMES}
    tensors["stats_last_nonzero"] = _Stored(sae.stats_last_nonzero.detach().to(torch.int64))
    _write_safetensors(folder / NATIVE_WEIGHTS_FILENAME, tensors)


_WRITERS: dict[SaeFormat, Callable[[TopKSAE, Path], None]] = {
    "itd": _write_itd,
    "saelens": _write_saelens,
    "native": _write_native,
}


@dataclass
class _Stored:
    """A tensor to write, optionally as its transpose (streamed, never materialised whole)."""

    tensor: torch.Tensor
    transposed: bool = False

    @property
    def shape(self) -> list[int]:
        shape = list(self.tensor.shape)
        return shape[::-1] if self.transposed else shape

    @property
    def nbytes(self) -> int:
        return self.tensor.numel() * self.tensor.element_size()

    def blocks(self) -> Iterator[torch.Tensor]:
        """Contiguous CPU pieces of the stored layout, in row-major order."""
        tensor = self.tensor
        if tensor.dim() < 2:
            yield tensor.contiguous().cpu()
            return
        if not self.transposed:
            step = max(1, _BLOCK_BYTES // max(1, tensor[0].numel() * tensor.element_size()))
            for i0 in range(0, tensor.shape[0], step):
                yield tensor[i0 : i0 + step].contiguous().cpu()
            return
        # Stored rows are our columns. Gather >= 16 columns at once (a cache line per row), then
        # transpose the gathered [n, step] block with torch's blocked transpose.
        step = max(16, _BLOCK_BYTES // max(1, tensor.shape[0] * tensor.element_size()))
        for c0 in range(0, tensor.shape[1], step):
            yield tensor[:, c0 : c0 + step].contiguous().T.contiguous().cpu()


def _write_safetensors(path: Path, tensors: dict[str, _Stored], metadata: dict[str, str] | None = None) -> None:
    """Stream tensors into a safetensors file (widest dtypes first, so every tensor is aligned)."""
    order = sorted(tensors, key=lambda name: (-tensors[name].tensor.element_size(), name))
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for name in order:
        stored = tensors[name]
        header[name] = {
            "dtype": _ST_CODES[stored.tensor.dtype],
            "shape": stored.shape,
            "data_offsets": [offset, offset + stored.nbytes],
        }
        offset += stored.nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for name in order:
            for block in tensors[name].blocks():
                handle.write(memoryview(block.view(-1).view(torch.uint8).numpy()))
        if handle.tell() != 8 + len(header_bytes) + offset:
            raise RuntimeError(f"{path}: wrote {handle.tell()} bytes, expected {8 + len(header_bytes) + offset}")
        handle.flush()
        os.fsync(handle.fileno())


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
        if name != "stats_last_nonzero" and tensor.dtype not in _WEIGHT_DTYPES:
            raise ItdError(f"cannot save: {name} is {tensor.dtype}; expected float32, bfloat16 or float16")


def _check_replaceable(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ItdError(f"{folder} exists and is not a folder; not overwriting it")
    if folder.is_dir():
        others = sorted(entry.name for entry in folder.iterdir() if entry.name not in _CHECKPOINT_FILES)
        if others:
            raise ItdError(
                f"{folder} already holds other files ({', '.join(others[:5])}); not overwriting it - "
                f"save into a new or empty folder"
            )


def _move_into_place(tmp: Path, folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    if not folder.exists():
        os.replace(tmp, folder)
    elif _exchange(tmp, folder):  # one atomic step: the path always holds a whole checkpoint, old or new
        shutil.rmtree(tmp, ignore_errors=True)
    else:  # no atomic exchange here: swap the old one out, then in; a crash in between is reported on load
        old = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_path(folder.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # an old kernel or a file system without it
        return False
    raise OSError(error, os.strerror(error), str(b))


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# small helpers


def _existing_folder(path: str | os.PathLike[str]) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        swapped_out = sorted(folder.parent.glob(f".{glob.escape(folder.name)}.*.old"))
        if swapped_out:
            raise ItdError(f"{folder}: no such folder, but a save that was interrupted left the previous checkpoint at "
                           f"{swapped_out[-1]}: rename it back to {folder.name} to use it")
        raise ItdError(f"{folder}: no such folder (expected an SAE checkpoint folder)")
    if not folder.is_dir():
        raise ItdError(f"{folder} is a file; pass the checkpoint folder that holds it")
    return folder


def _check_format(fmt: str) -> SaeFormat:
    if fmt not in FORMATS:
        raise ItdError(f"unknown SAE format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]


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


def _require_files(folder: Path, fmt: SaeFormat) -> tuple[Path, Path]:
    paths = tuple(folder / name for name in FORMAT_FILES[fmt])
    for path in paths:
        if not path.is_file():
            raise ItdError(f"{path}: missing (a '{fmt}' checkpoint needs {' + '.join(FORMAT_FILES[fmt])})")
    return paths  # type: ignore[return-value]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ItdError(f"{path}: unreadable or invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ItdError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def _make_config(source: Path, **fields: Any) -> SAEConfig:
    try:
        return SAEConfig(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ItdError(f"{source}: invalid SAE config ({problems})") from exc


def _parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """fp32 / bf16 / fp16 from a torch dtype or a name such as ``"bf16"`` or ``"float16"``."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif isinstance(dtype, str):
        resolved = _DTYPE_ALIASES.get(dtype.strip().lower().removeprefix("torch."))
        if resolved is None:
            raise ItdError(f"unknown dtype {dtype!r}: use one of {', '.join(sorted(_DTYPE_ALIASES))}")
    else:
        raise ItdError(f"dtype must be a torch dtype or a string, got {type(dtype).__name__}")
    if resolved not in _WEIGHT_DTYPES:
        raise ItdError(f"unsupported dtype {resolved}: use float32, bfloat16 or float16")
    return resolved
