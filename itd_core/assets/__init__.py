"""Data files that ship inside the ``itd_core`` package (loaded offline, no hub access).

- ``prompts/``: the paper's celebrity/style target and retain lists, COCO captions, DiffusionDB
  prompts and I2P, as CSVs with a ``prompt`` column; see ``prompts/README.md`` for provenance.
- ``clip_tokenizer/``: the Stable Diffusion 1.x CLIP tokenizer (openai/clip-vit-large-patch14), derived
  from OpenAI CLIP's MIT-licensed BPE table; see ``clip_tokenizer/README.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is imported lazily: it is slow to import
    from transformers import CLIPTokenizer

ASSETS_DIR: Path = Path(__file__).resolve().parent
CLIP_TOKENIZER_DIR: Path = ASSETS_DIR / "clip_tokenizer"
PROMPTS_DIR: Path = ASSETS_DIR / "prompts"

__all__ = ["ASSETS_DIR", "CLIP_TOKENIZER_DIR", "PROMPTS_DIR", "clip_tokenizer", "prompt_set"]


def clip_tokenizer() -> "CLIPTokenizer":
    """Return a fresh SD 1.x CLIP tokenizer loaded from :data:`CLIP_TOKENIZER_DIR`.

    bos ``<|startoftext|>`` = 49406, eos = pad = unk ``<|endoftext|>`` = 49407, ``model_max_length`` 77,
    lower-casing. SD 1.x pipelines call it as
    ``tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True)``.
    Loading takes well under a second once transformers is imported; each call returns a new object.
    """
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER_DIR), local_files_only=True)


def prompt_set(name: str) -> Path:
    """Path of a shipped prompt set, e.g. ``prompt_set("celebrity_remain")``."""
    path = PROMPTS_DIR / f"{name}.csv"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.csv")))
        raise FileNotFoundError(f"no shipped prompt set {name!r}; available: {available}")
    return path
