"""Prompt files: a CSV with a ``prompt`` column, or a text file with one prompt per line."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from itd_core.errors import ItdError


def read_prompts(path: str | Path, *, column: str = "prompt", allow_empty: bool = False) -> list[str]:
    """Read one prompt file. Blank lines of a text file are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ItdError(f"prompt file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ItdError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or column not in reader.fieldnames:
            raise ItdError(f"{path} has no '{column}' column (columns: {', '.join(reader.fieldnames or [])})")
        prompts = [row[column].strip() for row in reader if row.get(column) is not None]
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts and not allow_empty:
        raise ItdError(f"{path} holds no prompts")
    return prompts


def read_prompt_files(paths: Iterable[str | Path], **kwargs) -> list[str]:
    return [prompt for path in paths for prompt in read_prompts(path, **kwargs)]


def expand_templates(name: str, templates: Sequence[str]) -> list[str]:
    """``"A portrait of {}"`` x ``"Tom Cruise"`` -> ``"A portrait of Tom Cruise"``."""
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ItdError(f"template without a '{{}}' placeholder: {bad[0]!r}")
    return [template.replace("{}", name) for template in templates]


def prompts_hash(prompts: Sequence[str]) -> str:
    """Stable identity of a prompt list (order matters), for caches."""
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(prompt.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]
