"""Data parallelism over prompts: which process this is, and which prompts it takes.

Under ``accelerate launch`` (or ``torch.distributed.run``) every process runs the same script; each takes a
contiguous, disjoint slice of the prompts (:func:`rank_slice`), and the main process combines the results. Used
by the activation cache, the SAE trainer and the feature index's corpus statistics. Launch commands (GPUs, or
CPU processes with gloo) are in :mod:`itd_core.training`.
"""

from __future__ import annotations

import os

import torch


def use_cpu_processes() -> bool:
    """Whether accelerate should run CPU processes (gloo): asked for with ``ACCELERATE_USE_CPU=true``,
    or no accelerator device is present. accelerate only forms a multi-process CPU group when told so."""
    if os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in {"1", "true", "yes"}:
        return True
    return not torch.accelerator.is_available()


def distributed_state():
    """accelerate's process state (a plain single process when not launched by ``accelerate launch``
    or ``torch.distributed.run``)."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu_processes())


def rank_slice(n_prompts: int, rank: int, world_size: int) -> tuple[int, int]:
    """The prompts ``[start, end)`` of process ``rank``: contiguous, in rank order, sizes differing by at most one."""
    return n_prompts * rank // world_size, n_prompts * (rank + 1) // world_size


def process_device(device: str) -> str:
    """``device`` for this process: a bare ``cuda`` becomes ``cuda:<local rank>`` under a data-parallel launch, so
    that N processes use N GPUs; anything else is kept."""
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(local_rank)}" if device == "cuda" and local_rank is not None else device
