"""Fetching from the Hugging Face hub (models and SAE checkpoints alike), with one kind of error message."""

from __future__ import annotations

import os
from pathlib import Path

from itd_core.errors import ItdError


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set, read now (huggingface_hub itself reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_snapshot(repo_id: str, *, what: str, local_hint: str, subfolder: str | None = None, allow_patterns: list[str] | None = None) -> Path:
    """A local snapshot of hub repo ``repo_id`` in the usual cache (its ``subfolder`` when given, and then only that
    subfolder is fetched), fetching what is missing; with ``HF_HUB_OFFLINE`` set only the cache is looked at.

    ``what`` names the thing for the message ("model", "SAE"); ``local_hint`` says which local folder to point at
    instead.
    """
    if subfolder and allow_patterns is None:
        allow_patterns = [f"{subfolder}/*"]
    offline = hub_offline()
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(repo_id, allow_patterns=allow_patterns, local_files_only=offline))
    except Exception as exc:  # noqa: BLE001 - network / cache / auth failures all mean the same to the user
        where = f"'{repo_id}'" + (f" (subfolder {subfolder!r})" if subfolder else "")
        state = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else "the hub did not serve it and it is not in the local cache"
        include = f" --include {' '.join(repr(pattern) for pattern in allow_patterns)}" if allow_patterns else ""
        raise ItdError(
            f"could not fetch {what} {where} from the Hugging Face hub: {state} ({type(exc).__name__}). "
            f"Download it where there is network access (hf download {repo_id}{include}), "
            f"or point at a local folder instead ({local_hint})."
        ) from exc
    folder = snapshot / subfolder if subfolder else snapshot
    if not folder.is_dir():
        raise ItdError(f"hub repo {repo_id} has no subfolder {subfolder!r} (snapshot at {snapshot})")
    return folder
