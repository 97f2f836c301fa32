"""The SAE checkpoint formats by name, and what a format module builds on.

A format is one module that calls :func:`register` with a :class:`SaeFormatHandler`: its name, the two files that
tell it (a config and a weights file; :func:`itd_core.sae_formats.detect_format` looks for them), a reader that
describes a checkpoint folder for the streaming reader, and a writer that fills a (temporary) folder. The package
imports its format modules in the order messages list them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from itd_core.errors import ItdError
from itd_core.sae import SAEConfig, TopKSAE
from itd_core.sae_formats.streaming import Checkpoint

SaeFormat = str  # the name of a registered format: "itd", "saelens", "native"


@dataclass(frozen=True)
class SaeFormatHandler:
    name: SaeFormat
    files: tuple[str, str]  # (config file, weights file): a folder holding both is in this format
    read: Callable[[Path], Checkpoint]
    write: Callable[[TopKSAE, Path], None]  # the folder exists and is empty; files are fsynced, the folder is not


_FORMATS: dict[SaeFormat, SaeFormatHandler] = {}


def register(handler: SaeFormatHandler) -> SaeFormatHandler:
    if handler.name in _FORMATS:
        raise ValueError(f"SAE format {handler.name!r} is registered twice")
    _FORMATS[handler.name] = handler
    return handler


def formats() -> tuple[SaeFormatHandler, ...]:
    """The registered formats, in registration order."""
    return tuple(_FORMATS.values())


def get_format(name: str) -> SaeFormatHandler:
    handler = _FORMATS.get(name)
    if handler is None:
        raise ItdError(f"unknown SAE format {name!r}: use one of {', '.join(_FORMATS)}")
    return handler


def checkpoint_files() -> frozenset[str]:
    """Every file name some format keeps in a checkpoint folder."""
    return frozenset(name for handler in _FORMATS.values() for name in handler.files)


# ---- helpers for format modules


def require_files(folder: Path, fmt: SaeFormat) -> tuple[Path, Path]:
    files = get_format(fmt).files
    paths = tuple(folder / name for name in files)
    for path in paths:
        if not path.is_file():
            raise ItdError(f"{path}: missing (a '{fmt}' checkpoint needs {' + '.join(files)})")
    return paths  # type: ignore[return-value]


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ItdError(f"{path}: unreadable or invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ItdError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def make_config(source: Path, **fields: Any) -> SAEConfig:
    try:
        return SAEConfig(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ItdError(f"{source}: invalid SAE config ({problems})") from exc
