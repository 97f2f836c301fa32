"""The classifier calibration page's logic: scores of prompt sets, thresholds, rates, and the live box.

Scores are :meth:`itd_core.deactivation.Deactivator.scores` (the ItD score, the same in
calibration and classification), computed for every concept of the set at once. The
three groups are the concept's *target* prompts (default: the prompts its features were
selected from), *retain* prompts (things to keep; the false-positive rate rule uses them) and
*general* prompts (anything else worth watching; shown, and counted as non-targets in the ROC).
A fourth group, *hard negatives* (generated look-alikes: :func:`app_support.prompt_sets.red_team_sets`), is
held apart: the ``phrasings`` rule holds the false-positive rate on the retain prompts and, separately, on
the hard negatives (pooled, a few hard negatives would hide among many retain prompts), as
:func:`itd_core.calibration.threshold_for` and ``itd calibrate`` do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from itd_core.calibration import CalibrationRule, fpr_threshold, paper_threshold, rates, roc_curve, threshold_for
from itd_core.deactivation import Deactivator
from itd_core.encoders import TextEncoderAdapter
from itd_core.erasure_config import CalibrationInfo, ErasureConfig
from itd_core.errors import ItdError
from itd_core.sae import TopKSAE


def features_hash(config: ErasureConfig) -> str:
    """Identity of what the scores depend on (SAE, layer, score positions, concepts' features and strengths), not thresholds."""
    essence = {
        "sae": config.sae.sha256, "layer": config.model.layer, "score_positions": config.score_positions,
        "concepts": [[c.name, [(f.id, f.strength) for f in c.features]] for c in config.concepts],
    }
    return hashlib.sha256(json.dumps(essence, sort_keys=True).encode()).hexdigest()[:16]


def scoring_deactivator(config: ErasureConfig, sae: TopKSAE) -> Deactivator:
    """A deactivator for scoring: thresholds are not needed to score."""
    if not config.concepts:
        raise ItdError("the set has no concepts yet: add features on the Concept search or Feature dashboard page")
    return config.deactivator(sae)


@torch.no_grad()
def score_prompts(adapter: TextEncoderAdapter, deactivator: Deactivator, prompts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """ItD score of each prompt for each concept, as calibration reads it (no name rules: see
    :meth:`~itd_core.deactivation.Deactivator.score_prompts`). shape: ``[P, C]`` (float64; ``[0, C]`` for no prompts)."""
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        return np.zeros((0, len(deactivator.concepts)))
    return deactivator.score_prompts(adapter, prompts, batch_size, name_rules=False).double().numpy()


@dataclass
class ConceptScores:
    """One concept's scores on the three prompt groups."""

    concept: str
    target: np.ndarray
    retain: np.ndarray
    general: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hard_negative: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def non_target(self) -> np.ndarray:
        return np.concatenate([self.retain, self.hard_negative, self.general])

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return roc_curve(self.target, self.non_target)

    def auc(self) -> float | None:
        if not self.target.size or not self.non_target.size:
            return None
        # Probability that a target outscores a non-target (ties count half), the ROC's area.
        t, n = self.target[:, None], self.non_target[None, :]
        return float(((t > n).sum() + 0.5 * (t == n).sum()) / (t.size * n.size))


def choose_threshold(scores: ConceptScores, rule: CalibrationRule, *, target_fpr: float | None = None, manual: float | None = None) -> float:
    if rule == "paper":
        return paper_threshold(scores.target)
    if rule == "fpr":
        if target_fpr is None:
            raise ItdError("choose a target false-positive rate")
        return fpr_threshold(np.concatenate([scores.retain, scores.hard_negative]), target_fpr)
    if rule == "phrasings":
        if target_fpr is None:
            raise ItdError("choose a target false-positive rate")
        return threshold_for(rule, scores.target, scores.retain, target_fpr, scores.hard_negative)
    if rule == "manual":
        if manual is None or not np.isfinite(manual):
            raise ItdError("type a threshold")
        return float(manual)
    raise ItdError(f"unknown calibration rule {rule!r}")


@dataclass
class ThresholdReport:
    threshold: float
    tpr: float | None
    fpr_retain: float | None
    fpr_general: float | None
    n_target: int
    n_retain: int
    n_general: int
    fpr_hard_negative: float | None = None
    n_hard_negative: int = 0
    fpr_negatives: float | None = None  # retain and hard negatives together, as the config records it

    def calibration_info(self, rule: CalibrationRule, sets: Sequence[str], target_fpr: float | None = None) -> CalibrationInfo:
        return CalibrationInfo(rule=rule, target_fpr=target_fpr if rule in ("fpr", "phrasings") else None, sets=list(sets),
                               tpr=self.tpr, fpr=self.fpr_negatives, n_target=self.n_target, n_retain=self.n_retain + self.n_hard_negative)


def report(scores: ConceptScores, threshold: float) -> ThresholdReport:
    measured = rates(threshold, scores.target, scores.retain)
    general = rates(threshold, (), scores.general)
    hard = rates(threshold, (), scores.hard_negative)
    negatives = rates(threshold, (), np.concatenate([scores.retain, scores.hard_negative]))
    return ThresholdReport(threshold=float(threshold), tpr=measured.tpr, fpr_retain=measured.fpr, fpr_general=general.fpr,
                           n_target=measured.n_target, n_retain=measured.n_retain, n_general=general.n_retain,
                           fpr_hard_negative=hard.fpr, n_hard_negative=hard.n_retain, fpr_negatives=negatives.fpr)


@dataclass
class Verdict:
    """The live box: one prompt against the set."""

    prompt: str
    edited: bool
    rows: list[dict]  # concept, score, threshold, triggers (None: not calibrated)
    truncated: bool

    @property
    def triggered(self) -> list[str]:
        return [r["concept"] for r in self.rows if r["triggers"]]


@torch.no_grad()
def classify(adapter: TextEncoderAdapter, sae: TopKSAE, config: ErasureConfig, prompt: str) -> Verdict:
    """What the erasure hook would do with ``prompt``: its score per concept and whether it is edited.
    Uncalibrated concepts are scored but never trigger (as in ``itd classify``, which refuses them)."""
    if not prompt.strip():
        raise ItdError("type a prompt to classify")
    deactivator = scoring_deactivator(config, sae)
    batch = adapter.tokenize([prompt])
    scores = deactivator.score_prompts(adapter, [prompt])[0].tolist()  # as the hook decides, folding included
    rows = []
    for concept, score in zip(config.concepts, scores):
        triggers = None if concept.threshold is None else bool(score >= concept.threshold)
        rows.append({"concept": concept.name, "score": float(score), "threshold": concept.threshold, "triggers": triggers})
    return Verdict(prompt=prompt, edited=any(r["triggers"] for r in rows), rows=rows, truncated=batch.truncated[0])

