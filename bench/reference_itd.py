"""The reference approach to ItD erasure, for comparison: a dense decode over all latents and
a Python loop over prompts and concepts (as the paper's scripts do), with the same score
definition as :mod:`itd_core.deactivation`, so decisions can be compared one to one."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from itd_core.deactivation import ConceptFeatures
from itd_core.sae import TopKSAE


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
