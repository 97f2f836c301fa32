"""Shared bits of the ShapesWorld training scripts: seeding, threads, resumable checkpoints, EMA, logging."""

from __future__ import annotations

import copy
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch


def setup(seed: int, threads: int) -> None:
    """Seed python/numpy/torch and cap torch's CPU threads (the dev box has 2 shared cores)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)


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
    return torch.load(path, map_location="cpu", weights_only=False)


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


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
