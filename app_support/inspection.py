"""Tokens with their top SAE features (the token inspector), and comparisons of prompts' feature sets.

Positions follow the ItD convention (:mod:`itd_core.encoders`): position 0 (BOS/CLS) is never
shown or counted; by default the shown positions are the prompt's real tokens and its EOS/SEP
(the attention mask), and ``include_padding=True`` adds the padding positions that the
pipeline also hands to the UNet (and that ItD also scores and edits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from itd_core.encoders import TextEncoderAdapter
from itd_core.errors import ItdError
from itd_core.sae import TopKSAE


def display_token(token: str) -> str:
    """A tokenizer piece as people read it: CLIP's end-of-word marker dropped, BERT's ``##`` kept."""
    return token.replace("</w>", "") or token


@dataclass
class PromptInspection:
    """One prompt's tokens and their sparse codes. shape: indices/values ``[T, k]`` for the T shown positions."""

    prompt: str
    tokens: list[str]
    positions: list[int]
    special: list[bool]
    indices: np.ndarray
    values: np.ndarray
    truncated: bool

    def token_labels(self) -> list[str]:
        """Unique axis labels (a prompt may repeat a token): ``'3·red'``."""
        return [f"{p}·{display_token(t)}" for p, t in zip(self.positions, self.tokens)]

    def peaks(self) -> dict[int, float]:
        """Each active feature's highest activation over the shown positions."""
        peaks: dict[int, float] = {}
        for ids, vals in zip(self.indices.tolist(), self.values.tolist()):
            for feature, value in zip(ids, vals):
                if value > 0 and value > peaks.get(feature, 0.0):
                    peaks[feature] = value
        return peaks

    def top_features(self, n: int) -> list[int]:
        """The ``n`` features with the highest peak, highest first (ties: lower id first)."""
        peaks = self.peaks()
        return sorted(peaks, key=lambda f: (-peaks[f], f))[:n]

    def matrix(self, features: Sequence[int]) -> np.ndarray:
        """Activation of each feature at each shown position (0 where inactive). shape: ``[F, T]``"""
        row_of = {f: i for i, f in enumerate(features)}
        out = np.zeros((len(features), len(self.tokens)), dtype=np.float32)
        for t, (ids, vals) in enumerate(zip(self.indices.tolist(), self.values.tolist())):
            for feature, value in zip(ids, vals):
                if feature in row_of and value > 0:
                    out[row_of[feature], t] = value
        return out

    def token_table(self, per_token: int = 5, labels: dict[int, str] | None = None) -> list[dict]:
        """One row per shown token with its strongest features, for a table."""
        labels = labels or {}
        rows = []
        for position, token, ids, vals in zip(self.positions, self.tokens, self.indices.tolist(), self.values.tolist()):
            ranked = sorted(((v, f) for f, v in zip(ids, vals) if v > 0), reverse=True)[:per_token]
            rows.append({
                "position": position, "token": display_token(token),
                "top features": ", ".join(f"#{f}{' ' + labels[f] if labels.get(f) else ''} ({v:.2f})" for v, f in ranked),
            })
        return rows


@torch.no_grad()
def inspect_prompts(adapter: TextEncoderAdapter, sae: TopKSAE, prompts: Sequence[str], *, include_padding: bool = False) -> list[PromptInspection]:
    """Capture the layer for ``prompts`` and encode every ItD position with the SAE."""
    prompts = [str(p) for p in prompts]
    if not prompts:
        raise ItdError("type at least one prompt")
    empty = [i + 1 for i, p in enumerate(prompts) if not p.strip()]
    if empty:
        raise ItdError(f"prompt {empty[0]} is empty: type some text")
    batch = adapter.tokenize(prompts)
    activations = adapter.capture(batch)
    code = sae.encode(activations[:, 1:].to(sae.W_enc.dtype))
    indices = code.indices.cpu().numpy()
    values = code.values.float().cpu().numpy()
    results = []
    for b, prompt in enumerate(prompts):
        mask = batch.attention_mask[b].bool().tolist()
        positions = [p for p in range(1, len(mask)) if include_padding or mask[p]]
        rows = [p - 1 for p in positions]
        results.append(PromptInspection(
            prompt=prompt,
            tokens=[batch.tokens[b][p] for p in positions],
            positions=positions,
            special=[bool(batch.special_mask[b, p]) for p in positions],
            indices=indices[b, rows],
            values=values[b, rows],
            truncated=batch.truncated[b],
        ))
    return results


def heatmap_features(inspections: Sequence[PromptInspection], n: int) -> list[int]:
    """The features to show as heatmap rows for a prompt: its ``n`` strongest."""
    peaks: dict[int, float] = {}
    for inspection in inspections:
        for feature, value in inspection.peaks().items():
            peaks[feature] = max(value, peaks.get(feature, 0.0))
    return sorted(peaks, key=lambda f: (-peaks[f], f))[:n]


@dataclass
class Comparison:
    """Two prompts' top-N feature sets. Lists hold ``(feature, peak in A, peak in B)``, strongest first."""

    shared: list[tuple[int, float, float]]
    only_a: list[tuple[int, float, float]]
    only_b: list[tuple[int, float, float]]

    @property
    def jaccard(self) -> float:
        union = len(self.shared) + len(self.only_a) + len(self.only_b)
        return len(self.shared) / union if union else 0.0


def compare(a: PromptInspection, b: PromptInspection, top_n: int = 32) -> Comparison:
    """Compare the top-N features of two prompts (ItD's unit: a prompt's top-N by peak activation)."""
    if top_n < 1:
        raise ItdError(f"top-N must be positive, got {top_n}")
    peaks_a, peaks_b = a.peaks(), b.peaks()
    top_a, top_b = set(a.top_features(top_n)), set(b.top_features(top_n))

    def rows(ids) -> list[tuple[int, float, float]]:
        out = [(f, peaks_a.get(f, 0.0), peaks_b.get(f, 0.0)) for f in ids]
        return sorted(out, key=lambda r: (-max(r[1], r[2]), r[0]))

    return Comparison(shared=rows(top_a & top_b), only_a=rows(top_a - top_b), only_b=rows(top_b - top_a))
