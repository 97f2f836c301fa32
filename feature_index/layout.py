"""Where a feature index lives, and the identity check that guards it.

One folder per SAE (its weights' fingerprint), by default ``$ITD_INDEX_DIR/<fingerprint[:16]>/``
with ``ITD_INDEX_DIR`` defaulting to ``~/.cache/itd-explorer/index``::

    index.json                 # what the folder is for (fingerprint, sizes, layer) and the current statistics
    store.sqlite               # labels and named lists (SQLite, WAL), see feature_index.store
    decoder.faiss(.json)       # FAISS index over the unit decoder rows + sidecar, see feature_index.faiss_index
    stats/<key>/...            # corpus statistics, one folder per (corpus, encoder, settings), see feature_index.stats
    profiles/*.safetensors     # cached retain-set profiles for concept search, see feature_index.search
    maps/*.safetensors         # cached 2-D feature maps, see feature_index.feature_map

Every artifact also records the SAE fingerprint it was made for and is checked on load, so an
index copied next to another SAE is refused with a clear error instead of answering wrongly.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from itd_core.atomic import atomic_write_text
from itd_core.errors import ItdError

INDEX_FORMAT = "itd-feature-index"
INDEX_VERSION = 1
INDEX_JSON = "index.json"
ENV_INDEX_DIR = "ITD_INDEX_DIR"


def index_root() -> Path:
    """The parent of all per-SAE index folders (``$ITD_INDEX_DIR`` or ``~/.cache/itd-explorer/index``)."""
    configured = os.environ.get(ENV_INDEX_DIR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "itd-explorer" / "index"


def default_index_dir(fingerprint: str) -> Path:
    return index_root() / fingerprint[:16]


def read_json(path: Path, what: str) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ItdError(f"unreadable {what} {path}: {error}; delete it to rebuild") from None
    if not isinstance(document, dict):
        raise ItdError(f"{path} is not a {what} (a JSON object was expected)")
    return document


def write_json(path: Path, document: dict) -> None:
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def check_fingerprint(found: str | None, expected: str, what: str, where: Path) -> None:
    """Raise an :class:`ItdError` naming both fingerprints when an artifact was made for another SAE."""
    if found != expected:
        raise ItdError(
            f"{what} in {where} was built for another SAE (fingerprint {str(found)[:16]}…, this bundle's SAE is "
            f"{expected[:16]}…); open the right index folder, or use a new --index-dir for this SAE (nothing was changed)")


def init_index_folder(folder: Path, identity: dict) -> dict:
    """Create ``folder/index.json`` for an SAE, or check that the existing one is for the same SAE.

    ``identity`` holds at least ``fingerprint``, ``n_latents`` and ``d_model``. Returns the document.
    """
    path = folder / INDEX_JSON
    if path.is_file():
        document = read_json(path, "feature-index description")
        if document.get("format") != INDEX_FORMAT:
            raise ItdError(f"{path} is not a feature index (format {document.get('format')!r})")
        if document.get("version") != INDEX_VERSION:
            raise ItdError(f"feature index {folder} has version {document.get('version')!r}; this tool reads version {INDEX_VERSION}")
        check_fingerprint(document.get("fingerprint"), identity["fingerprint"], "the feature index", folder)
        return document
    if folder.exists() and not folder.is_dir():
        raise ItdError(f"index folder {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    document = {"format": INDEX_FORMAT, "version": INDEX_VERSION, **identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stats": None}
    write_json(path, document)
    return document


def update_index_json(folder: Path, **changes) -> dict:
    path = folder / INDEX_JSON
    document = read_json(path, "feature-index description")
    document.update(changes)
    write_json(path, document)
    return document
