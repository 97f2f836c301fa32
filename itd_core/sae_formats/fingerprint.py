"""The SAE weights fingerprint, and the row blocks that it, the streaming reader and the writers step through.

:func:`weights_fingerprint` is a sha256 over, for W_enc [n, d], W_dec [n, d], b_lat [n], b_pre [d] in that order,
``ndim`` then each dimension as little-endian int64, then the values as little-endian float32 in row-major order.
It does not depend on the file format, and :func:`itd_core.sae_formats.load_sae` computes it from the values in
the file before any dtype cast.
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
from collections.abc import Iterator

import torch

from itd_core.sae import TopKSAE

# Canonical order of the fingerprinted weights.
WEIGHT_NAMES = ("W_enc", "W_dec", "b_lat", "b_pre")

BLOCK_BYTES = 8 * 2**20  # rows streamed per step: ~8 MiB of fp32


def weights_fingerprint(sae: TopKSAE) -> str:
    """sha256 of the weights' values as float32 (format- and dtype-of-file-independent, see the module docstring)."""
    hasher = hashlib.sha256()
    for name in WEIGHT_NAMES:
        tensor = getattr(sae, name).detach()
        hasher.update(shape_bytes(tensor.shape))
        for i0, i1 in row_blocks(tensor):
            hasher.update(le_float32_bytes(tensor[i0:i1].to("cpu", torch.float32).contiguous()))
    return hasher.hexdigest()


def rows_per_block(row_bytes: int, minimum: int = 1) -> int:
    """How many rows of ``row_bytes`` each make one block of about :data:`BLOCK_BYTES` (at least ``minimum``)."""
    return max(minimum, BLOCK_BYTES // max(1, row_bytes))


def row_blocks(tensor: torch.Tensor) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of about :data:`BLOCK_BYTES` (as fp32) each; a 1-D tensor is one block."""
    rows = tensor.shape[0]
    if tensor.dim() < 2:
        yield 0, rows
        return
    step = rows_per_block(math.prod(tensor.shape[1:]) * 4)
    for i0 in range(0, rows, step):
        yield i0, min(rows, i0 + step)


def shape_bytes(shape: torch.Size | tuple[int, ...]) -> bytes:
    return struct.pack(f"<q{len(shape)}q", len(shape), *shape)


def le_float32_bytes(block: torch.Tensor) -> memoryview | bytes:
    array = block.numpy()
    if sys.byteorder != "little":
        return array.astype("<f4").tobytes()
    return memoryview(array).cast("B")
