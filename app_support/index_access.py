"""The feature index (:mod:`feature_index`) as the app sees it: open when possible, a clear status when not.

:func:`open_index` returns an :class:`IndexHandle`. ``handle.index`` is the
:class:`feature_index.FeatureIndex` of the loaded SAE (labels, lists, FAISS neighbours and
concept search work from the start), and ``handle.has_stats`` says whether corpus statistics
(frequency, histogram, top examples, token search) and a feature map have been built. When the
index folder cannot be opened (another SAE's, unreadable), ``handle.index`` is None and
``handle.message`` says why, so that pages show it and offer to build instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from feature_index import FeatureIndex
from feature_index.layout import default_index_dir
from itd_core.errors import ItdError

NOT_BUILT = "feature index not built yet for this SAE: build it (corpus statistics, FAISS index, feature map)"


@dataclass
class IndexHandle:
    index: object | None
    message: str = ""

    @property
    def has_stats(self) -> bool:
        try:
            return self.index is not None and bool(self.index.has_stats)
        except (ItdError, OSError):  # a damaged folder reads as 'not built'
            return False

    @property
    def status(self) -> str:
        """Why statistics are missing ('' when they are there)."""
        if self.index is None:
            return self.message
        return "" if self.has_stats else NOT_BUILT

    def labels(self) -> dict[int, str]:
        """Hand labels ({} without an index, or when its store cannot be read)."""
        if self.index is None:
            return {}
        try:
            return dict(self.index.labels.all())
        except (ItdError, sqlite3.Error, OSError):  # labels are decoration; a damaged store must not break a page
            return {}

    def auto_labels(self) -> dict:
        """Automatic labels, feature -> :class:`feature_index.auto_labels.AutoLabel` ({} when they cannot be made)."""
        if self.index is None:
            return {}
        try:
            return self.index.auto_labels()
        except (ItdError, sqlite3.Error, OSError):
            return {}

    def display_labels(self) -> dict[int, str]:
        """Hand labels over automatic ones, marked "(auto)" (:mod:`feature_index.auto_labels`)."""
        if self.index is None:
            return {}
        try:
            return self.index.display_labels()
        except (ItdError, sqlite3.Error, OSError):
            return self.labels()


def stamp(folder: str | Path) -> str:
    """Changes when the index folder's description changes (a build finished): a cache key."""
    path = Path(folder) / "index.json"
    try:
        return str(path.stat().st_mtime_ns)
    except OSError:
        return ""


def index_folder(bundle) -> Path:
    return default_index_dir(bundle.fingerprint)


def open_index(bundle) -> IndexHandle:
    try:
        return IndexHandle(FeatureIndex.open(bundle, index_folder(bundle)))
    except ItdError as error:
        return IndexHandle(None, f"the feature index cannot be opened: {error}")
    except (OSError, sqlite3.Error) as error:  # a folder the app cannot create or read, a damaged store
        return IndexHandle(None, f"the feature index cannot be opened ({type(error).__name__}: {error})")


STAGES = {"labels": "automatic feature labels", "tokenize": "tokenizing the corpus", "statistics": "corpus statistics", "finalize": "writing statistics",
          "faiss": "FAISS index of decoder directions", "map": "feature map", "pca": "feature map (PCA)", "umap": "feature map (UMAP)"}


def build(handle: IndexHandle, corpus: Sequence[str], progress: Callable[[str, float], None] | None = None, feature_map: str = "pca") -> dict:
    """Build (or resume) the index over ``corpus``; ``progress(text, fraction)``. Returns the build report as a dict."""
    if handle.index is None:
        raise ItdError(handle.message or "the feature index is not available")
    corpus = [p for p in corpus if p.strip()]
    if not corpus:
        raise ItdError("the corpus is empty: choose prompt sets or type prompts")

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(f"{STAGES.get(stage, stage)}: {done:,}/{total:,}", (done / total) if total else 1.0)

    result = handle.index.build(corpus, progress=report, feature_map=feature_map)
    return result.model_dump() if hasattr(result, "model_dump") else dict(result)
