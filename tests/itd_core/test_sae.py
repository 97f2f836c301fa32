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


def _same_code(code, reference) -> None:
    assert torch.equal(code.indices.sort(-1).values, reference.indices.sort(-1).values)
    torch.testing.assert_close(code.values.sort(-1).values, reference.values.sort(-1).values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blocks", [False, True])
def test_the_bf16_screen_gives_the_fp32_encode(monkeypatch, blocks):
    """Screened: bf16 picks the candidates, fp32 values decide; proven tokens never need the plain encode here."""
    if blocks:
        monkeypatch.setattr(sae_module, "ENCODE_BLOCK", 700)
    model = TopKSAE.random(SAEConfig(d_model=32, n_latents=5000, k=16), seed=4)
    x = torch.randn(4, 9, 32, generator=torch.Generator().manual_seed(3)) * 6
    plain = model.encode(x)
    model.screen_in_bf16()
    assert model.W_enc.dtype == torch.float32 and model._screen.W_enc.dtype == torch.bfloat16
    fallback = []
    plain_encode = model._encode_blocks
    model._encode_blocks = lambda rows: (fallback.append(len(rows)), plain_encode(rows))[1]  # counts, still runs it
    _same_code(model.encode(x), plain)
    assert fallback == [], "every token is proven: the screen's margin holds on random weights"
    assert model.screen_in_bf16(False)._screen is None
    _same_code(model.encode(x), plain)


def test_tokens_the_screen_cannot_prove_take_the_plain_encode():
    """Near-identical encoder rows put thousands of latents within bf16's rounding of the k-th: no proof, so those
    tokens are encoded in plain fp32 and the answer is still the fp32 one."""
    model = TopKSAE.random(SAEConfig(d_model=32, n_latents=2000, k=16), seed=4)
    with torch.no_grad():
        model.W_enc.copy_(model.W_enc[:1] + 1e-4 * model.W_enc)
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(3))
    plain = model.encode(x)
    model.screen_in_bf16()
    fallback = []
    plain_encode = model._encode_blocks
    model._encode_blocks = lambda rows: (fallback.append(len(rows)), plain_encode(rows))[1]
    _same_code(model.encode(x), plain)
    assert fallback == [5]
    with pytest.raises(ValueError, match="fp32 SAE"):
        model.copy_as(torch.bfloat16).screen_in_bf16()
