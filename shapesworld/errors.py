"""Clear errors for missing or corrupt ShapesWorld assets."""

from __future__ import annotations

from pathlib import Path

try:  # the project's user-facing error type, when the core package is importable
    from itd_core.errors import ItdError as _Base
except Exception:  # pragma: no cover - shapesworld also works on its own
    _Base = RuntimeError


class AssetError(_Base, RuntimeError):
    """A ShapesWorld asset file is missing or unreadable."""


def asset_error(path: Path, retrain_cmd: str, cause: object) -> AssetError:
    """An ``AssetError`` naming ``path`` and both ways to restore it."""
    return AssetError(
        f"ShapesWorld asset {path} is missing or corrupt ({cause}). Restore it with "
        f"`git checkout -- shapesworld/assets` (from the repository root), or rebuild it with `{retrain_cmd}`."
    )
