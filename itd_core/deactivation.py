"""Interpret-then-Deactivate on a batch of layer activations: the zero-shot classifier and the edit.

For a prompt with layer activations ``x`` (``[T, d]``) and a concept ``c`` with features ``F_c``
and strengths ``s_f`` (the paper uses -8):

* sparse code ``z = SAE.encode(x_t)`` at every ItD position ``t >= 1`` (BOS is left alone);
* deactivated reconstruction ``x̂_c = decode(z')`` where ``z'_f = s_f · z_f`` for ``f ∈ F_c``;
* **score** ``s_c(x) = mean over t >= 1 and the d dims of (x̂_c − x)²`` (float32);
* the prompt triggers ``c`` when ``s_c(x) >= threshold_c``.

``score_positions="prompt"`` (not the paper's) averages the score over the prompt's own tokens
(BOS excluded, EOS included) instead of every padded position; ``"peak"`` averages over the
:data:`PEAK_TOKENS` highest-scoring of them, so a name in a long prompt is not diluted by its length. The paper's mean dilutes a
concept token by however much padding the prompt has, so one threshold must cover short and
long prompts; on ShapesWorld's 14 characters the prompt-token mean caught 42 of 42 paraphrases
of the names (31 with the paper's mean) with no retain prompt crossing a threshold. Thresholds
calibrated under one mode do not carry over to the other.

The same score is used to calibrate and to classify (the reference code reduced over
different axes in the two places). A prompt that triggers at least one concept gets its
layer output at positions ``t >= 1`` replaced by the deactivated reconstruction for the union
of the concepts it triggers; every other prompt is returned bit-exactly.

``edit_positions="concept"`` (not the paper's) replaces only the positions where a feature of a
triggered concept is active, and leaves the prompt's other tokens exactly as they were.

``edit_output="residual"`` (not the paper's) keeps the layer's own output and adds only the change of
the triggered concepts' features, ``x_t + Σ_f (s_f − 1)·z_f·d_f``: what the SAE does not reconstruct
stays, and a position where no concept feature fires is not touched at all. The paper's
``"reconstruction"`` replaces the output by ``decode(z')``; on ShapesWorld that, at -8, lost the
shape and colour a prompt names in most erased images, and the residual edit at a milder strength
(:data:`itd_core.erasure_config.RESIDUAL_STRENGTHS`) in few, with fewer leaks (README, "Erasure methods").

Reduced precision: an SAE in bf16 is about three times faster than fp32 on a CPU (README, Benchmarks) but its
scores move by up to a few percent, enough to flip a prompt that sits at a threshold (1 in about 1,000 real prompts
measured). :meth:`itd_core.sae.TopKSAE.screen_in_bf16` keeps most of that speed with the fp32 result.

Cost: the encode is one matmul shared by all concepts; the reconstruction is a sparse
gather of the k active decoder rows; the concept terms only touch the few (token, latent)
pairs whose latent belongs to some concept, so C concepts cost about as much as one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch

from itd_core.defaults import PAPER_STRENGTH
from itd_core.errors import ItdError
from itd_core.prompt_folding import PromptFolding, fold_concept_prompt, names_someone_else, names_the_concept
from itd_core.sae import TopKSAE

if TYPE_CHECKING:
    from itd_core.encoders import TextEncoderAdapter

ScorePositions = Literal["all", "prompt", "peak"]
PEAK_TOKENS = 4  # score_positions="peak": the mean over this many of the prompt's highest-scoring tokens
SCORE_POSITIONS: tuple[str, ...] = get_args(ScorePositions)
EditPositions = Literal["all", "concept"]
EDIT_POSITIONS: tuple[str, ...] = get_args(EditPositions)
EditOutput = Literal["reconstruction", "residual"]
EDIT_OUTPUTS: tuple[str, ...] = get_args(EditOutput)


@dataclass(frozen=True)
class ConceptFeatures:
    """A concept as the engine sees it: features, their strengths, and an optional threshold."""

    name: str
    feature_ids: tuple[int, ...]
    strengths: tuple[float, ...]
    threshold: float | None = None

    @classmethod
    def uniform(cls, name: str, feature_ids: Sequence[int], strength: float = PAPER_STRENGTH, threshold: float | None = None) -> "ConceptFeatures":
        return cls(name, tuple(int(f) for f in feature_ids), (float(strength),) * len(feature_ids), threshold)

    def with_threshold(self, threshold: float | None) -> "ConceptFeatures":
        return ConceptFeatures(self.name, self.feature_ids, self.strengths, threshold)


@dataclass
class ErasureResult:
    """shape: activations ``[B, T, d]``; scores/triggered ``[B, C]``; edited ``[B]``."""

    activations: torch.Tensor
    scores: torch.Tensor
    triggered: torch.Tensor
    edited: torch.Tensor


@dataclass
class _Hits:
    """The (prompt, position, slot) triples whose active latent belongs to some concept."""

    token: torch.Tensor  # [H] index into the flattened [B*(T-1)] tokens
    prompt: torch.Tensor  # [H]
    union_slot: torch.Tensor  # [H] column in the strength table
    value: torch.Tensor  # [H] latent activation (float32)
    rows: torch.Tensor  # [H, d] decoder rows (float32)


class Deactivator:
    """Scores and edits layer activations for several concepts at once, vectorised over the batch."""

    def __init__(self, sae: TopKSAE, concepts: Sequence[ConceptFeatures], score_positions: ScorePositions = "all",
                 edit_positions: EditPositions = "all", *, edit_output: EditOutput = "reconstruction", prompt_folding: PromptFolding = "none",
                 edit_strength: float | None = None):
        """``edit_strength``: when given, the edit multiplies every applied feature by it instead of its own strength,
        while the scores (and so the decisions against calibrated thresholds) keep the concepts' strengths: a preview
        of a milder or stronger edit that needs no recalibration."""
        if not concepts:
            raise ItdError("no concepts to deactivate")
        if score_positions not in SCORE_POSITIONS:
            raise ItdError(f"score_positions must be one of {', '.join(SCORE_POSITIONS)}, not {score_positions!r}")
        if edit_positions not in EDIT_POSITIONS:
            raise ItdError(f"edit_positions must be 'all' or 'concept', not {edit_positions!r}")
        if prompt_folding not in get_args(PromptFolding):
            raise ItdError(f"prompt_folding must be one of {', '.join(get_args(PromptFolding))}, not {prompt_folding!r}")
        if edit_output not in EDIT_OUTPUTS:
            raise ItdError(f"edit_output must be 'reconstruction' or 'residual', not {edit_output!r}")
        self.sae = sae
        self.concepts = list(concepts)
        self.score_positions = score_positions
        self.edit_positions = edit_positions
        self.edit_output = edit_output
        self.prompt_folding = prompt_folding
        if edit_strength is not None and not math.isfinite(edit_strength):
            raise ItdError(f"edit_strength must be a finite number, not {edit_strength!r}")
        self.edit_strength = edit_strength
        device = sae.W_dec.device
        n = sae.n_latents
        all_ids = sorted({f for c in self.concepts for f in c.feature_ids})
        for concept in self.concepts:
            if len(concept.feature_ids) != len(concept.strengths):
                raise ItdError(f"concept {concept.name!r}: {len(concept.feature_ids)} features but {len(concept.strengths)} strengths")
            bad = [f for f in concept.feature_ids if not 0 <= f < n]
            if bad:
                raise ItdError(f"concept {concept.name!r}: feature id {bad[0]} out of range for an SAE with {n} latents (0..{n - 1})")
        # Feature id -> column of the small strength table (-1: in no concept).
        self._slot = torch.full((n,), -1, dtype=torch.long, device=device)
        self._slot[torch.tensor(all_ids, dtype=torch.long, device=device)] = torch.arange(len(all_ids), device=device)
        self._strength = torch.ones(len(self.concepts), max(len(all_ids), 1), dtype=torch.float32, device=device)
        self._listed = torch.zeros_like(self._strength, dtype=torch.bool)
        for c, concept in enumerate(self.concepts):
            slots = self._slot[torch.tensor(concept.feature_ids, dtype=torch.long, device=device)]
            self._strength[c, slots] = torch.tensor(concept.strengths, dtype=torch.float32, device=device)
            self._listed[c, slots] = True

    @property
    def fold_prompts(self) -> bool:
        """Whether prompts are also scored in their folded spelling (:meth:`folded`)."""
        return self.prompt_folding != "none"

    @property
    def thresholds(self) -> list[float | None]:
        return [c.threshold for c in self.concepts]

    def threshold_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Every concept's threshold, ``[C]`` float32; an uncalibrated concept is an error that says what to do."""
        missing = [c.name for c in self.concepts if c.threshold is None]
        if missing:
            raise ItdError(f"concept(s) {', '.join(map(repr, missing))} have no threshold yet: calibrate first (itd calibrate)")
        return torch.tensor(self.thresholds, dtype=torch.float32, device=device)

    def _analyse(self, activations: torch.Tensor):
        if activations.ndim != 3 or activations.shape[-1] != self.sae.d_model:
            raise ItdError(f"activations of shape {tuple(activations.shape)} do not fit an SAE of width {self.sae.d_model} (expected [batch, tokens, {self.sae.d_model}])")
        x = activations[:, 1:].to(self.sae.W_enc.dtype)
        batch, positions, d = x.shape
        code = self.sae.encode(x)
        error = (self.sae.decode_sparse(code).float() - activations[:, 1:].float()).reshape(batch * positions, d)
        slots = self._slot[code.indices]
        where = (slots >= 0).nonzero(as_tuple=True)
        token = where[0] * positions + where[1]
        hits = _Hits(
            token=token,
            prompt=where[0],
            union_slot=slots[where],
            value=code.values[where].float(),
            rows=self.sae.W_dec[code.indices[where]].float(),
        )
        return error, hits, (batch, positions, d)

    def _concept_deltas(self, hits: _Hits, coefficients: torch.Tensor):
        """Sum of coefficient-weighted decoder rows per hit token. coefficients ``[C, H]`` -> ``([C, U, d], token ids [U])``."""
        unique_tokens, inverse = torch.unique(hits.token, return_inverse=True)
        deltas = torch.zeros(coefficients.shape[0], len(unique_tokens), hits.rows.shape[1], dtype=torch.float32, device=hits.rows.device)
        deltas.index_add_(1, inverse, coefficients.unsqueeze(-1) * hits.rows.unsqueeze(0))
        return deltas, unique_tokens

    def _concept_changes(self, error: torch.Tensor, squared: torch.Tensor, hits: _Hits) -> tuple[torch.Tensor, torch.Tensor]:
        """How much each concept's deactivation changes each hit token's squared error: ``(token ids [U], [C, U])``.

        Only the (concept, token) pairs where one of the concept's features fires are computed (every other
        change is exactly zero), so a hundred concepts cost about their hits, not a hundred times the tokens."""
        unique_tokens, token_of_hit = torch.unique(hits.token, return_inverse=True)
        concept, hit = self._listed[:, hits.union_slot].nonzero(as_tuple=True)  # the (concept, hit) pairs that matter
        n_tokens = len(unique_tokens)
        pair_keys, pair_of = torch.unique(concept * n_tokens + token_of_hit[hit], return_inverse=True)
        coefficients = (self._strength[concept, hits.union_slot[hit]] - 1.0) * hits.value[hit]
        deltas = torch.zeros(len(pair_keys), hits.rows.shape[1], dtype=torch.float32, device=hits.rows.device)
        deltas = deltas.index_add(0, pair_of, coefficients.unsqueeze(-1) * hits.rows[hit])
        pair_concept, pair_token = pair_keys // n_tokens, pair_keys % n_tokens
        own = unique_tokens[pair_token]
        changes = (error[own] + deltas).square().sum(-1) - squared[own]
        changed = torch.zeros(len(self.concepts), n_tokens, dtype=changes.dtype, device=changes.device)
        changed = changed.index_put((pair_concept, pair_token), changes)
        return unique_tokens, changed

    def _position_weights(self, prompt_mask: torch.Tensor | None, shape) -> torch.Tensor | None:
        """Which positions ``t >= 1`` the score averages over: ``[B*P]`` float32, or None for all of them."""
        batch, positions, _ = shape
        if self.score_positions == "all":
            return None  # the paper's mean: no weighting on the hot path
        if prompt_mask is None:
            raise ItdError(f"score_positions={self.score_positions!r} needs the prompts' token mask (prompt_mask)")
        if tuple(prompt_mask.shape) != (batch, positions + 1):
            raise ItdError(f"prompt_mask of shape {tuple(prompt_mask.shape)} does not fit activations with {batch} prompts x {positions + 1} tokens")
        return prompt_mask[:, 1:].to(device=self.sae.W_dec.device, dtype=torch.float32).reshape(-1)

    def _scores(self, error: torch.Tensor, hits: _Hits, shape, weights: torch.Tensor | None) -> torch.Tensor:
        batch, positions, d = shape
        squared = error.square().sum(-1)  # [B*P]
        tokens = changed = None
        if len(hits.token):
            tokens, changed = self._concept_changes(error, squared, hits)
        if self.score_positions == "peak":
            return self._peak_scores(squared, tokens, changed, shape, weights)
        base = (squared if weights is None else squared * weights).reshape(batch, positions).sum(-1)  # [B]
        totals = base.unsqueeze(0).repeat(len(self.concepts), 1)  # [C, B]
        if tokens is not None:
            totals.index_add_(1, tokens // positions, changed if weights is None else changed * weights[tokens])
        if weights is None:
            return (totals / (positions * d)).T.contiguous()  # [B, C]
        counted = weights.reshape(batch, positions).sum(-1).clamp_min(1.0)  # [B]
        return (totals / (counted * d)).T.contiguous()  # [B, C]

    def _peak_scores(self, squared, tokens, changed, shape, weights) -> torch.Tensor:
        """Mean over each prompt's :data:`PEAK_TOKENS` highest per-token errors among its own tokens. shape: ``-> [B, C]``"""
        batch, positions, d = shape
        per_token = squared.unsqueeze(0).repeat(len(self.concepts), 1)  # [C, B*P]
        if tokens is not None:
            per_token.index_add_(1, tokens, changed)
        per_token = per_token.masked_fill(weights.unsqueeze(0) == 0, float("-inf")).reshape(len(self.concepts), batch, positions)
        top = per_token.topk(min(PEAK_TOKENS, positions), dim=-1).values  # [C, B, m]
        counted = top.isfinite().sum(-1).clamp_min(1)  # prompts shorter than PEAK_TOKENS: their own tokens
        return (top.masked_fill(~top.isfinite(), 0.0).sum(-1) / (counted * d)).T.contiguous()

    @torch.no_grad()
    def scores(self, activations: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The ItD score of each prompt for each concept. shape: ``[B, T, d] -> [B, C]``

        ``prompt_mask`` ``[B, T]`` marks the prompt's own tokens; needed for ``score_positions="prompt"``."""
        return self.differentiable_scores(activations, prompt_mask)

    def differentiable_scores(self, activations: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`scores` with autograd on: differentiable with respect to ``activations`` (the top-k
        choice of latents is not), for gradient-guided attacks on the classifier. shape: ``[B, T, d] -> [B, C]``"""
        error, hits, shape = self._analyse(activations)
        return self._scores(error, hits, shape, self._position_weights(prompt_mask, shape))

    @torch.no_grad()
    def score_prompts(self, adapter: "TextEncoderAdapter", prompts: Sequence[str], batch_size: int = 32, *,
                      name_rules: bool = True) -> torch.Tensor:
        """Tokenize and capture ``prompts`` with ``adapter``, then score them. shape: ``[P, C]`` float32 on CPU

        With ``fold_prompts``, a prompt that :meth:`folded` changes scores the higher of its two spellings, and with
        ``fold_parts`` the name rules (:meth:`name_rules`) override the score as the pipeline hook decides: a prompt
        that holds a concept's full name scores at least its threshold, one that only names someone else scores 0.
        ``name_rules=False`` keeps the classifier's own score: what calibration sets thresholds on, so that the rules
        change no threshold (calibrated on vetoed scores, the thresholds lost the margin that shared names gave them and
        look-alike names triggered: hard-negative FPR 2.2% -> 5% on the red-team table)."""
        prompts = list(prompts)
        scores = self.score_prompts_as_written(adapter, prompts, batch_size)
        if self.fold_prompts:
            folded = [self.folded(p) for p in prompts]
            changed = [i for i, text in enumerate(folded) if text != prompts[i]]
            if changed:
                folded_scores = self.score_prompts_as_written(adapter, [folded[i] for i in changed], batch_size)
                scores[changed] = torch.maximum(scores[changed], folded_scores)
            if name_rules:
                named, vetoed = self.name_rules(folded)
                thresholds = torch.tensor([t if t is not None else float("nan") for t in self.thresholds])
                scores = torch.where(named & ~thresholds.isnan(), torch.maximum(scores, thresholds), scores)
                scores[vetoed] = 0.0
        return scores

    @staticmethod
    def decide(triggered: torch.Tensor, name_rules: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``triggered`` ``[B, C]`` with the name rules (:meth:`name_rules`) applied: a named concept triggers, a vetoed one does not."""
        named, vetoed = (rule.to(triggered.device) for rule in name_rules)
        return (triggered | named) & ~vetoed

    def name_rules(self, folded: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """With ``prompt_folding="fold_parts"``, for each prompt in its folded spelling (:meth:`folded`) and each concept
        (several-word names only): whether it holds the full name, so the concept triggers whatever its score
        (:func:`~itd_core.prompt_folding.names_the_concept`), and whether it only names someone else who shares a word
        of it, so the concept does not trigger (:func:`~itd_core.prompt_folding.names_someone_else`).
        shapes: ``([P, C], [P, C])`` bool on CPU"""
        named = torch.zeros(len(folded), len(self.concepts), dtype=torch.bool)
        vetoed = torch.zeros_like(named)
        if self.prompt_folding == "fold_parts":
            for i, text in enumerate(folded):
                for c, concept in enumerate(self.concepts):
                    named[i, c] = names_the_concept(text, concept.name)
                    vetoed[i, c] = names_someone_else(text, concept.name)
        return named, vetoed

    def folded(self, prompt: str) -> str:
        """The folded spelling of ``prompt``: look-alike characters and near-miss spellings of the concepts' names
        (:func:`~itd_core.prompt_folding.fold_concept_prompt`)."""
        return fold_concept_prompt(prompt, [c.name for c in self.concepts], self.prompt_folding)

    @torch.no_grad()
    def score_prompts_as_written(self, adapter: "TextEncoderAdapter", prompts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """:meth:`score_prompts` without folding. shape: ``[P, C]`` float32 on CPU"""
        rows = [self.scores(activations, batch.prompt_mask).cpu() for batch, activations in adapter.iter_capture(list(prompts), batch_size)]
        return torch.cat(rows) if rows else torch.zeros(0, len(self.concepts))

    @torch.no_grad()
    def apply(self, activations: torch.Tensor, *, gate: bool = True, prompt_mask: torch.Tensor | None = None,
              name_rules: tuple[torch.Tensor, torch.Tensor] | None = None) -> ErasureResult:
        """Score, then edit the prompts that trigger a concept. With ``gate=False`` every prompt is
        edited for every concept (plain SAE steering, the baseline without the classifier). ``name_rules``
        (:meth:`name_rules`, ``[B, C]`` each): concepts that a prompt triggers, and does not trigger, whatever its score."""
        error, hits, shape = self._analyse(activations)
        batch, positions, d = shape
        scores = self._scores(error, hits, shape, self._position_weights(prompt_mask, shape))
        if gate:
            triggered = scores >= self.threshold_tensor(scores.device)
            if name_rules is not None:
                triggered = self.decide(triggered, name_rules)
        else:
            triggered = torch.ones_like(scores, dtype=torch.bool)
        edited = triggered.any(dim=1)
        if not edited.any():
            return ErasureResult(activations, scores, triggered, edited)

        # The change at each hit: the union delta of the triggered concepts.
        # A feature listed by several triggered concepts takes the strength of the first one (config order).
        tokens = torch.zeros(0, dtype=torch.long, device=edited.device)
        deltas = torch.zeros(0, d, dtype=torch.float32, device=edited.device)
        if len(hits.token):
            applies = triggered.T[:, hits.prompt] & self._listed[:, hits.union_slot]  # [C, H]
            first = applies.float().argmax(dim=0)  # first applicable concept per hit
            applied = applies.any(0)
            own = self._strength[first, hits.union_slot] if self.edit_strength is None else torch.full_like(hits.value, self.edit_strength)
            strength = torch.where(applied, own, torch.ones_like(hits.value))
            deltas, tokens = self._concept_deltas(hits, ((strength - 1.0) * hits.value).unsqueeze(0))
            deltas = deltas[0]
        original = activations[:, 1:].reshape(batch * positions, d)
        if self.edit_output == "residual":
            # Only the tokens where an applied feature fires change; every other value is the layer's own.
            if len(tokens):
                changed = torch.isin(tokens, hits.token[applied])
                tokens, deltas = tokens[changed], deltas[changed]
            tail = original.clone()
            tail[tokens] = (original[tokens].float() + deltas).to(activations.dtype)
        else:
            # Edited tokens = reconstruction + the delta; positions to replace: every ItD position of an edited
            # prompt, or only those where a triggered concept's feature fires.
            reconstruction = error + original.float()
            replaced = edited.repeat_interleave(positions) if self.edit_positions == "all" else torch.zeros(batch * positions, dtype=torch.bool, device=edited.device)
            if len(tokens):
                reconstruction.index_add_(0, tokens, deltas)
                if self.edit_positions == "concept":
                    replaced[hits.token[applied]] = True
            tail = torch.where(replaced[:, None], reconstruction.to(activations.dtype), original)
        output = activations.clone()
        output[:, 1:] = tail.reshape(batch, positions, d)
        return ErasureResult(output, scores, triggered, edited)
