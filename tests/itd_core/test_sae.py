"""The TopK SAE module: the blocked encode of a large dictionary equals one top-k over the whole row."""

import pytest
import torch

from itd_core import sae as sae_module
from itd_core.sae import SAEConfig, TopKSAE


@pytest.mark.parametrize("block", [64, 100, 333])
def test_blocked_encode_takes_the_same_latents_and_values(monkeypatch, block):
    model = TopKSAE.random(SAEConfig(d_model=16, n_latents=1000, k=12), seed=5)
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(2))
    whole = torch.topk(model.encode_pre_act(x), model.k, dim=-1)  # one matrix, one top-k: the definition
    monkeypatch.setattr(sae_module, "ENCODE_BLOCK", block)
    code = model.encode(x)
    order = code.values.argsort(dim=-1, descending=True)
    assert torch.equal(code.indices.gather(-1, order).sort(-1).values, whole.indices.sort(-1).values)
    torch.testing.assert_close(code.values.gather(-1, order), torch.relu(whole.values), rtol=1e-6, atol=1e-6)


def test_blocked_encode_passes_gradients_to_the_activations(monkeypatch):
    """The attack's surrogate and differentiable_scores need d(values)/d(x) through the blocks."""
    monkeypatch.setattr(sae_module, "ENCODE_BLOCK", 100)
    model = TopKSAE.random(SAEConfig(d_model=16, n_latents=1000, k=12), seed=5)
    x = torch.randn(2, 5, 16, requires_grad=True)
    model.encode(x).values.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
