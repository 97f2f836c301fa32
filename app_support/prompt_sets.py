"""Prompt sets the app offers as defaults (retain sets, general sets, concept presets).

Sources, in this order, all optional:

* prompt files shipped in the packages: any ``.txt`` or ``.csv`` (``prompt`` column) under
  ``shapesworld/assets/`` or ``itd_core/assets/`` whose path has a folder named ``prompts``
  or whose file name contains ``prompt``;
* on the demo, ShapesWorld's own benchmark sets (:func:`shapesworld.world.erasure_prompts`):
  the object prompts used as its retain set, and one preset concept per fictional identity
  and artist.

Generated sets (:func:`red_team_sets`), for calibration: phrasings of a concept that its templates
do not use (:func:`itd_core.redteam.attack_prompts`) as targets and hard negatives
(:func:`itd_core.redteam.hard_negatives`) as retain prompts, both from the calibration split so that
the red-team benchmark's evaluation split stays unseen. On the demo, the world supplies the context
phrases and the other names of the concept's kind.

Nothing is downloaded; a missing source is skipped, and the user can always type prompts.
"""

from __future__ import annotations

import csv
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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


DEMO_CONCEPTS = "ShapesWorld: identities and artists"


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
                sets[DEMO_CONCEPTS] = PromptSet(DEMO_CONCEPTS, others, "shapesworld.world.erasure_prompts")
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
    """The retain sets offered first: on the demo, its object prompts, outside people and the other characters'
    and artists' templates (without them an artist's features take what every style prompt shares, and another
    artist's prompt is edited; the concept's own prompts leave the retain side: :func:`retain_without`), else the
    first shipped 'retain'/'remain' list."""
    demo = [n for n in sets if n.startswith("ShapesWorld:") and (n.endswith("(retain)") or n == DEMO_CONCEPTS)]
    return demo or [n for n in sets if "retain" in n.lower() or "remain" in n.lower()][:1]


def retain_without(retain: list[str], targets: list[str]) -> list[str]:
    """``retain`` without the target prompts: a prompt cannot be both, and as a retain prompt it would remove every feature of its concept."""
    excluded = set(targets)
    return [p for p in retain if p not in excluded]


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


# --------------------------------------------------------------------------- generated red-team sets

RED_TEAM_KINDS = ("person", "artist", "unsafe")
RED_TEAM_SPLIT = "calibration"  # the benchmark evaluates on the other split


def generated_phrasings_name(concept: str) -> str:
    return f"Generated phrasings of {concept} (red team, {RED_TEAM_SPLIT} split)"


def generated_negatives_name(concept: str) -> str:
    return f"Generated hard negatives of {concept}"


def demo_concept_name(name: str) -> str | None:
    """The ShapesWorld concept a set's concept name stands for (the world's spelling), or None when the world does
    not know it. A trailing remark in brackets is dropped, so the demo's preset "unsafe (gore)" is "unsafe"."""
    try:
        from shapesworld.redteam_benchmark import concept_kind, world_name
    except Exception:  # noqa: BLE001 - no demo in this checkout
        return None
    for candidate in dict.fromkeys([name, re.sub(r"\s*\([^)]*\)\s*$", "", name)]):
        try:
            concept_kind(candidate)
        except ItdError:
            continue
        return world_name(candidate)
    return None


def red_team_kind(name: str, kind: str | None, is_demo: bool = False) -> str:
    """The kind to generate prompts for: the concept's own ``kind`` when it is one the generator knows; else, on
    the demo, the world's kind of the name; else person."""
    if kind in RED_TEAM_KINDS:
        return kind
    world = demo_concept_name(name) if is_demo else None
    if world is not None:
        from shapesworld.redteam_benchmark import concept_kind

        return concept_kind(world)
    return "person"


def red_team_vocabulary(name: str, concept_names: Sequence[str] = (), is_demo: bool = False) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(spelling, others, context) for the generator. On the demo: the world's spelling of the name, the world's
    other names of its kind and the world's object phrases; for a name the world does not know, and off the demo,
    the other concepts of the set stand in as ``others`` (and the generator's own context phrases are used off the demo)."""
    in_set = tuple(n for n in dict.fromkeys(concept_names) if n != name)
    if not is_demo:
        return name, in_set, ()
    world = demo_concept_name(name)
    try:
        from shapesworld import redteam_benchmark as bench
    except Exception:  # noqa: BLE001 - an unfinished demo: generate as off the demo
        return name, in_set, ()
    context = tuple(bench.context_phrases())
    if world is None:
        return name, in_set, context
    return world, tuple(bench.other_names(world)), context


@dataclass(frozen=True)
class RedTeamSets:
    """A concept's generated phrasings (target set) and hard negatives (retain set), and a row per family."""

    phrasings: PromptSet
    negatives: PromptSet
    families: list[dict] = field(default_factory=list)  # set, family, description, prompts, example


def red_team_sets(name: str, kind: str, *, concept_names: Sequence[str] = (), is_demo: bool = False, seed: int = 0,
                  per_family: int = 4) -> RedTeamSets:
    """Generated phrasings and hard negatives of concept ``name`` (calibration split), named as the pickers show them.
    A pure function of its arguments (the generator is seeded)."""
    from itd_core import redteam

    spelling, others, context = red_team_vocabulary(name, concept_names, is_demo)
    shared = {"split": RED_TEAM_SPLIT, "seed": int(seed), "per_family": int(per_family), "context": context}
    attacks = redteam.attack_prompts(spelling, kind, **shared)
    negatives = redteam.hard_negatives(spelling, kind, others=others, **shared)
    where = f"itd_core.redteam ({kind}, seed {int(seed)}, {int(per_family)} per family)"
    rows = []
    for label, generated, descriptions, negative in (("phrasings", attacks, redteam.ATTACK_FAMILIES, False),
                                                      ("hard negatives", negatives, redteam.NEGATIVE_FAMILIES, True)):
        for family in redteam.family_names(kind, negative=negative):
            prompts = [p.prompt for p in generated if p.family == family]
            rows.append({"set": label, "family": family, "description": descriptions[family], "prompts": len(prompts),
                         "example": prompts[0] if prompts else ""})
    return RedTeamSets(
        phrasings=PromptSet(generated_phrasings_name(name), tuple(dict.fromkeys(p.prompt for p in attacks)), where),
        negatives=PromptSet(generated_negatives_name(name), tuple(dict.fromkeys(p.prompt for p in negatives)), where),
        families=rows,
    )
