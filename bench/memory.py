"""Process memory for the benchmarks (Linux): the resident set from ``/proc/self/status``, its peak (VmHWM) reset
through ``/proc/self/clear_refs``, and the peak one call needs (CUDA's allocator peak on a GPU)."""

from __future__ import annotations

from pathlib import Path

import torch


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB, e.g. ``"VmRSS"`` or ``"VmHWM"``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_extra_bytes(fn, device: str) -> int:
    """Memory one call of ``fn`` needs beyond what was held before it: CUDA's allocator peak, or on CPU the process's
    peak resident set since a reset."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS here (/proc/self/clear_refs): no per-call peak")
    before = status_kib("VmRSS")
    fn()
    return (status_kib("VmHWM") - before) * 1024
