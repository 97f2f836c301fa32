"""Thresholds for the ItD classifier, and the rates they give.

Rules:
* ``paper``: ``0.99 x min(score over the concept's own prompts)`` (the ItD paper's rule);
* ``fpr``: the lowest threshold whose false-positive rate on the retain prompts is at most the
  target (a prompt triggers when ``score >= threshold``);
* ``phrasings``: the ``fpr`` rule on the retain prompts plus generated hard negatives
  (:func:`itd_core.redteam.hard_negatives`, calibration split), with the TPR measured on the known
  prompts plus generated phrasings (:func:`itd_core.redteam.attack_prompts`); the paper's rule sets its
  threshold from five templates, so any phrasing that scores lower than all five passes untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel

from itd_core.errors import ItdError

PAPER_FACTOR = 0.99
DEFAULT_FPR = 0.01  # the fpr rule's default
RECOMMENDED_TARGET_FPR = 0.02  # the phrasings rule's default false-positive rate on retain + hard negatives
CalibrationRule = Literal["paper", "fpr", "phrasings", "manual"]


class Rates(BaseModel):
    tpr: float | None
    fpr: float | None
    n_target: int
    n_retain: int


def paper_threshold(target_scores: Sequence[float]) -> float:
    scores = np.asarray(target_scores, dtype=np.float64)
    if scores.size == 0:
        raise ItdError("the paper's rule needs at least one target prompt")
    return float(PAPER_FACTOR * scores.min())


def fpr_threshold(retain_scores: Sequence[float], target_fpr: float) -> float:
    if not 0.0 <= target_fpr < 1.0:
        raise ItdError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    scores = np.sort(np.asarray(retain_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise ItdError("the fpr rule needs retain prompts")
    allowed = int(np.floor(target_fpr * scores.size + 1e-9))  # retain prompts allowed to trigger
    if allowed >= scores.size:
        return float(scores[-1])
    # Just above the (allowed+1)-th highest retain score, so exactly `allowed` of them trigger (ties excluded).
    return float(np.nextafter(np.float32(scores[allowed]), np.float32(np.inf)))


def threshold_for(rule: str, target_scores: Sequence[float], negative_scores: Sequence[float], target_fpr: float | None = None,
                  hard_negative_scores: Sequence[float] = ()) -> float:
    """The threshold a rule gives. ``fpr`` holds the false-positive rate on the negatives; ``phrasings`` holds it on
    the negatives and on the hard negatives separately (pooled, a few hard negatives would hide among many easy ones)."""
    for scores in (target_scores, negative_scores, hard_negative_scores):
        if not np.isfinite(np.asarray(scores, dtype=np.float64)).all():
            raise ItdError("a classifier score is not a finite number (NaN or infinity): check the concept's strengths and the SAE")
    if rule == "paper":
        return paper_threshold(target_scores)
    if rule in ("fpr", "phrasings"):
        if target_fpr is None:
            raise ItdError(f"the {rule} rule needs a target false-positive rate")
        threshold = fpr_threshold(negative_scores, target_fpr)
        if rule == "phrasings" and len(hard_negative_scores):
            threshold = max(threshold, fpr_threshold(hard_negative_scores, target_fpr))
        return threshold
    raise ItdError(f"unknown calibration rule {rule!r}; use paper, fpr or phrasings")


def rates(threshold: float, target_scores: Sequence[float] = (), retain_scores: Sequence[float] = ()) -> Rates:
    target = np.asarray(target_scores, dtype=np.float64)
    retain = np.asarray(retain_scores, dtype=np.float64)
    return Rates(
        tpr=float((target >= threshold).mean()) if target.size else None,
        fpr=float((retain >= threshold).mean()) if retain.size else None,
        n_target=int(target.size),
        n_retain=int(retain.size),
    )


def roc_curve(target_scores: Sequence[float], retain_scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) over every distinct score, highest threshold first."""
    thresholds = np.unique(np.concatenate([np.asarray(target_scores, float), np.asarray(retain_scores, float)]))[::-1]
    target = np.asarray(target_scores, float)[:, None]
    retain = np.asarray(retain_scores, float)[:, None]
    tpr = (target >= thresholds).mean(0) if target.size else np.zeros_like(thresholds)
    fpr = (retain >= thresholds).mean(0) if retain.size else np.zeros_like(thresholds)
    return fpr, tpr, thresholds
