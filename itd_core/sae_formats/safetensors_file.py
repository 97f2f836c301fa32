"""safetensors files, as the SAELens and native formats store their weights: the header read into
:class:`~itd_core.sae_formats.streaming.Source` s for the streaming reader, and tensors streamed into a new file."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from itd_core.errors import ItdError
from itd_core.sae_formats.fingerprint import rows_per_block
from itd_core.sae_formats.streaming import Source

ST_DTYPES: dict[str, torch.dtype] = {
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
ST_CODES = {dtype: code for code, dtype in ST_DTYPES.items()}

MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors format's own cap on the JSON header


def safetensors_sources(path: Path) -> dict[str, Source]:
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
        dtype = ST_DTYPES.get(code)
        if dtype is None:
            raise ItdError(f"{path}: tensor '{name}' has unsupported dtype {code}")
        source = Source(name, shape, dtype, offset=8 + header_len + begin)
        if begin < 0 or end - begin != source.nbytes:
            raise ItdError(f"{path}: corrupt safetensors header: '{name}' {code}{list(shape)} does not fit offsets {begin}-{end}")
        if 8 + header_len + end > size:
            raise ItdError(
                f"{path}: truncated file: tensor '{name}' needs bytes up to {8 + header_len + end}, the file has {size}"
            )
        sources[name] = source
    return sources


def check_tensor_names(path: Path, stored: dict[str, Source], *, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - stored.keys())
    if missing:
        raise ItdError(f"{path}: missing tensor(s) {', '.join(missing)}")
    extra = sorted(stored.keys() - required - optional)
    if extra:
        raise ItdError(f"{path}: unexpected tensor(s) {', '.join(extra)}: not a plain TopK SAE")


@dataclass
class Stored:
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
            step = rows_per_block(tensor[0].numel() * tensor.element_size())
            for i0 in range(0, tensor.shape[0], step):
                yield tensor[i0 : i0 + step].contiguous().cpu()
            return
        # Stored rows are our columns. Gather >= 16 columns at once (a cache line per row), then
        # transpose the gathered [n, step] block with torch's blocked transpose.
        step = rows_per_block(tensor.shape[0] * tensor.element_size(), minimum=16)
        for c0 in range(0, tensor.shape[1], step):
            yield tensor[:, c0 : c0 + step].contiguous().T.contiguous().cpu()


def write_safetensors(path: Path, tensors: dict[str, Stored], metadata: dict[str, str] | None = None) -> None:
    """Stream tensors into a safetensors file (widest dtypes first, so every tensor is aligned)."""
    order = sorted(tensors, key=lambda name: (-tensors[name].tensor.element_size(), name))
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for name in order:
        stored = tensors[name]
        header[name] = {
            "dtype": ST_CODES[stored.tensor.dtype],
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
