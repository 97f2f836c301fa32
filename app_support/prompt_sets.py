"""Prompt sets the app offers as defaults (retain sets, general sets, concept presets).

Sources, in this order, all optional:

* prompt files shipped in the packages: any ``.txt`` or ``.csv`` (``prompt`` column) under
  ``shapesworld/assets/`` or ``itd_core/assets/`` whose path has a folder named ``prompts``
  or whose file name contains ``prompt``;
* on the demo, ShapesWorld's own benchmark sets (:func:`shapesworld.world.erasure_prompts`):
  the object prompts used as its retain set, and one preset concept per fictional identity
  and artist.

Nothing is downloaded; a missing source is skipped, and the user can always type prompts.
"""

from __future__ import annotations

import csv
import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from itd_core.errors import ItdError
from itd_core.prompts import read_prompts

_PACKAGES = ("shapesworld", "itd_core")
_SUFFIXES = {".txt", ".csv"}


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: tuple[str, ...]
    source: str


def _asset_files(package: str) -> list[Path]:
    try:
        module = importlib.import_module(package)
    except Exception:  # noqa: BLE001 - a package that cannot import offers nothing
        return []
    root = Path(module.__file__).parent / "assets"
    if not root.is_dir():
        return []
    files = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in _SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(root)
        if {"prompts", "corpus"} & set(relative.parts[:-1]) or "prompt" in path.stem.lower():
            files.append(path)
    return files


@lru_cache(maxsize=1)
def file_prompt_sets() -> tuple[PromptSet, ...]:
    """The shipped prompt files (read once per process: they do not change while the app runs)."""
    sets = []
    for package in _PACKAGES:
        for path in _asset_files(package):
            try:
                prompts = read_prompts(path)
            except ItdError:
                continue
            root = Path(importlib.import_module(package).__file__).parent / "assets"
            sets.append(PromptSet(f"{package}: {path.relative_to(root).with_suffix('')}", tuple(prompts), str(path)))
    return tuple(sets)


@lru_cache(maxsize=1)
def demo_benchmark() -> dict | None:
    """ShapesWorld's erasure benchmark prompt sets, or None when the world module is not there."""
    try:
        from shapesworld.world import erasure_prompts

        return erasure_prompts()
    except Exception:  # noqa: BLE001 - an unfinished or broken demo offers nothing
        return None


def available_prompt_sets(is_demo: bool) -> dict[str, PromptSet]:
    """Name -> set, for the retain/general pickers."""
    sets: dict[str, PromptSet] = {}
    if is_demo:
        bench = demo_benchmark()
        if bench and bench.get("retain"):
            retain = tuple(row["prompt"] if isinstance(row, dict) else str(row) for row in bench["retain"])
            sets["ShapesWorld: object prompts (retain)"] = PromptSet("ShapesWorld: object prompts (retain)", retain, "shapesworld.world.erasure_prompts")
        if bench and bench.get("outside_people"):
            name = "ShapesWorld: people outside the world (retain)"
            sets[name] = PromptSet(name, tuple(bench["outside_people"]), "shapesworld.world.erasure_prompts")
        if bench:
            others = tuple(p for kind in ("identity", "artist") for prompts in bench.get(kind, {}).values() for p in prompts)
            if others:
                sets["ShapesWorld: identities and artists"] = PromptSet("ShapesWorld: identities and artists", others, "shapesworld.world.erasure_prompts")
    for prompt_set in file_prompt_sets():
        sets[prompt_set.name] = prompt_set
    return sets


@lru_cache(maxsize=1)
def target_file_concepts() -> dict[str, tuple[str, ...]]:
    """Preset concepts from shipped target lists (a CSV with 'target' in its name and a ``class`` column)."""
    presets: dict[str, list[str]] = {}
    for prompt_set in file_prompt_sets():
        path = Path(prompt_set.source)
        if "target" not in path.stem or path.suffix.lower() != ".csv":
            continue
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("class") and row.get("prompt"):
                    presets.setdefault(row["class"].strip(), []).append(row["prompt"].strip())
    return {name: tuple(prompts) for name, prompts in presets.items()}


def concept_presets(is_demo: bool) -> dict[str, tuple[str, ...]]:
    """Concepts offered ready-made: the demo's identities/artists on the demo, the shipped target lists elsewhere."""
    return demo_concepts() if is_demo else dict(target_file_concepts())


@lru_cache(maxsize=1)
def demo_concepts() -> dict[str, tuple[str, ...]]:
    """Preset concepts of the demo: name -> its benchmark prompts."""
    bench = demo_benchmark()
    if not bench:
        return {}
    presets = {}
    for kind in ("identity", "artist"):
        for name, prompts in bench.get(kind, {}).items():
            presets[name] = tuple(prompts)
    if bench.get("unsafe"):
        presets["unsafe (gore)"] = tuple(bench["unsafe"])
    return presets


def combine(sets: dict[str, PromptSet], chosen: list[str], typed: str = "") -> list[str]:
    """The prompts of the chosen sets plus one typed prompt per line, without duplicates, in order."""
    prompts: list[str] = []
    for name in chosen:
        if name in sets:
            prompts.extend(sets[name].prompts)
    prompts.extend(lines(typed))
    return list(dict.fromkeys(prompts))


def lines(text: str) -> list[str]:
    """Non-blank lines, stripped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def default_retain(sets: dict[str, PromptSet]) -> list[str]:
    """The retain sets offered first: the demo's object prompts and outside people (so that a character's
    features exclude the portrait templates themselves), else the first shipped 'retain'/'remain' list."""
    demo = [n for n in sets if n.startswith("ShapesWorld:") and n.endswith("(retain)")]
    return demo or [n for n in sets if "retain" in n.lower() or "remain" in n.lower()][:1]


WORLD_CAPTIONS = "ShapesWorld: world captions (2,000 generated)"


@lru_cache(maxsize=1)
def world_captions(n: int = 2000, seed: int = 11) -> tuple[str, ...]:
    """Captions of the demo's world (a corpus for the feature index); a few seconds, so only made on demand."""
    from shapesworld import world

    return tuple(dict.fromkeys(sample.caption for sample in world.generate(n, seed=seed)))


def corpus_choices(is_demo: bool) -> tuple[list[str], list[str]]:
    """(choices, default) for the feature index's corpus picker: the prompt sets, plus generated world captions on the demo."""
    sets = available_prompt_sets(is_demo)
    choices = ([WORLD_CAPTIONS] if is_demo else []) + list(sets)
    if is_demo:
        default = [WORLD_CAPTIONS] + [n for n in sets if n.startswith("ShapesWorld")]  # ~1.5k prompts: about a minute
    else:
        default = [n for n in sets if "coco" in n][:1]
    return choices, default


def corpus_prompts(is_demo: bool, chosen: list[str], typed: str = "") -> list[str]:
    prompts = list(world_captions()) if WORLD_CAPTIONS in chosen else []
    return list(dict.fromkeys(prompts + combine(available_prompt_sets(is_demo), [c for c in chosen if c != WORLD_CAPTIONS], typed)))
