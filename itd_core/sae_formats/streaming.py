"""The streaming reader: a checkpoint as a format module describes it (a config plus where each tensor lies in the
weights file) streamed into a :class:`~itd_core.sae.TopKSAE`.

Loading never builds a throw-away model: the module is made on the ``meta`` device and each weight is read in row
blocks (positional reads at offsets from the safetensors header, or from where ``torch.load(mmap=True)`` mapped the
record) into a tensor of the requested dtype/device, each block cast, checked for NaN/inf and hashed on the way (the
fingerprint, :mod:`itd_core.sae_formats.fingerprint`), so peak memory stays close to the loaded weights' size.

Tensors are read with positional reads into preallocated buffers (the destination itself where no cast is needed).
Reading through a memory map instead would count the mapped file pages in RSS, and on recent kernels one page fault
maps a whole large folio (hundreds of KB), so a strided read of a transposed tensor would map most of the file.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from itd_core.atomic import libc
from itd_core.errors import ItdError
from itd_core.sae import SAEConfig, TopKSAE
from itd_core.sae_formats.fingerprint import WEIGHT_NAMES, le_float32_bytes, row_blocks, shape_bytes

WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass
class Source:
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
        return math.prod(self.shape) * itemsize(self.dtype)


@dataclass
class Checkpoint:
    """What a format's reader returns: the config, and where each tensor lies in the weights file."""

    config: SAEConfig
    weights_file: Path
    sources: dict[str, Source]  # keyed by WEIGHT_NAMES
    stats: Source | None
    keep: Any = None  # what must stay alive while reading (the torch.load result behind ``view``s)


def materialise(ckpt: Checkpoint, dtype: torch.dtype | None, device: torch.device) -> TopKSAE:
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
        if source.dtype not in WEIGHT_DTYPES:
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


def _stream_into(source: Source, dst: torch.Tensor, hasher: "_BlockHasher", reader: "_FileReader") -> None:
    """Fill ``dst`` one row block at a time: read, cast, check finite, hash (as fp32).

    Hashing runs one block behind in a worker thread, so two scratch buffers alternate.
    """
    hasher.update(shape_bytes(dst.shape))
    direct = (  # read straight into the destination: no scratch, no extra copy
        not source.transposed
        and source.dtype == dst.dtype == torch.float32
        and dst.device.type == "cpu"
        and dst.is_contiguous()
    )
    scratch = [_Scratch(), _Scratch()]
    for index, (i0, i1) in enumerate(row_blocks(dst)):
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
        hasher.update(le_float32_bytes(block32))
    hasher.flush()


class _Scratch:
    """Reusable buffers that turn one stored block into a contiguous fp32 block in our layout."""

    def __init__(self) -> None:
        self.staged: torch.Tensor | None = None  # source dtype, stored layout
        self.out: torch.Tensor | None = None  # fp32, our layout

    def read(self, reader: "_FileReader", source: Source, i0: int, i1: int) -> torch.Tensor:
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

    def read_rows(self, source: Source, i0: int, i1: int, out: torch.Tensor) -> None:
        """Stored rows ``i0:i1`` into ``out``."""
        if source.offset is None:
            out.copy_(source.view[i0:i1])
            return
        row_bytes = math.prod(source.shape[1:]) * itemsize(source.dtype)
        self._read_into(writable_bytes(out), source.offset + i0 * row_bytes, source)

    def read_columns(self, source: Source, i0: int, i1: int, out: torch.Tensor) -> None:
        """Stored columns ``i0:i1`` of a 2-D tensor into ``out`` (``[rows_stored, i1 - i0]``): one read per row."""
        if source.offset is None:
            out.copy_(source.view[:, i0:i1])
            return
        size, width = itemsize(source.dtype), source.shape[1]
        segment = (i1 - i0) * size
        buffer = writable_bytes(out)
        for row in range(source.shape[0]):
            start = source.offset + (row * width + i0) * size
            self._read_into(buffer[row * segment : (row + 1) * segment], start, source)

    def read_whole(self, source: Source) -> torch.Tensor:
        out = torch.empty(source.shape, dtype=source.dtype)
        if source.offset is None:
            return out.copy_(source.view)
        self._read_into(writable_bytes(out), source.offset, source)
        return out

    def _read_into(self, buffer: memoryview, offset: int, source: Source) -> None:
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


def writable_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, as a writable flat memoryview (any dtype, bf16 included)."""
    return memoryview(tensor.view(-1).view(torch.uint8).numpy())


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _trim_heap() -> None:
    """Hand freed scratch memory back to the OS (glibc keeps it otherwise)."""
    trim = getattr(libc(), "malloc_trim", None)  # None: not glibc
    if trim is not None:
        trim(0)
