"""A concept's prompts from what the user types: a name/word expanded with templates, or prompts as typed.

The templates follow the ItD paper's sets: identities ("A portrait of {}", ...), artistic styles
("Painting in the style of {}", ...) and objects. Feature selection itself is
:func:`itd_core.concept.select_concept` (the same as ``itd concept select``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from itd_core.errors import ItdError
from itd_core.prompts import expand_templates

TEMPLATES: dict[str, tuple[str, ...]] = {
    "person / character": (
        "A portrait of {}", "A sketch of {}", "An oil painting of {}", "{} in an official photo",
        "An image capturing {} at a public event",
    ),
    "art style / artist": (
        "Image in the style of {}", "Art inspired by {}", "Painting in the style of {}",
        "A reproduction of art by {}", "A famous artwork by {}",
    ),
    "object / word": ("A photo of a {}", "A picture of a {}", "An image of a {}", "A drawing of a {}", "{}"),
}
KINDS = ("name or word", "prompts")


def concept_prompts(kind: str, text: str, template_group: str = "person / character") -> list[str]:
    """``kind='name or word'``: the name in each template of the group; ``kind='prompts'``: one prompt per line."""
    if kind == "name or word":
        name = " ".join(text.split())
        if not name:
            raise ItdError("type a concept: a name, a word, or switch to prompts")
        if template_group not in TEMPLATES:
            raise ItdError(f"unknown template group {template_group!r}")
        return expand_templates(name, TEMPLATES[template_group])
    if kind == "prompts":
        prompts = _lines(text)
        if not prompts:
            raise ItdError("type at least one concept prompt (one per line)")
        return prompts
    raise ItdError(f"unknown concept kind {kind!r}")


def default_name(kind: str, text: str, presets: Mapping[str, Sequence[str]] | None = None) -> str:
    """A concept name from the input: the name itself, a preset's name while the prompts are that preset's,
    or the first prompt shortened. Derived from the input alone, so that it cannot outlive the prompts it names."""
    if kind == "name or word":
        return " ".join(text.split())
    prompts = _lines(text)
    preset = next((name for name, preset_prompts in (presets or {}).items() if list(preset_prompts) == prompts), None)
    return preset or (prompts[0][:40] if prompts else "")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]
