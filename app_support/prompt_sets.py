"""Prompt sets the app offers as defaults (retain sets, general sets, concept presets).

Sources, in this order, all optional:

* the loaded bundle's world (:class:`itd_core.providers.WorldKnowledge`, from its provider): on the demo,
  ShapesWorld's benchmark sets (object prompts and people outside the world as retain sets, every character's
  and artist's templates) and one preset concept per character and artist;
* prompt files shipped in the engine: any ``.txt`` or ``.csv`` (``prompt`` column) under ``itd_core/assets/``
  whose path has a folder named ``prompts`` or whose file name contains ``prompt``.

Generated sets (:func:`red_team_sets`), for calibration: phrasings of a concept that its templates
do not use (:func:`itd_core.redteam.attack_prompts`) as targets and hard negatives
(:func:`itd_core.redteam.hard_negatives`) as retain prompts, both from the calibration split so that
the red-team benchmark's evaluation split stays unseen. A world that knows the concept supplies its spelling, the
other names of its kind and its context phrases.

Nothing is downloaded; a missing source is skipped, and the user can always type prompts.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from itd_core.errors import ItdError
from itd_core.prompts import read_prompts
from itd_core.providers import WorldKnowledge

_PACKAGES = ("itd_core",)
NO_WORLD = WorldKnowledge()
_SUFFIXES = {".txt", ".csv"}


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: tuple[str, ...]
    source: str


def _asset_files(package: str) -> list[Path]:
    root = Path(importlib.import_module(package).__file__).parent / "assets"
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


def available_prompt_sets(world: WorldKnowledge = NO_WORLD) -> dict[str, PromptSet]:
    """Name -> set, for the retain/general pickers: the world's sets, then the shipped files."""
    sets: dict[str, PromptSet] = {}
    if world.prompt_sets is not None:
        for name, prompts in world.prompt_sets().items():
            sets[name] = PromptSet(name, tuple(prompts), "the bundle provider's world")
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


def concept_presets(world: WorldKnowledge = NO_WORLD) -> dict[str, tuple[str, ...]]:
    """Concepts offered ready-made: the world's (the demo's characters, artists and unsafe category), else the
    shipped target lists."""
    if world.concept_presets is not None:
        return {name: tuple(prompts) for name, prompts in world.concept_presets().items()}
    return dict(target_file_concepts())


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


def default_retain(sets: dict[str, PromptSet], world: WorldKnowledge = NO_WORLD) -> list[str]:
    """The retain sets offered first: the world's choice (on the demo, its object prompts, outside people and the
    other characters' and artists' templates: without them an artist's features take what every style prompt
    shares, and another artist's prompt is edited; the concept's own prompts leave the retain side:
    :func:`retain_without`), else the first shipped 'retain'/'remain' list."""
    chosen = [n for n in world.default_retain_sets if n in sets]
    return chosen or [n for n in sets if "retain" in n.lower() or "remain" in n.lower()][:1]


def retain_without(retain: list[str], targets: list[str]) -> list[str]:
    """``retain`` without the target prompts: a prompt cannot be both, and as a retain prompt it would remove every feature of its concept."""
    excluded = set(targets)
    return [p for p in retain if p not in excluded]


def corpus_choices(world: WorldKnowledge = NO_WORLD) -> tuple[list[str], list[str]]:
    """(choices, default) for the feature index's corpus picker: the world's index corpus first when it has one,
    then the prompt sets."""
    sets = available_prompt_sets(world)
    own = [world.index_corpus_name] if world.index_corpus is not None else []
    return own + list(sets), own or [n for n in sets if "coco" in n][:1]


def corpus_prompts(world: WorldKnowledge, chosen: list[str], typed: str = "") -> list[str]:
    prompts = list(world.index_corpus()) if world.index_corpus is not None and world.index_corpus_name in chosen else []
    return list(dict.fromkeys(prompts + combine(available_prompt_sets(world), [c for c in chosen if c != world.index_corpus_name], typed)))


# --------------------------------------------------------------------------- generated red-team sets

RED_TEAM_KINDS = ("person", "artist", "unsafe")
RED_TEAM_SPLIT = "calibration"  # the benchmark evaluates on the other split


def generated_phrasings_name(concept: str) -> str:
    return f"Generated phrasings of {concept} (red team, {RED_TEAM_SPLIT} split)"


def generated_negatives_name(concept: str) -> str:
    return f"Generated hard negatives of {concept}"


def red_team_kind(name: str, kind: str | None, world: WorldKnowledge = NO_WORLD) -> str:
    """The kind to generate prompts for: the concept's own ``kind`` when it is one the generator knows; else the
    world's kind of the name, when it knows it; else person."""
    if kind in RED_TEAM_KINDS:
        return kind
    vocabulary = world.concept_vocabulary(name) if world.concept_vocabulary is not None else None
    return vocabulary.kind if vocabulary is not None else "person"


def red_team_vocabulary(name: str, concept_names: Sequence[str] = (), world: WorldKnowledge = NO_WORLD) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(spelling, others, context) for the generator: the world's spelling of the name, its other names of the
    same kind and its context phrases; for a name the world does not know, the other concepts of the set stand in as
    ``others`` (and without a world, the generator's own context phrases are used)."""
    in_set = tuple(n for n in dict.fromkeys(concept_names) if n != name)
    context = world.context_phrases() if world.context_phrases is not None else ()
    vocabulary = world.concept_vocabulary(name) if world.concept_vocabulary is not None else None
    if vocabulary is None:
        return name, in_set, context
    return vocabulary.spelling, vocabulary.others, context


@dataclass(frozen=True)
class RedTeamSets:
    """A concept's generated phrasings (target set) and hard negatives (retain set), and a row per family."""

    phrasings: PromptSet
    negatives: PromptSet
    families: list[dict] = field(default_factory=list)  # set, family, description, prompts, example


def red_team_sets(name: str, kind: str, *, concept_names: Sequence[str] = (), world: WorldKnowledge = NO_WORLD, seed: int = 0,
                  per_family: int = 4) -> RedTeamSets:
    """Generated phrasings and hard negatives of concept ``name`` (calibration split), named as the pickers show them.
    A pure function of its arguments (the generator is seeded)."""
    from itd_core import redteam

    spelling, others, context = red_team_vocabulary(name, concept_names, world)
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
