"""Atomic file writes: write a temp file in the same folder, fsync, then rename over the target,
so that a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload) -> Path:
    """Indented strict JSON (NaN/inf floats at the top level become null), written atomically."""
    import json
    import math

    if isinstance(payload, dict):
        payload = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in payload.items()}
    return atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
