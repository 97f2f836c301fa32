"""Shared bits of the ShapesWorld training scripts: seeding, threads, resumable checkpoints, EMA, logging."""

from __future__ import annotations

import copy
import json
import os
import random
import time
from pathlib import Path, PosixPath

import numpy as np
import torch


def setup(seed: int, threads: int) -> None:
    """Seed python/numpy/torch and cap torch's CPU threads (the dev box has 2 shared cores)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)


def adapt_threads(max_threads: int, current: int) -> int:
    """Use ``max_threads`` while the box is otherwise idle, 1 thread when other jobs compete.

    On 2 shared cores, a 2-thread OpenMP job next to other busy jobs stalls at every barrier
    (measured: 15x slower per step than 1 thread); alone, 2 threads are ~1.7x faster.
    The 1-minute load average minus our own threads estimates the other jobs.
    """
    others = os.getloadavg()[0] - current
    n = max_threads if others < 0.6 else 1
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


def optional_path(text: str) -> Path | None:
    """argparse type for ``--out``: an empty string means "do not write" (``Path("")`` would be the cwd)."""
    return Path(text) if text else None


def save_checkpoint(path: Path, **state) -> None:
    """Atomic save (write + rename), so an interruption never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint dict, or ``None`` when there is none yet."""
    if not path.is_file():
        return None
    # weights_only: never run code from a file; the checkpoints' `args` hold paths, a plain data class
    with torch.serialization.safe_globals([PosixPath]):
        return torch.load(path, map_location="cpu", weights_only=True)


def resume(run_dir: Path, generator: torch.Generator, **stateful) -> tuple[int, float]:
    """Restore ``run_dir/ckpt.pt`` into the given objects (each has ``load_state_dict``) and the
    generator; returns ``(step, train_seconds)``, ``(0, 0.0)`` when there is no checkpoint yet."""
    ck = load_checkpoint(run_dir / "ckpt.pt")
    if ck is None:
        return 0, 0.0
    for name, obj in stateful.items():
        obj.load_state_dict(ck[name])
    generator.set_state(ck["gen"])
    print(f"resumed from {run_dir / 'ckpt.pt'} at step {ck['step']}", flush=True)
    return ck["step"], ck.get("train_seconds", 0.0)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, parameters, lr: float, clip: float = 1.0) -> None:
    """Set the learning rate, back-propagate, clip the gradient norm and step."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip)
    opt.step()


def checkpoint_or_stop(step: int, ckpt_every: int, max_minutes: float, seconds_trained: float, checkpoint) -> bool:
    """Checkpoint every ``ckpt_every`` steps; True when the time budget is spent (the caller stops)."""
    if step % ckpt_every == 0:
        checkpoint()
    if max_minutes and seconds_trained > max_minutes * 60:
        print(f"time budget of {max_minutes} min reached at step {step}", flush=True)
        return True
    return False


class EMA:
    """Exponential moving average of a model's parameters (``decay`` warms up as ``(1+n)/(10+n)``)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.n = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "n": self.n, "decay": self.decay}

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.n, self.decay = sd["n"], sd["decay"]


class Logger:
    """Print one line per log step (flushed, so `nohup ... > log` shows progress) and keep a JSONL copy."""

    def __init__(self, path: Path | None):
        self.path = path
        self.t0 = time.time()

    def __call__(self, **fields) -> None:
        fields = {"t": round(time.time() - self.t0, 1), **fields}
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()), flush=True)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(fields) + "\n")


def warmup_cosine(opt: torch.optim.Optimizer, steps: int, warmup: int = 200, floor: float = 0.1):
    """Linear warm-up then cosine decay to ``floor`` x lr at ``steps``; a plain ``LambdaLR``, so a resumed run
    may change ``--steps`` (the schedule is recomputed from the step count)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup=warmup, floor=floor))


def lr_factor(step: int, steps: int, elapsed_s: float = 0.0, max_minutes: float = 0.0,
              warmup: int = 200, floor: float = 0.1) -> float:
    """Warm-up then cosine decay to ``floor``; progress is ``step / steps``, or the share of the time budget
    used when ``max_minutes`` is set and further along -- so a time-capped run still anneals."""
    import math

    warm = max(1, min(warmup, steps // 10 + 1))
    progress = step / steps
    if max_minutes > 0:
        progress = max(progress, elapsed_s / (max_minutes * 60))
    progress = min(progress, 1.0)
    return min(1.0, (step + 1) / warm) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
