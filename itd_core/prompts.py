"""Prompts and prompt files: a CSV with a ``prompt`` column, or a text file with one prompt per line.

Limits (README, "Limits and safety"), checked before any model work, each error naming the limit:
a prompt holds at most :data:`MAX_PROMPT_CHARS` characters (a text encoder reads 77 tokens, a few
hundred characters; the tokenizer's time and memory grow with the text), is valid Unicode (no lone
surrogates) without NUL characters; a prompt file is at most :data:`MAX_PROMPT_FILE_BYTES` and
:data:`MAX_PROMPTS` prompts.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from itd_core.errors import ItdError

MAX_PROMPT_CHARS = 4096
MAX_PROMPTS = 100_000
MAX_PROMPT_FILE_BYTES = 32 * 2**20


def check_prompt(prompt: str, where: str = "a prompt") -> str:
    """``prompt`` if it is within the limits, else an ItdError that says which and where."""
    if not isinstance(prompt, str):
        raise ItdError(f"{where} is a {type(prompt).__name__}, not text")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ItdError(f"{where} has {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,} (a text encoder reads 77 tokens)")
    if "\x00" in prompt:
        raise ItdError(f"{where} holds a NUL character")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise ItdError(f"{where} holds a lone surrogate (invalid Unicode); pass text that encodes as UTF-8") from None
    return prompt


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """All of ``prompts`` within the limits (see :func:`check_prompt`), at most :data:`MAX_PROMPTS` of them."""
    if len(prompts) > MAX_PROMPTS:
        raise ItdError(f"{len(prompts):,} prompts at once; the limit is {MAX_PROMPTS:,}")
    return [check_prompt(p, f"prompt {i + 1}" if len(prompts) > 1 else "the prompt") for i, p in enumerate(prompts)]


def read_prompts(path: str | Path, *, column: str = "prompt", allow_empty: bool = False) -> list[str]:
    """Read one prompt file. Blank lines of a text file are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ItdError(f"prompt file not found: {path}")
    size = path.stat().st_size
    if size > MAX_PROMPT_FILE_BYTES:
        raise ItdError(f"{path} is {size / 2**20:.1f} MiB; the limit for a prompt file is {MAX_PROMPT_FILE_BYTES // 2**20} MiB (split it)")
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
    if len(prompts) > MAX_PROMPTS:
        raise ItdError(f"{path} holds {len(prompts):,} prompts; the limit is {MAX_PROMPTS:,} per file")
    return [check_prompt(p, f"{path}: prompt {i + 1}") for i, p in enumerate(prompts)]


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
