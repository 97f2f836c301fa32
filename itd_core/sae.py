"""The TopK sparse autoencoder: a small ``nn.Module`` plus its config.

Maths (shapes: ``x`` is ``[..., d_model]``, ``n = n_latents``)::

    pre   = W_enc (x - b_pre) + b_lat                 # [..., n]
    z     = relu(topk_k(pre))                         # k non-zeros per token
    x_hat = z W_dec + b_pre                           # [..., d_model]

``W_dec`` is stored feature-major (``[n, d_model]``, one row per feature), so a
sparse decode only gathers the ``k`` active rows (``F.embedding_bag``) instead of
multiplying by the whole dictionary. File formats live in :mod:`itd_core.sae_formats`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

ENCODE_BLOCK = 32768  # latents per block of a large SAE's encode (see TopKSAE.encode)
# Latents per token that the bf16 screen passes on to the exact fp32 step (TopKSAE.screen_in_bf16), split evenly over
# the encode's blocks (32 per block at 524k). Measured at 524k on a random-weight CLIP tower's 608 tokens: 512 proved
# every token (1.4-1.6 s, against 3.3-3.7 s for the plain fp32 encode), 384 left 4 to the plain encode, 256 left 457.
SCREEN_CANDIDATES = 512
_BF16_ROUNDOFF = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
_SCREEN_CHUNK = 16  # tokens per gather of candidate encoder rows: [16, 512, 768] fp32 is 25 MB; larger chunks ran slower


class SAEConfig(BaseModel):
    """Architecture of a TopK SAE plus where it was trained (provenance only)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    d_model: int = Field(gt=0, description="width of the hooked activations")
    n_latents: int = Field(gt=0, description="dictionary size")
    k: int = Field(gt=0, description="active latents per token")
    auxk: int | None = Field(default=256, description="dead latents used by the AuxK loss")
    dead_steps_threshold: int = Field(default=1000, ge=0, description="steps without firing before a latent counts as dead")
    hook_layer: str | None = Field(default=None, description="module path of the hooked text-encoder layer")
    model_id: str | None = Field(default=None, description="model the activations came from")

    @model_validator(mode="after")
    def _k_fits(self) -> "SAEConfig":
        if self.k > self.n_latents:
            raise ValueError(f"k={self.k} exceeds n_latents={self.n_latents}")
        return self


class SparseCode(NamedTuple):
    """The k active latents of each token. shape: values, indices ``[..., k]``."""

    values: torch.Tensor
    indices: torch.Tensor


class _Bf16Screen(NamedTuple):
    """A bf16 copy of the encoder and the weight bounds the screen's rounding bound needs (TopKSAE.screen_in_bf16)."""

    W_enc: torch.Tensor
    b_lat: torch.Tensor
    max_row_norm: float
    max_bias: float


class TopKSAE(nn.Module):
    """TopK SAE (Gao et al. 2024) as used by Interpret-then-Deactivate."""

    def __init__(self, config: SAEConfig, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = config
        n, d = config.n_latents, config.d_model
        factory = {"device": device, "dtype": dtype}
        self.W_enc = nn.Parameter(torch.empty(n, d, **factory))
        self.b_lat = nn.Parameter(torch.zeros(n, **factory))
        self.W_dec = nn.Parameter(torch.empty(n, d, **factory))
        self.b_pre = nn.Parameter(torch.zeros(d, **factory))
        # Step of each latent's last activation during training (ItD checkpoints carry it).
        self.register_buffer("stats_last_nonzero", torch.zeros(n, dtype=torch.long, device=device))
        # sha256 of the weights, set by the loader (see sae_formats.weights_fingerprint).
        self.fingerprint: str | None = None
        self._screen: _Bf16Screen | None = None

    @classmethod
    def random(cls, config: SAEConfig, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> "TopKSAE":
        """Random init as in the TopK paper: unit-norm decoder rows, encoder = decoder."""
        sae = cls(config, dtype=torch.float32)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            sae.W_dec.copy_(torch.randn(config.n_latents, config.d_model, generator=generator))
            sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))
            sae.W_enc.copy_(sae.W_dec)
        return sae.to(dtype)

    def copy_as(self, dtype: torch.dtype) -> "TopKSAE":
        """A copy in ``dtype`` on the same device, with the same fingerprint (the same stored weights); ``self`` is untouched."""
        copy = TopKSAE(self.config, device=self.W_dec.device, dtype=dtype)
        copy.load_state_dict(self.state_dict())
        copy.fingerprint = self.fingerprint
        return copy

    @property
    def d_model(self) -> int:
        return self.config.d_model

    @property
    def n_latents(self) -> int:
        return self.config.n_latents

    @property
    def k(self) -> int:
        return self.config.k

    @torch.no_grad()
    def screen_in_bf16(self, enabled: bool = True) -> "TopKSAE":
        """Encode through a bf16 screen with an exact fp32 answer: a bf16 copy of the encoder (a quarter of the SAE's
        fp32 memory) picks :data:`SCREEN_CANDIDATES` latents per token, their pre-activations are computed again in
        fp32 from the fp32 weights, and the top k of those is the answer wherever a bound on bf16's rounding proves that
        no latent outside the candidates can beat the k-th (every other token takes the plain fp32 encode). So the
        latents are the fp32 encode's and the values fp32 dot products, at close to bf16's speed for a large SAE (README,
        Benchmarks; at 8,192 latents the gather costs more than it saves, and plain fp32 is faster).
        Returns ``self``; a change of the weights or device afterwards needs another call; ``enabled=False`` drops it."""
        if not enabled:
            self._screen = None
            return self
        if self.W_enc.dtype != torch.float32:
            raise ValueError(f"the bf16 screen serves an fp32 SAE; this one is {self.W_enc.dtype}")
        self._screen = _Bf16Screen(self.W_enc.to(torch.bfloat16), self.b_lat.to(torch.bfloat16),
                                   float(self.W_enc.norm(dim=1).max()), float(self.b_lat.abs().max()))
        return self

    def encode_pre_act(self, x: torch.Tensor) -> torch.Tensor:
        """shape: ``[..., d_model] -> [..., n_latents]``"""
        return F.linear(x.to(self.W_enc.dtype) - self.b_pre, self.W_enc, self.b_lat)

    def encode(self, x: torch.Tensor) -> SparseCode:
        """shape: ``[..., d_model] -> SparseCode([..., k], [..., k])``

        Above :data:`ENCODE_BLOCK` latents, the pre-activations are made one block of latents at a time, each block
        keeping its own top k, and the top k of those candidates is the answer: the same latents and values as one
        top-k over the whole row (each value is the same dot product), without a ``[tokens, n_latents]`` matrix in
        memory (1.2 GB for 77 tokens x 8 prompts at 524k latents). Measured at 524k latents on 2 CPU cores: 3.6-3.9 s
        instead of 4.9 s (README, Benchmarks). After :meth:`screen_in_bf16`, the screened encode (same latents)."""
        if self._screen is not None and self.W_enc.dtype == torch.float32 and self.n_latents > SCREEN_CANDIDATES:
            return self._encode_screened(x)
        if self.n_latents <= 2 * ENCODE_BLOCK:
            top = torch.topk(self.encode_pre_act(x), self.k, dim=-1, sorted=False)
            return SparseCode(torch.relu(top.values), top.indices)
        return self._encode_blocks(x)

    def _encode_blocks(self, x: torch.Tensor) -> SparseCode:
        centred = x.to(self.W_enc.dtype) - self.b_pre
        values, indices = [], []
        for start in range(0, self.n_latents, ENCODE_BLOCK):
            block = F.linear(centred, self.W_enc[start:start + ENCODE_BLOCK], self.b_lat[start:start + ENCODE_BLOCK])
            top = torch.topk(block, min(self.k, block.shape[-1]), dim=-1, sorted=False)
            values.append(top.values)
            indices.append(top.indices + start)
        top = torch.topk(torch.cat(values, dim=-1), self.k, dim=-1, sorted=False)
        return SparseCode(torch.relu(top.values), torch.cat(indices, dim=-1).gather(-1, top.indices))

    def _encode_screened(self, x: torch.Tensor) -> SparseCode:
        screen = self._screen
        lead = x.shape[:-1]
        centred = (x.to(torch.float32) - self.b_pre).reshape(-1, self.d_model)
        block_size = ENCODE_BLOCK if self.n_latents > 2 * ENCODE_BLOCK else self.n_latents
        per_block = max(16, math.ceil(SCREEN_CANDIDATES / math.ceil(self.n_latents / block_size)))
        rough = centred.to(torch.bfloat16)
        indices, floors = [], []
        for start in range(0, self.n_latents, block_size):
            block = F.linear(rough, screen.W_enc[start:start + block_size], screen.b_lat[start:start + block_size])
            if per_block >= block.shape[-1]:  # the whole block is a candidate
                indices.append(torch.arange(start, start + block.shape[-1], device=block.device).expand(len(block), -1))
                continue
            top = torch.topk(block, per_block, dim=-1, sorted=False)
            indices.append(top.indices + start)
            floors.append(top.values.min(dim=-1).values.float())
        chosen = torch.cat(indices, dim=-1)  # [N, candidates]
        exact = torch.cat([torch.einsum("nd,nmd->nm", centred[i:i + _SCREEN_CHUNK], self.W_enc[chosen[i:i + _SCREEN_CHUNK]])
                           for i in range(0, len(chosen), _SCREEN_CHUNK)]) + self.b_lat[chosen]
        best = torch.topk(exact, self.k, dim=-1, sorted=False)
        values, indices = best.values, chosen.gather(-1, best.indices)
        if floors:
            # Every latent outside the candidates has a bf16 pre-activation <= floor (the highest of the blocks' last
            # kept values). Its true value exceeds its bf16 one by at most: the rounding of the inputs and weights
            # (2u + u^2 of sum |x_i w_i| <= |x| |w|), fp32 accumulation over d terms, the bias's rounding and the
            # result's (u of each). Where the k-th exact value is not above that, the token takes the plain encode.
            floor = torch.stack(floors).max(dim=0).values
            slack = ((2 * _BF16_ROUNDOFF + _BF16_ROUNDOFF**2 + self.d_model * 2.0**-24) * centred.norm(dim=-1) * screen.max_row_norm
                     + _BF16_ROUNDOFF * (screen.max_bias + floor.abs()))
            unproven = (values.min(dim=-1).values <= floor + slack).nonzero(as_tuple=True)[0]
            if len(unproven):
                plain = self._encode_blocks(x.reshape(-1, self.d_model)[unproven])
                values, indices = values.clone(), indices.clone()
                values[unproven], indices[unproven] = plain.values.to(values.dtype), plain.indices
        return SparseCode(torch.relu(values).reshape(*lead, self.k), indices.reshape(*lead, self.k))

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        """shape: ``[..., d_model] -> [..., n_latents]`` with k non-zeros per row."""
        code = self.encode(x)
        return to_dense(code, self.n_latents)

    def decode_sparse(self, code: SparseCode) -> torch.Tensor:
        """Gather-and-sum of the active decoder rows. shape: ``[..., k] -> [..., d_model]``"""
        lead = code.indices.shape[:-1]
        flat = F.embedding_bag(
            code.indices.reshape(-1, code.indices.shape[-1]),
            self.W_dec,
            per_sample_weights=code.values.reshape(-1, code.values.shape[-1]).to(self.W_dec.dtype),
            mode="sum",
        )
        return flat.reshape(*lead, self.d_model) + self.b_pre

    def decode_dense(self, z: torch.Tensor) -> torch.Tensor:
        """shape: ``[..., n_latents] -> [..., d_model]``"""
        return z.to(self.W_dec.dtype) @ self.W_dec + self.b_pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction. shape: ``[..., d_model] -> [..., d_model]``"""
        return self.decode_sparse(self.encode(x))


def to_dense(code: SparseCode, n_latents: int) -> torch.Tensor:
    """Scatter a sparse code into ``[..., n_latents]``."""
    dense = torch.zeros(*code.values.shape[:-1], n_latents, dtype=code.values.dtype, device=code.values.device)
    return dense.scatter_(-1, code.indices, code.values)
