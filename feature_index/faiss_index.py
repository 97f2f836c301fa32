"""FAISS index over the SAE's unit-normalised decoder rows (cosine similarity = inner product).

Hidden behind a tiny interface, ``DecoderIndex.search(queries, k) -> (scores, ids)``, with a sidecar
JSON next to the FAISS file (``decoder.faiss.json``): factory string, dimension, metric, row-to-feature
mapping (row ``i`` is feature ``i``), SAE fingerprint, and the FAISS file's size (a truncated file is
caught before FAISS reads it).

Index type by size (measured by ``bench/bench_feature_index.py`` at 524,288 x 768, random decoder,
2 shared CPU cores):

* up to :data:`FLAT_MAX_FEATURES` features: ``Flat`` (exact inner product, 4 bytes a value);
* above: ``SQ8`` (8-bit scalar quantisation, a quarter of Flat's memory: 0.38 GiB at 524k; one query
  ~0.1 s where Flat took 0.3-0.9 s and ``SQfp16`` 0.2 s; recall@20 0.98 raw). Results are always
  re-ranked with the exact fp32 cosines over a wider candidate pool (``4k + 10``, see
  :data:`RERANK_FACTOR`) by :class:`feature_index.index.FeatureIndex`, which brought recall@20 to 1.0
  for SQ8 and SQfp16 (0.9995 raw) alike, and makes the scores shown exact.

IVF/HNSW are not used: on random (unclustered) decoders they lose recall for little speed; revisit on
a trained 524k decoder.

Decoder rows of zero norm (dead latents pruned to zero) stay zero vectors: similarity 0 to everything.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from feature_index.layout import check_fingerprint, read_json, write_json
from itd_core.errors import ItdError

FAISS_FILE = "decoder.faiss"
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "itd-decoder-faiss"
SIDECAR_VERSION = 1
FLAT_MAX_FEATURES = 131072
QUANTIZED_FACTORY = "SQ8"
RERANK_FACTOR = 4  # quantised indexes: fetch RERANK_FACTOR * k + 10 candidates, re-rank them exactly
METRIC = "inner_product"


class DimensionError(ItdError, ValueError):
    """A query of the wrong width (an :class:`ItdError` for the CLI/app, a ``ValueError`` for callers)."""


def choose_factory(n_features: int) -> str:
    return "Flat" if n_features <= FLAT_MAX_FEATURES else QUANTIZED_FACTORY


def unit_rows(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit L2 norm (zero rows stay zero) and the original norms. shape ``[n, d] -> [n, d], [n]``"""
    import torch

    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().to("cpu", torch.float32).numpy()
    rows = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1).astype(np.float32)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return np.ascontiguousarray(rows * scale[:, None]), norms


def as_queries(x, dimension: int, what: str = "query") -> np.ndarray:
    """``[d]`` or ``[m, d]`` -> contiguous float32 ``[m, d]``, with a clear error naming both widths."""
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(x, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dimension:
        raise DimensionError(f"{what} has shape {tuple(np.shape(x))}, but the index holds {dimension}-dimensional directions "
                             f"(expected [{dimension}] or [m, {dimension}])")
    if not np.isfinite(array).all():
        raise ItdError(f"{what} contains NaN or inf")
    return np.ascontiguousarray(array)


class DecoderIndex:
    """A FAISS inner-product index over unit decoder rows, plus its sidecar description."""

    def __init__(self, index, meta: dict):
        self.index = index
        self.meta = meta

    @property
    def dimension(self) -> int:
        return int(self.meta["dimension"])

    @property
    def n_features(self) -> int:
        return int(self.meta["n_features"])

    @property
    def factory(self) -> str:
        return self.meta["factory"]

    @classmethod
    def build(cls, decoder_rows, fingerprint: str, factory: str | None = None) -> "DecoderIndex":
        """``decoder_rows``: ``W_dec`` ``[n, d]`` (normalised here). ``factory``: a FAISS factory string
        ("Flat", "SQ8", "SQfp16", ...) or None (by size, :func:`choose_factory`)."""
        import faiss

        started = time.perf_counter()
        rows, _ = unit_rows(decoder_rows)
        n, d = rows.shape
        factory = factory or choose_factory(n)
        try:
            index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ItdError(f"FAISS does not know the index type {factory!r}: {str(error).splitlines()[0]}") from None
        if not index.is_trained:
            index.train(rows)
        index.add(rows)
        meta = {
            "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "factory": factory, "dimension": d, "metric": METRIC,
            "normalized": True, "n_features": n, "ids": "row i = feature i", "fingerprint": fingerprint,
            "faiss_version": faiss.__version__, "build_seconds": round(time.perf_counter() - started, 3),
        }
        return cls(index, meta)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by inner product. shape: queries ``[d]`` or ``[m, d]`` -> scores, ids ``[m, k]`` (id -1 past the end)."""
        x = as_queries(queries, self.dimension)
        k = max(1, min(int(k), self.n_features))
        scores, ids = self.index.search(x, k)
        return scores, ids

    def save(self, folder: Path) -> Path:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FAISS_FILE
        temp = folder / f".{FAISS_FILE}.{os.getpid()}.tmp"
        try:
            faiss.write_index(self.index, str(temp))
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            self.meta["file_bytes"] = temp.stat().st_size
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        write_json(sidecar_path(folder), self.meta)  # written last: a FAISS file without a matching sidecar is not trusted
        return path

    @classmethod
    def load(cls, folder: Path, fingerprint: str, dimension: int, n_features: int) -> "DecoderIndex":
        import faiss

        path, side = folder / FAISS_FILE, sidecar_path(folder)
        if not side.is_file() or not path.is_file():
            raise FileNotFoundError(path)
        meta = read_json(side, "FAISS sidecar")
        if meta.get("format") != SIDECAR_FORMAT or meta.get("version") != SIDECAR_VERSION:
            raise ItdError(f"{side} is not a decoder-index sidecar this tool reads (format {meta.get('format')!r} v{meta.get('version')!r})")
        check_fingerprint(meta.get("fingerprint"), fingerprint, "the FAISS decoder index", folder)
        if meta.get("dimension") != dimension or meta.get("n_features") != n_features:
            raise DimensionError(f"the FAISS index in {folder} holds {meta.get('n_features')} x {meta.get('dimension')} directions, "
                                 f"the SAE has {n_features} x {dimension}; delete {path} to rebuild it")
        size = path.stat().st_size
        if size != meta.get("file_bytes"):
            raise ItdError(f"the FAISS index {path} is {size} bytes, its sidecar says {meta.get('file_bytes')}: the file is truncated or "
                           f"was replaced; delete {path} and {side.name} to rebuild it (only the search index is lost, no labels)")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as error:
            raise ItdError(f"cannot read the FAISS index {path} ({str(error).splitlines()[0][:200]}); delete it to rebuild") from None
        if index.d != dimension or index.ntotal != n_features:
            raise DimensionError(f"the FAISS index {path} holds {index.ntotal} x {index.d}, its sidecar says {n_features} x {dimension}")
        return cls(index, meta)


def sidecar_path(folder: Path) -> Path:
    return folder / (FAISS_FILE + SIDECAR_SUFFIX)


def index_bytes(index) -> int:
    """Memory the index's vectors take (codes), in bytes."""
    import faiss

    if isinstance(index, faiss.IndexFlat):
        return index.ntotal * index.d * 4
    codes = getattr(index, "codes", None)
    return int(codes.size()) if codes is not None else 0
