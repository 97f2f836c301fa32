"""Deactivation sets: named erasure configs on disk, edited one change at a time, with undo.

Storage: one :class:`~itd_core.erasure_config.ErasureConfig` JSON file per set,
``<folder>/<name>.json``, where the folder is per SAE (see :func:`app_support.settings.sets_folder`).
The file is the core's schema, so a set can be used with ``itd classify``/``itd calibrate`` as is.

Every change is a read-modify-write under an exclusive lock on ``<folder>/.<name>.json.lock``: the set
is re-read from disk, the change applied, and the result written atomically (temp file + fsync
+ rename). So a closed tab or a crashed server loses nothing that was shown as saved, and two
browser sessions editing the same set never lose each other's changes or leave a broken file:
each change applies to what is on disk at that moment. Different sets are different files.

Undo: :class:`SetEditor` keeps, per session, the set as it was before each of that session's
changes; undo writes that snapshot back (under the lock), i.e. it also undoes whatever another
session wrote to that set in between. Deleting a set moves its file to ``<folder>/.trash/``.

Changes that alter what the classifier scores (features added or removed, strengths) clear the
concept's threshold and calibration: a threshold is only valid for the features it was set on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from itd_core.atomic import atomic_write_text, file_lock
from itd_core.deactivation import SCORE_POSITIONS
from itd_core.erasure_config import CalibrationInfo, ConceptEntry, ErasureConfig, FeatureEntry
from itd_core.errors import ItdError

DEFAULT_SET = "default"
HISTORY_LIMIT = 50
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


def check_set_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name) or name.endswith(".json"):
        raise ItdError(f"bad set name {name!r}: use 1-64 letters, digits, spaces, '_', '-' or '.', starting with a letter or digit")
    return name


class SetStore:
    """The named sets of one SAE: ``<folder>/<name>.json``. ``template()`` makes an empty config for this bundle."""

    def __init__(self, folder: str | Path, template: Callable[[], ErasureConfig]):
        self.folder = Path(folder)
        self.template = template

    def path(self, name: str) -> Path:
        return self.folder / f"{check_set_name(name)}.json"

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted((p.stem for p in self.folder.glob("*.json") if _NAME.match(p.stem)), key=str.lower)

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def locked(self, name: str):
        """Exclusive lock on one set, across threads and processes."""
        return file_lock(self.path(name))

    def load(self, name: str) -> ErasureConfig:
        path = self.path(name)
        if not path.is_file():
            raise ItdError(f"no set named {name!r} (sets: {', '.join(self.names()) or 'none'})")
        return ErasureConfig.load(path)

    def _write(self, name: str, config: ErasureConfig) -> None:
        atomic_write_text(self.path(name), config.to_json())

    def create(self, name: str, config: ErasureConfig | None = None) -> ErasureConfig:
        name = check_set_name(name)
        with self.locked(name):
            if self.exists(name):
                raise ItdError(f"a set named {name!r} exists already")
            config = config if config is not None else self.template()
            self._write(name, config)
        return config

    def ensure(self, name: str = DEFAULT_SET) -> str:
        """Make the set if it does not exist; returns the name."""
        name = check_set_name(name)
        with self.locked(name):
            if not self.exists(name):
                self._write(name, self.template())
        return name

    def update(self, name: str, change: Callable[[ErasureConfig], ErasureConfig]) -> tuple[ErasureConfig, ErasureConfig]:
        """Apply ``change`` to the set as it is on disk now; returns ``(before, after)``. Writes only if it changed."""
        with self.locked(name):
            before = self.load(name)
            after = change(before.model_copy(deep=True))
            after = ErasureConfig.from_dict(json.loads(after.to_json()), source=f"set {name!r}")
            if after.to_json() != before.to_json():
                self._write(name, after)
        return before, after

    def rename(self, old: str, new: str) -> None:
        old, new = check_set_name(old), check_set_name(new)
        if old == new:
            return
        first, second = sorted([old, new])  # one lock order for every session: no deadlock
        with self.locked(first), self.locked(second):
            if self.exists(new):
                raise ItdError(f"a set named {new!r} exists already")
            self.load(old)  # a damaged set is reported, not carried over
            self.path(old).replace(self.path(new))  # one rename: never both names, never neither

    def delete(self, name: str) -> Path:
        """Move the set to ``.trash/`` (restorable by hand); returns where it went."""
        with self.locked(name):
            path = self.path(name)
            if not path.is_file():
                raise ItdError(f"no set named {name!r}")
            trash = self.folder / ".trash" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
            trash.parent.mkdir(parents=True, exist_ok=True)
            path.replace(trash)
        return trash


class SetEditor:
    """One session's edits of the sets in a store, with an undo history per set.

    ``history`` is any mutable mapping the caller keeps (the app keeps it in session state):
    ``{set name: [config JSON before each change, oldest first]}``.
    """

    def __init__(self, store: SetStore, history: dict[str, list[str]]):
        self.store = store
        self.history = history

    def change(self, name: str, change: Callable[[ErasureConfig], ErasureConfig]) -> ErasureConfig:
        before, after = self.store.update(name, change)
        if after.to_json() != before.to_json():
            stack = self.history.setdefault(name, [])
            stack.append(before.to_json())
            del stack[:-HISTORY_LIMIT]
        return after

    def can_undo(self, name: str) -> bool:
        return bool(self.history.get(name))

    def undo(self, name: str) -> ErasureConfig:
        stack = self.history.get(name)
        if not stack:
            raise ItdError(f"nothing to undo in set {name!r}")
        snapshot = ErasureConfig.model_validate_json(stack[-1])
        self.store.update(name, lambda _: snapshot)
        stack.pop()
        return snapshot


# -- changes: pure functions ErasureConfig -> ErasureConfig ------------------------------------

def _find(config: ErasureConfig, concept: str) -> ConceptEntry:
    return config.concept(concept)


def _uncalibrate(entry: ConceptEntry) -> None:
    entry.threshold = None
    entry.calibration = None


def add_features(
    config: ErasureConfig, concept: str, feature_ids: Iterable[int], *, strength: float | None = None,
    labels: Mapping[int, str] | None = None, prompts: Sequence[str] = (),
) -> ErasureConfig:
    """Add features to a concept (made if missing); features already in it are kept as they are.
    ``strength`` None: the config's default for the concept's kind (:meth:`ErasureConfig.default_strength`)."""
    concept = concept.strip()
    if not concept:
        raise ItdError("give the concept a name")
    labels = labels or {}
    ids = list(dict.fromkeys(int(f) for f in feature_ids))
    if not ids:
        raise ItdError("no features to add")
    bad = [f for f in ids if not 0 <= f < config.sae.n_latents]
    if bad:
        raise ItdError(f"feature id {bad[0]} out of range for this SAE (0..{config.sae.n_latents - 1})")
    existing = next((c for c in config.concepts if c.name == concept), None)
    if strength is None:
        strength = config.default_strength(existing.kind if existing else None)
    if existing is None:
        entry = ConceptEntry(name=concept, features=[FeatureEntry(id=f, strength=strength, label=labels.get(f, "")) for f in ids],
                             prompts=list(dict.fromkeys(prompts)))
        config.concepts.append(entry)
        return config
    present = {f.id for f in existing.features}
    new = [f for f in ids if f not in present]
    if new:
        existing.features.extend(FeatureEntry(id=f, strength=strength, label=labels.get(f, "")) for f in new)
        _uncalibrate(existing)
    existing.prompts = list(dict.fromkeys([*existing.prompts, *prompts]))
    return config


def remove_features(config: ErasureConfig, concept: str, feature_ids: Iterable[int]) -> ErasureConfig:
    """Remove features from a concept; a concept left without features is removed."""
    entry = _find(config, concept)
    drop = {int(f) for f in feature_ids}
    kept = [f for f in entry.features if f.id not in drop]
    if len(kept) == len(entry.features):
        return config
    if not kept:
        return remove_concept(config, concept)
    entry.features = kept
    _uncalibrate(entry)
    return config


def remove_concept(config: ErasureConfig, concept: str) -> ErasureConfig:
    _find(config, concept)
    config.concepts = [c for c in config.concepts if c.name != concept]
    return config


def rename_concept(config: ErasureConfig, concept: str, new_name: str) -> ErasureConfig:
    new_name = new_name.strip()
    if not new_name:
        raise ItdError("a concept name cannot be empty")
    entry = _find(config, concept)
    if new_name != concept and any(c.name == new_name for c in config.concepts):
        raise ItdError(f"a concept named {new_name!r} exists already")
    entry.name = new_name
    return config


def set_strength(config: ErasureConfig, concept: str, strength: float, feature_ids: Iterable[int] | None = None) -> ErasureConfig:
    """Set the strength of some (default: all) features of a concept."""
    entry = _find(config, concept)
    wanted = None if feature_ids is None else {int(f) for f in feature_ids}
    changed = False
    for feature in entry.features:
        if (wanted is None or feature.id in wanted) and feature.strength != strength:
            feature.strength = float(strength)
            changed = True
    if changed:
        _uncalibrate(entry)
    return config


def set_label(config: ErasureConfig, feature_id: int, label: str, concept: str | None = None) -> ErasureConfig:
    """Label a feature wherever it appears in the set (or in one concept)."""
    for entry in config.concepts:
        if concept is None or entry.name == concept:
            for feature in entry.features:
                if feature.id == feature_id:
                    feature.label = label.strip()
    return config


def set_notes(config: ErasureConfig, concept: str, notes: str) -> ErasureConfig:
    _find(config, concept).notes = notes
    return config


def set_prompts(config: ErasureConfig, concept: str, prompts: Sequence[str]) -> ErasureConfig:
    _find(config, concept).prompts = [p.strip() for p in prompts if p.strip()]
    return config


def set_threshold(config: ErasureConfig, concept: str, threshold: float | None, calibration: CalibrationInfo | None = None) -> ErasureConfig:
    entry = _find(config, concept)
    entry.threshold = None if threshold is None else float(threshold)
    entry.calibration = calibration
    return config


def set_score_positions(config: ErasureConfig, score_positions: str) -> ErasureConfig:
    """Switch what the classifier score averages over ("all", "prompt" or "peak"); every concept's threshold
    is cleared, since thresholds calibrated under one mode do not carry over."""
    if score_positions not in SCORE_POSITIONS:
        raise ItdError(f"score positions must be one of {', '.join(SCORE_POSITIONS)}, not {score_positions!r}")
    if score_positions != config.score_positions:
        config.score_positions = score_positions
        for entry in config.concepts:
            _uncalibrate(entry)
    return config


def apply_feature_rows(config: ErasureConfig, concept: str, rows: Sequence[Mapping]) -> ErasureConfig:
    """Apply an edited feature table (rows with ``id``, ``strength``, ``label`` and optional ``remove``):
    removed rows and rows missing from ``rows`` are dropped, strengths and labels updated."""
    entry = _find(config, concept)
    by_id = {int(r["id"]): r for r in rows if not r.get("remove")}
    remove = [f.id for f in entry.features if f.id not in by_id]
    for feature in entry.features:
        row = by_id.get(feature.id)
        if row is None:
            continue
        strength = float(row.get("strength", feature.strength))
        if strength != feature.strength:
            feature.strength = strength
            _uncalibrate(entry)
        feature.label = str(row.get("label") or "").strip()
    return remove_features(config, concept, remove) if remove else config


# -- views ---------------------------------------------------------------------------------

def labels(config: ErasureConfig) -> dict[int, str]:
    """Feature id -> label, from every concept of the set (first non-empty wins)."""
    out: dict[int, str] = {}
    for entry in config.concepts:
        for feature in entry.features:
            if feature.label and feature.id not in out:
                out[feature.id] = feature.label
    return out


def concepts_of(config: ErasureConfig, feature_id: int) -> list[str]:
    return [c.name for c in config.concepts if any(f.id == feature_id for f in c.features)]


def summary(config: ErasureConfig) -> list[dict]:
    """One row per concept for an overview table."""
    return [{
        "concept": c.name, "features": len(c.features),
        "threshold": c.threshold, "calibrated by": c.calibration.rule if c.calibration else "",
        "prompts": len(c.prompts), "notes": c.notes,
    } for c in config.concepts]


def describe_change(before: ErasureConfig, after: ErasureConfig) -> str:
    """A one-line account of what changed, for the page's toast."""
    b = {c.name: c for c in before.concepts}
    a = {c.name: c for c in after.concepts}
    parts = [f"added concept {n!r}" for n in a if n not in b] + [f"removed concept {n!r}" for n in b if n not in a]
    for name in a.keys() & b.keys():
        ids_b, ids_a = {f.id for f in b[name].features}, {f.id for f in a[name].features}
        if ids_a - ids_b:
            parts.append(f"{len(ids_a - ids_b)} feature(s) added to {name!r}")
        if ids_b - ids_a:
            parts.append(f"{len(ids_b - ids_a)} feature(s) removed from {name!r}")
    return "; ".join(parts) or "set updated"
