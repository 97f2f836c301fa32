"""Clear errors for missing or corrupt ShapesWorld assets."""

from __future__ import annotations

from pathlib import Path

from itd_core.errors import ItdError


class AssetError(ItdError, RuntimeError):
    """A ShapesWorld asset file is missing or unreadable."""


def asset_error(path: Path, retrain_cmd: str, cause: object) -> AssetError:
    """An ``AssetError`` naming ``path`` and both ways to restore it."""
    return AssetError(
        f"ShapesWorld asset {path} is missing or corrupt ({cause}). Restore it with "
        f"`git checkout -- shapesworld/assets` (from the repository root), or rebuild it with `{retrain_cmd}`."
    )
