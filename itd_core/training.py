"""TopK SAE training as in Gao et al. 2024 ("Scaling and evaluating sparse autoencoders", the
``openai/sparse_autoencoder`` code), data-parallel through Hugging Face ``accelerate``.

Two layers (SAELens's split):

- :class:`SAETrainer` takes any iterable of activation batches (``[tokens, d_model]``) and knows
  nothing about the text encoder.
- :func:`train_sae_from_prompts` is the runner: prompts -> activation cache -> init from data ->
  trainer -> checkpoints / resume -> ``metrics.json``.

The recipe (``x``: a batch ``[B, d]``; ``x_hat``: its reconstruction; see :mod:`itd_core.sae`):

- Loss = normalized MSE + ``auxk_coef`` (1/32) x AuxK loss. Normalized MSE is
  ``mean((x_hat - x)^2) / mean((x - mean(x))^2)`` with the denominator a constant measured once on
  the init sample (the reference's ``mse_scale``).
- AuxK: latents that have not fired (value > 1e-3) for more than ``dead_steps_threshold`` steps are
  dead (``sae.stats_last_nonzero`` counts steps since each latent last fired; under data parallelism
  "fired" is OR-ed across processes, so every process holds the same counter). The top
  ``min(auxk, n_dead)`` dead latents by pre-activation reconstruct the main residual
  ``x - x_hat`` (detached); that reconstruction's MSE is normalized by the residual's variance.
  One deliberate difference: the reference adds ``b_pre`` to both the AuxK reconstruction and its
  target (they cancel in value but give ``b_pre`` a spurious gradient); here neither has it, and
  with no dead latents the AuxK term is exactly 0.
- Decoder rows have unit norm: before each Adam step the gradient component parallel to each row is
  removed (``g -= (g . w) w``), after the step the rows are renormalised, so every forward sees unit
  rows (the reference renormalises just before the projection instead, one step later).
- Init: ``b_pre`` = geometric median of a sample (Weiszfeld); ``W_enc`` = ``W_dec`` (both
  ``[n, d]`` here, so no transpose), then scaled so that random unit inputs reconstruct with unit
  norm on average (as the reference code does).
- Adam, betas (0.9, 0.999), eps 6.25e-10 (the reference's value), linear warm-up of the learning
  rate over ``warmup_steps``, optional gradient-norm clipping.

The encoder's backward is sparse: only the ``k`` (+ AuxK) selected latents of each token get a
gradient, so it costs ``B*k*d`` instead of a second dense ``B*n*d`` matmul (same values; a custom
autograd function with ``torch.sparse.mm``).

Determinism: with the same seed and data, a CPU run gives bit-identical weights, and a run resumed
from a checkpoint continues bit-identically (same data order: the batch stream is a function of the
seed and the step).

Data-parallel (several GPUs, nodes, or CPU processes with gloo), flags on the command line, no
``accelerate config`` file::

    # 8 GPUs on one machine
    accelerate launch --multi_gpu --num_processes 8 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no train_script.py
    # 2 CPU processes (gloo); accelerate's own `--cpu` launcher needs MPI for several processes,
    # its torchrun-based launcher does not:
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no train_script.py
    # the same with torchrun directly
    ACCELERATE_USE_CPU=true python -m torch.distributed.run --nproc_per_node 2 train_script.py

where ``train_script.py`` calls :func:`train_sae_from_prompts` (every process runs the same
script; with no GPU present ``ACCELERATE_USE_CPU`` may be left out). Each process encodes its slice of the prompts into the shared cache folder, then takes its
slice of every global batch (``batch_size`` is the global number of tokens per step); DDP averages
the gradients; the unit-norm and projection steps act on the unwrapped module; the main process
writes checkpoints, the final SAE and the metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from itd_core.activation_cache import build_activation_cache
from itd_core.atomic import atomic_write_json
from itd_core.defaults import LEARNING_RATE
from itd_core.distributed import use_cpu_processes
from itd_core.encoders import TextEncoderAdapter
from itd_core.errors import ItdError
from itd_core.sae import SAEConfig, SparseCode, TopKSAE

FIRE_THRESHOLD = 1e-3  # a latent "fires" when its top-k value exceeds this (as in the reference)
STATE_FORMAT = "itd-sae-trainer-state"
STATE_VERSION = 1
_STEP_PREFIX = "step_"

# Fields that may change between a run and its resumption (they do not change the weights).
_RESUMABLE_CHANGES = {"steps", "total_tokens", "checkpoint_every", "keep_checkpoints", "log_every"}


class TrainingConfig(BaseModel):
    """Hyper-parameters of one SAE training run. Token counts are global (all processes together)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_latents: int = Field(gt=0, description="dictionary size")
    k: int = Field(gt=0, description="active latents per token")
    auxk: int | None = Field(default=256, gt=0, description="dead latents used by the AuxK loss (None: no AuxK)")
    auxk_coef: float = Field(default=1 / 32, ge=0)
    dead_steps_threshold: int = Field(default=1000, ge=0, description="steps without firing before a latent is dead")
    lr: float = Field(default=LEARNING_RATE, gt=0)
    warmup_steps: int = Field(default=100, ge=0, description="linear learning-rate warm-up")
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(default=6.25e-10, gt=0, description="the reference code's value")
    clip_grad: float | None = Field(default=None, gt=0, description="max global gradient norm (None: no clipping)")
    batch_size: int = Field(default=4096, gt=0, description="tokens per optimizer step, over all processes")
    total_tokens: int | None = Field(default=None, gt=0, description="train on this many tokens (or give steps)")
    steps: int | None = Field(default=None, gt=0, description="optimizer steps (default: one pass over the cache)")
    seed: int = 0
    checkpoint_every: int | None = Field(default=1000, gt=0, description="steps between checkpoints (None: final only)")
    keep_checkpoints: int | None = Field(default=3, gt=0, description="newest checkpoints kept (None: all)")
    log_every: int = Field(default=10, gt=0, description="steps between progress/log updates")
    eval_fraction: float = Field(default=0.05, ge=0, lt=1, description="share of prompts held out for the metrics")
    eval_max_tokens: int = Field(default=65536, gt=0)
    init_sample_tokens: int = Field(default=32768, gt=0, description="sample for the geometric median and the MSE scale")
    shuffle_buffer_tokens: int = Field(default=2**20, gt=0, description="tokens shuffled together when reading the cache")
    cache_batch_size: int = Field(default=32, gt=0, description="prompts per text-encoder forward when caching")
    cache_shard_tokens: int = Field(default=2**16, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "TrainingConfig":
        if self.k > self.n_latents:
            raise ValueError(f"k={self.k} exceeds n_latents={self.n_latents}")
        if self.steps is not None and self.total_tokens is not None:
            raise ValueError("give steps or total_tokens, not both")
        return self

    def sae_config(self, d_model: int, *, hook_layer: str | None = None, model_id: str | None = None) -> SAEConfig:
        return SAEConfig(d_model=d_model, n_latents=self.n_latents, k=self.k, auxk=self.auxk,
                         dead_steps_threshold=self.dead_steps_threshold, hook_layer=hook_layer, model_id=model_id)

    def num_steps(self, tokens_per_epoch: int | None = None) -> int:
        if self.steps is not None:
            return self.steps
        if self.total_tokens is not None:
            return max(1, self.total_tokens // self.batch_size)
        if tokens_per_epoch is None:
            raise ValueError("set steps or total_tokens")
        return max(1, tokens_per_epoch // self.batch_size)


# ------------------------------------------------------------------------------------------------
# initialisation


@torch.no_grad()
def geometric_median(points: torch.Tensor, *, max_iter: int = 100, tol: float = 1e-10, eps: float = 1e-12) -> torch.Tensor:
    """Point minimising the sum of Euclidean distances to ``points``, by Weiszfeld iterations
    (in float64; distances are floored at ``eps`` so a median on a data point does not divide by 0).
    shape: ``[N, d] -> [d]``"""
    if points.dim() != 2 or points.shape[0] == 0:
        raise ValueError(f"geometric_median needs a non-empty [N, d] tensor, got shape {list(points.shape)}")
    pts = points.detach().to(torch.float64)
    median = pts.mean(dim=0)
    objective = (pts - median).norm(dim=1).sum()
    for _ in range(max_iter):
        weights = 1.0 / (pts - median).norm(dim=1).clamp_min(eps)
        median = (weights[:, None] * pts).sum(dim=0) / weights.sum()
        new_objective = (pts - median).norm(dim=1).sum()
        if objective - new_objective <= tol * objective:
            break
        objective = new_objective
    return median.to(points.dtype)


@torch.no_grad()
def init_from_data_(sae: TopKSAE, sample: torch.Tensor, *, seed: int = 0) -> None:
    """``b_pre`` <- geometric median of ``sample``; ``W_enc`` <- ``W_dec``, rescaled so that random
    unit-norm inputs (around ``b_pre``) reconstruct with unit norm on average. shape: sample ``[N, d]``"""
    if sample.shape[-1] != sae.d_model:
        raise ItdError(f"init sample has width {sample.shape[-1]} but the SAE's d_model is {sae.d_model}")
    sae.b_pre.copy_(geometric_median(sample.float()).to(sae.b_pre))
    sae.W_enc.copy_(sae.W_dec)
    # Not plain `seed`: TopKSAE.random(seed) drew W_dec from that stream, and probes equal to decoder
    # rows would reconstruct too well and skew the scale.
    generator = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(f"init-probe:{seed}".encode()).digest()[:8], "little") >> 1)
    probe = torch.randn(256, sae.d_model, generator=generator, dtype=torch.float32).to(sae.b_pre)
    probe = probe / probe.norm(dim=-1, keepdim=True) + sae.b_pre
    scale = (sae(probe) - sae.b_pre).norm(dim=-1).mean()
    if scale > 0:
        sae.W_enc.div_(scale)


def mse_scale_of(sample: torch.Tensor) -> float:
    """1 / (mean squared deviation from the mean) of a sample: the normalized-MSE constant."""
    sample = sample.to(torch.float64)
    variance = (sample - sample.mean(dim=0)).pow(2).mean().item()
    if not variance > 0:
        raise ItdError("the activation sample has zero variance; cannot normalise the loss")
    return 1.0 / variance


# ------------------------------------------------------------------------------------------------
# the training forward


class _SparsePreAct(torch.autograd.Function):
    """Pick ``pre[b, idx[b, j]]`` of already computed pre-activations ``pre = xc W_enc^T + b_lat``,
    with a backward that only touches the picked latents. shapes: xc ``[B, d]``, W_enc ``[n, d]``,
    idx ``[B, K]`` -> ``[B, K]``"""

    @staticmethod
    def forward(ctx, xc, W_enc, b_lat, pre, idx):
        ctx.save_for_backward(xc, W_enc, idx)
        ctx.n_latents = b_lat.shape[0]
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, grad):
        xc, W_enc, idx = ctx.saved_tensors
        batch, picked = idx.shape
        grad = grad.contiguous()
        grad_xc = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_xc = F.embedding_bag(idx, W_enc, per_sample_weights=grad, mode="sum")
        flat_idx, flat_grad = idx.reshape(-1), grad.reshape(-1)
        if ctx.needs_input_grad[1]:
            rows = torch.arange(batch, device=idx.device).repeat_interleave(picked)
            sparse = torch.sparse_coo_tensor(torch.stack([flat_idx, rows]), flat_grad, (ctx.n_latents, batch), check_invariants=False)
            grad_W = torch.sparse.mm(sparse, xc)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(ctx.n_latents, dtype=grad.dtype, device=grad.device).index_add_(0, flat_idx, flat_grad)
        return grad_xc, grad_W, grad_b, None, None


class TrainOutput(NamedTuple):
    """shape: recons ``[B, d]``; aux_recons ``[B, d]`` or None (no dead latents); l0 a scalar."""

    recons: torch.Tensor
    aux_recons: torch.Tensor | None
    l0: torch.Tensor


class TopKTrainingModule(nn.Module):
    """The SAE's training forward as one module, so DDP sees a single ``forward``: TopK encode,
    dead-latent bookkeeping (``stats_last_nonzero``, synchronised across processes), sparse decode,
    and the AuxK reconstruction from the top dead latents."""

    def __init__(self, sae: TopKSAE):
        super().__init__()
        self.sae = sae

    def forward(self, x: torch.Tensor) -> TrainOutput:
        sae = self.sae
        cfg = sae.config
        xc = x.to(sae.W_enc.dtype) - sae.b_pre
        with torch.no_grad():
            pre = F.linear(xc, sae.W_enc, sae.b_lat)  # [B, n]
            top_vals, top_idx = pre.topk(cfg.k, dim=-1, sorted=False)
            fired = torch.zeros(cfg.n_latents, dtype=torch.int32, device=x.device)
            fired[top_idx[top_vals > FIRE_THRESHOLD]] = 1
            if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
                torch.distributed.all_reduce(fired, op=torch.distributed.ReduceOp.MAX)
            stats = sae.stats_last_nonzero
            stats.mul_(1 - fired.to(stats.dtype)).add_(1)
            n_aux = n_dead = 0
            if cfg.auxk:
                dead = stats > cfg.dead_steps_threshold
                n_dead = int(dead.sum())
                n_aux = min(cfg.auxk, n_dead)
            idx = top_idx
            if n_aux:
                if 2 * n_dead <= cfg.n_latents:  # the usual case: rank only the dead columns
                    dead_idx = dead.nonzero().squeeze(1)
                    aux_idx = dead_idx[pre.index_select(1, dead_idx).topk(n_aux, dim=-1, sorted=False).indices]
                else:
                    aux_idx = pre.masked_fill(~dead, float("-inf")).topk(n_aux, dim=-1, sorted=False).indices
                idx = torch.cat([top_idx, aux_idx], dim=-1)
        values = torch.relu(_SparsePreAct.apply(xc, sae.W_enc, sae.b_lat, pre, idx))
        z, z_aux = values[:, :cfg.k], values[:, cfg.k:]
        recons = sae.decode_sparse(SparseCode(z, top_idx))
        aux_recons = F.embedding_bag(idx[:, cfg.k:], sae.W_dec, per_sample_weights=z_aux, mode="sum") if n_aux else None
        return TrainOutput(recons, aux_recons, (z.detach() > 0).sum(dim=-1).float().mean())


# ------------------------------------------------------------------------------------------------
# decoder geometry


@torch.no_grad()
def project_decoder_grad_(sae: TopKSAE) -> None:
    """Remove from each decoder row's gradient its component along the (unit) row."""
    grad = sae.W_dec.grad
    if grad is not None:
        grad.sub_((grad * sae.W_dec).sum(dim=1, keepdim=True) * sae.W_dec)


@torch.no_grad()
def normalize_decoder_(sae: TopKSAE) -> None:
    sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


# ------------------------------------------------------------------------------------------------
# the trainer


def _default_accelerator():
    # DDP's default buffer broadcast re-sends stats_last_nonzero each step; harmless, since the
    # forward already keeps it identical on every process (and small next to the gradients).
    from accelerate import Accelerator

    return Accelerator(cpu=use_cpu_processes(), mixed_precision="no")


class SAETrainer:
    """Optimises a :class:`TopKSAE` on a stream of activation batches (it knows nothing about models).

    Each batch is this process's share of one global batch: ``[config.batch_size // world_size, d]``.
    ``mse_scale``: 1 / variance of the data (:func:`mse_scale_of`), the normalized-MSE constant.
    """

    def __init__(self, sae: TopKSAE, config: TrainingConfig, *, mse_scale: float, accelerator=None):
        if sae.n_latents != config.n_latents or sae.k != config.k:
            raise ItdError(f"SAE (n_latents={sae.n_latents}, k={sae.k}) does not match the training config "
                           f"(n_latents={config.n_latents}, k={config.k})")
        self.config = config
        self.mse_scale = float(mse_scale)
        self.accelerator = accelerator if accelerator is not None else _default_accelerator()
        if config.batch_size % self.accelerator.num_processes:
            raise ItdError(f"batch_size={config.batch_size} is not divisible by the {self.accelerator.num_processes} processes")
        module = TopKTrainingModule(sae)
        optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr, betas=config.adam_betas, eps=config.adam_eps)
        self.model, self.optimizer = self.accelerator.prepare(module, optimizer)
        self.step = 0
        self.tokens_seen = 0
        self.train_time_s = 0.0
        self.last_log: dict[str, float] = {}

    @property
    def sae(self) -> TopKSAE:
        """The unwrapped SAE (DDP's wrapper removed)."""
        return self.accelerator.unwrap_model(self.model).sae

    def lr_at(self, step: int) -> float:
        warmup = self.config.warmup_steps
        return self.config.lr * min(1.0, (step + 1) / warmup) if warmup else self.config.lr

    def dead_fraction(self) -> float:
        return (self.sae.stats_last_nonzero > self.config.dead_steps_threshold).float().mean().item()

    def train_step(self, batch: torch.Tensor, *, log: bool = False) -> dict[str, float] | None:
        """One optimizer step on ``batch`` ``[b, d]``; returns metrics (averaged over processes) when ``log``."""
        accelerator = self.accelerator
        x = batch.to(accelerator.device, torch.float32, non_blocking=True)
        out = self.model(x)
        mse = (out.recons - x).pow(2).mean()
        loss = mse * self.mse_scale
        aux_loss = torch.zeros((), device=x.device)
        if out.aux_recons is not None:
            residual = (x - out.recons).detach()
            aux_loss = ((out.aux_recons - residual).pow(2).mean() / (residual - residual.mean(dim=0)).pow(2).mean()).nan_to_num(0.0)
            loss = loss + self.config.auxk_coef * aux_loss
        self.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        sae = self.sae
        project_decoder_grad_(sae)
        if self.config.clip_grad is not None:
            accelerator.clip_grad_norm_(sae.parameters(), self.config.clip_grad)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.step()
        normalize_decoder_(sae)
        self.step += 1
        self.tokens_seen += self.config.batch_size
        if not log:
            return None
        with torch.no_grad():
            ev = 1 - (out.recons - x).pow(2).sum() / (x - x.mean(dim=0)).pow(2).sum()
            values = torch.stack([loss.detach(), mse.detach() * self.mse_scale, aux_loss.detach(), ev, out.l0])
            values = accelerator.reduce(values, reduction="mean") if accelerator.num_processes > 1 else values
        loss_v, nmse, aux_v, ev_v, l0 = values.tolist()
        self.last_log = {"step": self.step, "tokens": self.tokens_seen, "loss": loss_v, "nmse": nmse, "auxk_loss": aux_v,
                         "explained_variance": ev_v, "l0": l0, "dead_fraction": self.dead_fraction(), "lr": self.lr_at(self.step - 1)}
        return self.last_log

    def fit(
        self,
        batches: Iterable[torch.Tensor],
        steps: int,
        *,
        progress: bool = True,
        on_log: Callable[[dict[str, float]], None] | None = None,
        on_checkpoint: Callable[["SAETrainer"], None] | None = None,
    ) -> dict[str, float]:
        """Train until ``self.step == steps`` (continuing from ``self.step``); ``on_checkpoint`` runs every
        ``config.checkpoint_every`` steps and at the end. Returns the last logged metrics."""
        cfg = self.config
        show = progress and self.accelerator.is_local_main_process
        bar = tqdm(total=steps, initial=self.step, desc="training SAE", unit="step", disable=not show, dynamic_ncols=True)
        iterator = iter(batches)
        start = time.perf_counter()
        try:
            while self.step < steps:
                try:
                    batch = next(iterator)
                except StopIteration:
                    raise ItdError(f"the batch stream ended after {self.step} of {steps} steps") from None
                log = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == steps
                metrics = self.train_step(batch, log=log)
                bar.update(1)
                if metrics is not None:
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", ev=f"{metrics['explained_variance']:.3f}",
                                    l0=f"{metrics['l0']:.1f}", dead=f"{metrics['dead_fraction']:.3f}", refresh=False)
                    if on_log is not None:
                        on_log(metrics)
                if on_checkpoint is not None and (self.step == steps or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0)):
                    self.train_time_s += time.perf_counter() - start
                    on_checkpoint(self)
                    start = time.perf_counter()
        finally:
            self.train_time_s += time.perf_counter() - start
            bar.close()
        return self.last_log

    # --- state (for checkpoints: safetensors + json, no pickles) ------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Adam's moments and step per parameter, keyed by the SAE's parameter names."""
        names = [name for name, _ in self.sae.named_parameters()]
        tensors = {}
        for index, entry in self.optimizer.state_dict()["state"].items():
            for key, value in entry.items():
                tensors[f"adam.{names[index]}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        return tensors

    def state_info(self) -> dict:
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "step": self.step, "tokens_seen": self.tokens_seen,
                "train_time_s": self.train_time_s, "mse_scale": self.mse_scale,
                "world_size": self.accelerator.num_processes, "config": self.config.model_dump(mode="json")}

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        if info.get("format") != STATE_FORMAT or info.get("version") != STATE_VERSION:
            raise ItdError(f"not a trainer state of version {STATE_VERSION}: format={info.get('format')!r}, version={info.get('version')!r}")
        names = [name for name, _ in self.sae.named_parameters()]
        state = self.optimizer.state_dict()
        state["state"] = {}
        for index, name in enumerate(names):
            entry = {key.rsplit(".", 1)[1]: value for key, value in tensors.items() if key.startswith(f"adam.{name}.")}
            if entry:
                state["state"][index] = entry
        self.optimizer.load_state_dict(state)
        self.step = int(info["step"])
        self.tokens_seen = int(info["tokens_seen"])
        self.train_time_s = float(info.get("train_time_s", 0.0))
        self.mse_scale = float(info["mse_scale"])


# ------------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate_sae(sae: TopKSAE, activations: torch.Tensor, *, mse_scale: float | None = None, chunk: int = 4096) -> dict[str, float]:
    """Explained variance ``1 - sum|x - x_hat|^2 / sum|x - mean(x)|^2`` over ``activations`` ``[N, d]``,
    mean L0, and the normalized MSE with the training normaliser (when ``mse_scale`` is given)."""
    device = sae.W_enc.device
    total = torch.zeros((), dtype=torch.float64)
    residual = torch.zeros((), dtype=torch.float64)
    sum_x = torch.zeros(sae.d_model, dtype=torch.float64)
    l0 = torch.zeros((), dtype=torch.float64)
    n = activations.shape[0]
    for start in range(0, n, chunk):
        x = activations[start:start + chunk].to(device, torch.float32)
        code = sae.encode(x)
        x_hat = sae.decode_sparse(code)
        residual += (x - x_hat).double().pow(2).sum().cpu()
        total += x.double().pow(2).sum().cpu()
        sum_x += x.double().sum(dim=0).cpu()
        l0 += (code.values > 0).sum().double().cpu()
    total_variance = total - sum_x.pow(2).sum() / n
    metrics = {"explained_variance": 1.0 - (residual / total_variance).item(), "l0": (l0 / n).item(), "eval_tokens": n}
    if mse_scale is not None:
        metrics["normalized_mse"] = (residual / (n * sae.d_model)).item() * mse_scale
    return metrics


# ------------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``out_dir/checkpoints``, oldest first."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_STEP_PREFIX) and p.name[len(_STEP_PREFIX):].isdigit()
             and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(_STEP_PREFIX):]))


def save_checkpoint(trainer: SAETrainer, out_dir: str | Path, *, keep: int | None = None) -> Path:
    """Write ``out_dir/checkpoints/step_XXXXXX`` (SAE in the native format + optimizer state as
    safetensors + json), atomically: built under a temporary name, then renamed."""
    from itd_core.sae_formats import save_sae

    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{_STEP_PREFIX}{trainer.step:06d}"
    tmp = root / f".{folder.name}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    try:
        save_sae(trainer.sae, tmp / "sae", format="native")
        save_file(trainer.state_tensors(), str(tmp / "trainer_state.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(trainer.state_info(), indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep is not None:
        for old in checkpoint_dirs(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint_(trainer: SAETrainer, folder: str | Path) -> None:
    """Restore the SAE's weights and counters and the optimizer state from a checkpoint folder."""
    from itd_core.sae_formats import load_sae

    folder = Path(folder)
    try:
        info = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "trainer_state.safetensors"))
    except Exception as error:  # noqa: BLE001 - a third-party reader's errors, translated into ItdError below
        raise ItdError(f"cannot read training checkpoint {folder}: {error}") from None
    stored = load_sae(folder / "sae", format="native", dtype=torch.float32, device="cpu")
    sae = trainer.sae
    if stored.config.n_latents != sae.n_latents or stored.config.d_model != sae.d_model:
        raise ItdError(f"checkpoint {folder} holds a {stored.config.d_model}x{stored.config.n_latents} SAE, "
                       f"this run trains {sae.d_model}x{sae.n_latents}")
    with torch.no_grad():
        for name in ("W_enc", "b_lat", "W_dec", "b_pre", "stats_last_nonzero"):
            getattr(sae, name).copy_(getattr(stored, name))
    trainer.load_state(tensors, info)


# ------------------------------------------------------------------------------------------------
# the runner


def split_prompts(prompts: list[str], eval_fraction: float) -> tuple[list[str], list[str]]:
    """Held-out prompts by a hash of their text (so duplicates land on the same side, and the split
    does not depend on the seed or on the order)."""
    if eval_fraction <= 0:
        return list(prompts), []
    train, held_out = [], []
    for prompt in prompts:
        bucket = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big") / 2**64
        (held_out if bucket < eval_fraction else train).append(prompt)
    return train, held_out


def _model_id(adapter: TextEncoderAdapter) -> str | None:
    return getattr(getattr(adapter.text_encoder, "config", None), "_name_or_path", "") or None


def _check_resumable(stored: dict, config: TrainingConfig, folder: Path) -> None:
    current = config.model_dump(mode="json")
    changed = sorted(k for k in current if k not in _RESUMABLE_CHANGES and stored.get(k) != current[k])
    if changed:
        details = ", ".join(f"{k}: {stored.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ItdError(f"cannot resume from {folder}: the training config changed ({details}); "
                       "use another output folder or pass resume=False to start over")


def train_sae_from_prompts(
    adapter: TextEncoderAdapter,
    prompts: list[str],
    out_dir: str | Path,
    config: TrainingConfig,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = True,
    resume: bool = True,
    accelerator=None,
) -> tuple[TopKSAE, dict]:
    """Train a TopK SAE on ``adapter``'s layer over ``prompts``.

    Writes under ``out_dir``: ``checkpoints/step_XXXXXX/`` (every ``checkpoint_every`` steps and at
    the end), ``sae/`` (the final SAE, native format), ``train_log.jsonl`` (one line per log step) and
    ``metrics.json`` (explained variance, L0, dead fraction, normalized MSE on held-out prompts,
    tokens seen, tokens/s, wall time). The activation cache goes to ``cache_dir`` (default
    ``out_dir/activation_cache``; ``train/`` and ``eval/`` inside). With ``resume`` a rerun continues
    from the newest checkpoint and ends with the same weights as an uninterrupted run.
    Under ``accelerate launch`` every process calls this with the same arguments (module docstring).
    """
    wall_start = time.perf_counter()
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir / "activation_cache"
    accelerator = accelerator if accelerator is not None else _default_accelerator()
    prompts = [str(p) for p in prompts]
    if not prompts:
        raise ItdError("no prompts to train on")
    train_prompts, eval_prompts = split_prompts(prompts, config.eval_fraction)
    if not train_prompts:  # a tiny corpus that hashed entirely to the held-out side: evaluate on training tokens
        train_prompts, eval_prompts = eval_prompts, []
    if not resume and accelerator.is_main_process:
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()

    cache_kwargs = dict(batch_size=config.cache_batch_size, shard_tokens=config.cache_shard_tokens, progress=progress)
    train_cache = build_activation_cache(adapter, train_prompts, cache_dir / "train", **cache_kwargs)
    eval_cache = build_activation_cache(adapter, eval_prompts, cache_dir / "eval", **cache_kwargs) if eval_prompts else None
    if train_cache.n_tokens < config.batch_size:
        raise ItdError(f"the training prompts give {train_cache.n_tokens} tokens, fewer than one batch of {config.batch_size}")

    sample = train_cache.sample(config.init_sample_tokens, seed=config.seed)
    sae = TopKSAE.random(config.sae_config(train_cache.d_model, hook_layer=adapter.layer_name, model_id=_model_id(adapter)), seed=config.seed)
    init_from_data_(sae, sample, seed=config.seed)
    trainer = SAETrainer(sae, config, mse_scale=mse_scale_of(sample), accelerator=accelerator)
    del sample

    checkpoints = checkpoint_dirs(out_dir) if resume else []
    if checkpoints:
        latest = checkpoints[-1]
        stored = json.loads((latest / "trainer_state.json").read_text(encoding="utf-8"))
        _check_resumable(stored.get("config", {}), config, latest)
        load_checkpoint_(trainer, latest)
    start_step, start_time = trainer.step, trainer.train_time_s
    steps = config.num_steps(train_cache.n_tokens)
    if start_step > steps:
        raise ItdError(f"{checkpoints[-1]} is at step {start_step}, past this run's {steps} steps; use another output folder")

    batches = train_cache.iter_batches(
        config.batch_size, seed=config.seed, epochs=None, start_batch=start_step,
        rank=accelerator.process_index, world_size=accelerator.num_processes, buffer_tokens=config.shuffle_buffer_tokens,
    )
    log_path = out_dir / "train_log.jsonl"

    def on_log(metrics: dict) -> None:
        if accelerator.is_main_process:
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(metrics) + "\n")

    def on_checkpoint(current: SAETrainer) -> None:
        if accelerator.is_main_process:
            save_checkpoint(current, out_dir, keep=config.keep_checkpoints)
        accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, start_step)
    last = trainer.fit(batches, steps, progress=progress, on_log=on_log, on_checkpoint=on_checkpoint)

    sae = trainer.sae
    if eval_cache is not None:
        held_out, eval_split = eval_cache.sample(config.eval_max_tokens, seed=config.seed), "held-out prompts"
    else:
        held_out, eval_split = train_cache.sample(config.eval_max_tokens, seed=config.seed + 1), "training tokens (no held-out prompts)"
    evaluation = evaluate_sae(sae, held_out, mse_scale=trainer.mse_scale)
    from itd_core.sae_formats import save_sae, weights_fingerprint

    sae.fingerprint = weights_fingerprint(sae)
    session_time = trainer.train_time_s - start_time
    session_tokens = (trainer.step - start_step) * config.batch_size
    metrics = {
        "explained_variance": evaluation["explained_variance"],
        "normalized_mse": evaluation["normalized_mse"],
        "l0": evaluation["l0"],
        "k": config.k,
        "dead_fraction": trainer.dead_fraction(),
        "train_normalized_mse": last.get("nmse"),
        "train_explained_variance": last.get("explained_variance"),
        "tokens_seen": trainer.tokens_seen,
        "steps": trainer.step,
        "tokens_per_s": session_tokens / session_time if session_time > 0 else None,
        "train_time_s": trainer.train_time_s,
        "wall_time_s": time.perf_counter() - wall_start,
        "resumed_from_step": start_step or None,
        "eval_tokens": evaluation["eval_tokens"],
        "eval_split": eval_split,
        "train_tokens_available": train_cache.n_tokens,
        "n_latents": config.n_latents,
        "d_model": sae.d_model,
        "layer": adapter.layer_name,
        "model_id": _model_id(adapter),
        "world_size": accelerator.num_processes,
        "fingerprint": sae.fingerprint,
        "config": config.model_dump(mode="json"),
    }
    if accelerator.is_main_process:
        save_sae(sae, out_dir / "sae", format="native")
        atomic_write_json(out_dir / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return sae, metrics


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
