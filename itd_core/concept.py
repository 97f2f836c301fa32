"""Concept selection: which SAE features carry a concept (the "Interpret" of ItD).

A prompt's top-N features are the N latents with the highest activation at any ItD position
(all positions but BOS). A concept's features are the union of the top-N features of its
prompts, minus every feature in the top-N of any retain prompt. Features are ranked by how
many concept prompts have them in their top-N, then by their mean peak activation.
The retain side is a :class:`PromptProfile` that callers can compute once and reuse.

``retain_margin`` (not the paper's) subtracts with a margin: a feature is dropped only when the share
of retain prompts that have it in their top-N is at least ``retain_margin`` times the share of concept
prompts that do. The paper's rule drops a concept's key feature as soon as one retain prompt shares it
(another name with a common word piece); the margin keeps it unless the retain side uses it comparably.
``min_share`` (not the paper's; 0 is its union) keeps only features in the top-N of at least that share of
the concept's prompts: with many generated phrasings, the union would also take each phrasing's own words.
``specific_share`` (not the paper's; 0 is off) adds the features specific to the concept: those that fire at all on at
least that share of the concept's prompts and on at most ``specific_max_retain`` of the retain prompts, whatever
their top-N rank. A concept of many words (unsafe content: gore, a lynching, a serial killer) has features that
each of its words fires below the top-N of a prompt, so neither the union nor ``min_share`` sees them; the retain
side's fire rate, with generated hard negatives in the same phrasings, keeps each phrasing's own words out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel, Field

from itd_core.deactivation import ConceptFeatures
from itd_core.defaults import DEFAULT_SPECIFIC_MAX_RETAIN, DEFAULT_TOP_N, PAPER_STRENGTH
from itd_core.encoders import TextEncoderAdapter
from itd_core.errors import ItdError
from itd_core.prompts import prompts_hash
from itd_core.sae import TopKSAE

# The recommended selection (measured on ShapesWorld, README "Red-team benchmark"); the paper's is None / 0.
RECOMMENDED_RETAIN_MARGIN = 0.25
RECOMMENDED_MIN_SHARE = 0.2
RECOMMENDED_SPECIFIC_SHARE = 0.15


@torch.no_grad()
def _encode_peaks(adapter: TextEncoderAdapter, sae: TopKSAE, prompts: Sequence[str], batch_size: int, keep_codes: bool):
    """Peaks ``[P, n]`` (float32) and, when asked, each batch's (tokens, code) for later look-ups."""
    rows, codes = [], []
    for batch, activations in adapter.iter_capture(list(prompts), batch_size):
        code = sae.encode(activations[:, 1:].to(sae.W_enc.dtype))
        flat_values = code.values.float().flatten(1)
        peaks = torch.zeros(len(activations), sae.n_latents, dtype=torch.float32, device=flat_values.device)
        rows.append(peaks.scatter_reduce_(1, code.indices.flatten(1), flat_values, reduce="amax").cpu())
        if keep_codes:
            codes.append((batch.tokens, code.values.float().cpu(), code.indices.cpu()))
    return torch.cat(rows), codes


def peak_activations(adapter: TextEncoderAdapter, sae: TopKSAE, prompts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Each prompt's highest activation of each latent over its ItD positions. shape: ``[P, n_latents]`` (float32)."""
    return _encode_peaks(adapter, sae, prompts, batch_size, keep_codes=False)[0]


def top_n_mask(peaks: torch.Tensor, top_n: int) -> torch.Tensor:
    """Per prompt, True on its top-N latents (only latents that fire). shape: ``[P, n] -> [P, n]``"""
    n = min(top_n, peaks.shape[1])
    top = torch.topk(peaks, n, dim=1)
    mask = torch.zeros_like(peaks, dtype=torch.bool)
    mask.scatter_(1, top.indices, top.values > 0)
    return mask


@dataclass
class PromptProfile:
    """What a prompt set activates: the union of its prompts' top-N features and firing counts.
    Reusable across concepts (the retain side of every selection)."""

    top_n: int
    n_prompts: int
    in_top_n: torch.Tensor  # [n] bool: in the top-N of at least one prompt
    fire_counts: torch.Tensor  # [n] int: prompts in which the latent fires at some ItD position
    prompts_hash: str
    top_n_counts: torch.Tensor | None = None  # [n] int: prompts that have the latent in their top-N (needed by retain_margin)

    @classmethod
    def build(cls, adapter: TextEncoderAdapter, sae: TopKSAE, prompts: Sequence[str], top_n: int, batch_size: int = 32) -> "PromptProfile":
        if not prompts:
            raise ItdError("the retain set is empty")
        peaks = peak_activations(adapter, sae, prompts, batch_size)
        return cls(
            top_n=top_n,
            n_prompts=len(prompts),
            in_top_n=top_n_mask(peaks, top_n).any(0),
            fire_counts=(peaks > 0).sum(0),
            prompts_hash=prompts_hash(prompts),
            top_n_counts=top_n_mask(peaks, top_n).sum(0),
        )

    def dropped(self, concept_hits: torch.Tensor, n_concept_prompts: int, retain_margin: float | None) -> torch.Tensor:
        """Which features the retain side takes away from a concept whose prompts have them ``concept_hits`` times
        in their top-N. shape: ``[n] -> [n]`` bool"""
        if retain_margin is None:
            return self.in_top_n.to(concept_hits.device)
        if self.top_n_counts is None:
            raise ItdError("this retain profile has no top-N counts (built by an older version): rebuild it to use retain_margin")
        retain_share = self.top_n_counts.to(concept_hits.device).float() / self.n_prompts
        concept_share = concept_hits.float() / n_concept_prompts
        return self.in_top_n.to(concept_hits.device) & (retain_share >= retain_margin * concept_share)


class FeatureEvidence(BaseModel):
    id: int
    concept_hits: int = Field(description="concept prompts that have the feature in their top-N")
    concept_fraction: float
    max_activation: float = Field(description="highest activation on any concept prompt's ItD positions")
    mean_activation: float = Field(description="mean over concept prompts of the feature's peak activation")
    retain_fire_rate: float = Field(description="share of retain prompts on which the feature fires at all")
    peak_tokens: list[str] = Field(default_factory=list, description="concept tokens where the feature peaks, most common first")


class ConceptSelection(BaseModel):
    name: str
    top_n: int
    prompts: list[str]
    n_retain_prompts: int
    retain_hash: str
    candidates: int = Field(description="union of the concept prompts' top-N features")
    removed_by_retain: int
    features: list[FeatureEvidence]

    @property
    def feature_ids(self) -> list[int]:
        return [f.id for f in self.features]

    def to_concept_features(self, strength: float = PAPER_STRENGTH, threshold: float | None = None) -> ConceptFeatures:
        return ConceptFeatures.uniform(self.name, self.feature_ids, strength, threshold)


def _peak_tokens(codes, features: Sequence[int]) -> dict[int, list[str]]:
    """For each feature, the tokens (one per concept prompt) where it is most active, most common first."""
    wanted = torch.tensor(list(features), dtype=torch.long)
    counters: dict[int, Counter] = {f: Counter() for f in features}
    for tokens, values, indices in codes:
        for b in range(len(tokens)):
            per_position = (values[b].unsqueeze(-1) * (indices[b].unsqueeze(-1) == wanted)).amax(1)  # [positions, F]
            best = per_position.argmax(0)
            for j, feature in enumerate(features):
                if per_position[best[j], j] > 0:
                    counters[feature][tokens[b][1 + int(best[j])]] += 1
    return {f: [token for token, _ in counters[f].most_common(3)] for f in features}


def select_concept(
    adapter: TextEncoderAdapter,
    sae: TopKSAE,
    name: str,
    prompts: Sequence[str],
    retain: PromptProfile | Sequence[str],
    *,
    top_n: int = DEFAULT_TOP_N,
    retain_margin: float | None = None,
    min_share: float = 0.0,
    specific_share: float = 0.0,
    specific_max_retain: float = DEFAULT_SPECIFIC_MAX_RETAIN,
    batch_size: int = 32,
) -> ConceptSelection:
    """The ItD feature set of a concept, ranked, with evidence for each feature.
    ``retain_margin=None``, ``min_share=0`` and ``specific_share=0`` are the paper's selection (see the module
    docstring for the others)."""
    prompts = [p for p in prompts]
    if not prompts or not any(p.strip() for p in prompts):
        raise ItdError(f"concept {name!r} has no prompts")
    if top_n < 1:
        raise ItdError(f"top-N must be positive, got {top_n}")
    if retain_margin is not None and not (retain_margin >= 0 and math.isfinite(retain_margin)):
        raise ItdError(f"retain margin must be a finite number >= 0, got {retain_margin}")
    if not 0.0 <= min_share <= 1.0:
        raise ItdError(f"min_share must be in [0, 1], got {min_share}")
    if not (0.0 <= specific_share <= 1.0 and 0.0 <= specific_max_retain <= 1.0):
        raise ItdError(f"specific_share and specific_max_retain must be in [0, 1], got {specific_share} and {specific_max_retain}")
    if not isinstance(retain, PromptProfile):
        retain = PromptProfile.build(adapter, sae, retain, top_n, batch_size)
    elif retain.top_n != top_n:
        raise ItdError(f"the retain profile was built with top-N={retain.top_n}, not {top_n}")
    peaks, codes = _encode_peaks(adapter, sae, prompts, batch_size, keep_codes=True)
    concept_top = top_n_mask(peaks, top_n)
    hits = concept_top.sum(0)
    candidates = (hits > 0) & (hits >= min_share * len(prompts))
    removed = candidates & retain.dropped(hits, len(prompts), retain_margin)
    selected = candidates & ~removed
    if specific_share > 0:
        concept_fire_share = (peaks > 0).float().mean(0)
        retain_fire_share = retain.fire_counts.to(peaks.device).float() / retain.n_prompts
        specific = (concept_fire_share >= specific_share) & (retain_fire_share <= specific_max_retain)
        candidates |= specific
        removed &= ~specific
        selected |= specific
    ids = selected.nonzero().flatten()
    mean_peak = peaks.mean(0)
    order = sorted(ids.tolist(), key=lambda f: (-int(hits[f]), -float(mean_peak[f]), f))
    tokens = _peak_tokens(codes, order) if order else {}
    evidence = [
        FeatureEvidence(
            id=f,
            concept_hits=int(hits[f]),
            concept_fraction=float(hits[f]) / len(prompts),
            max_activation=float(peaks[:, f].max()),
            mean_activation=float(mean_peak[f]),
            retain_fire_rate=float(retain.fire_counts[f]) / retain.n_prompts,
            peak_tokens=tokens.get(f, []),
        )
        for f in order
    ]
    return ConceptSelection(
        name=name,
        top_n=top_n,
        prompts=list(prompts),
        n_retain_prompts=retain.n_prompts,
        retain_hash=retain.prompts_hash,
        candidates=int(candidates.sum()),
        removed_by_retain=int(removed.sum()),
        features=evidence,
    )
