"""References for ItD erasure, with the same score definition as :mod:`itd_core.deactivation`, so that
decisions can be compared one to one:

* :func:`public_erasure`: the approach of the paper's public code, the speed baseline of
  ``bench/bench_erasure.py``: one batched encode into a dense top-k code, one dense decode per
  concept for the whole batch, and a Python loop choosing the original or the edited output per prompt;
* :func:`reference_erasure`: a plain dense reference, prompt by prompt and concept by concept, that the
  tests check the engine against (it encodes each prompt separately and decodes twice, so it is slower
  than the public code and is not a speed baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from itd_core.deactivation import ConceptFeatures
from itd_core.sae import SparseCode, TopKSAE, to_dense


@torch.no_grad()
def reference_erasure(sae: TopKSAE, activations: torch.Tensor, concepts: Sequence[ConceptFeatures]):
    """Returns (edited activations, scores [B, C], triggered [B, C])."""
    output = activations.clone()
    scores = torch.zeros(activations.shape[0], len(concepts))
    triggered = torch.zeros(activations.shape[0], len(concepts), dtype=torch.bool)
    for b in range(activations.shape[0]):
        x = activations[b, 1:]
        z = sae.encode_dense(x.to(sae.W_enc.dtype))
        union = torch.ones(sae.n_latents, dtype=z.dtype)
        for c, concept in enumerate(concepts):
            multiplier = torch.ones(sae.n_latents, dtype=z.dtype)
            multiplier[list(concept.feature_ids)] = torch.tensor(concept.strengths, dtype=z.dtype)
            reconstruction = sae.decode_dense(z * multiplier)
            scores[b, c] = (reconstruction.float() - x.float()).square().mean()
            triggered[b, c] = concept.threshold is not None and scores[b, c] >= concept.threshold
            if triggered[b, c]:
                # first triggered concept wins for a shared feature
                untouched = union == 1
                ids = torch.tensor(concept.feature_ids)
                keep = untouched[ids]
                union[ids[keep]] = torch.tensor(concept.strengths, dtype=z.dtype)[keep]
        if triggered[b].any():
            output[b, 1:] = sae.decode_dense(z * union).to(activations.dtype)
    return output, scores, triggered


@torch.no_grad()
def public_erasure(sae: TopKSAE, activations: torch.Tensor, concepts: Sequence[ConceptFeatures]):
    """The paper's public code path. Returns (edited activations, scores [B, C], triggered [B, C])."""
    x = activations[:, 1:]
    # As the public code (OpenAI sparse_autoencoder's TopK): the whole pre-activation matrix, one top-k per row,
    # scattered into a dense code [B, T-1, n] with k non-zeros per row (not the engine's blocked encode).
    top = torch.topk(sae.encode_pre_act(x.to(sae.W_enc.dtype)), sae.k, dim=-1)
    z = to_dense(SparseCode(torch.relu(top.values), top.indices), sae.n_latents)
    reconstructions, scores = [], torch.zeros(activations.shape[0], len(concepts))
    for c, concept in enumerate(concepts):
        multiplier = torch.ones(sae.n_latents, dtype=z.dtype)
        multiplier[list(concept.feature_ids)] = torch.tensor(concept.strengths, dtype=z.dtype)
        reconstructions.append(sae.decode_dense(z * multiplier))  # one dense decode for the batch
        scores[:, c] = (reconstructions[c].float() - x.float()).square().mean(dim=(1, 2))
    triggered = scores >= torch.tensor([c.threshold if c.threshold is not None else float("inf") for c in concepts])
    output = activations.clone()
    for b in range(activations.shape[0]):  # original or edited, prompt by prompt
        hits = triggered[b].nonzero().flatten().tolist()
        if len(hits) == 1:
            output[b, 1:] = reconstructions[hits[0]][b].to(activations.dtype)
        elif hits:  # several concepts: one decode with their union (the first listed wins a shared feature)
            union = torch.ones(sae.n_latents, dtype=z.dtype)
            for c in reversed(hits):
                union[list(concepts[c].feature_ids)] = torch.tensor(concepts[c].strengths, dtype=z.dtype)
            output[b, 1:] = sae.decode_dense(z[b] * union).to(activations.dtype)
    return output, scores, triggered
