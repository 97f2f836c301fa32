"""Load time and peak memory of ``itd_core.sae_formats.load_sae`` per checkpoint size and format.

For each size a random SAE is written once per format into a temporary folder; then every load runs in a
fresh child process that only imports, warms up on a tiny checkpoint, and loads. Peak extra RSS is the
child's peak RSS (VmHWM, reset just before the load) minus its RSS just before it. The loaded fingerprint is checked
against the generated weights. Prints a markdown table.

    python bench/bench_sae_load.py --latents 32768 131072 --format itd saelens native
    python bench/bench_sae_load.py --latents 524288 --format itd --cold   # page cache evicted before each load
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import reset_peak_rss, status_kib  # noqa: E402

FORMATS = ("itd", "saelens", "native")
STORE_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def child(path: str, fmt: str, dtype: str, warmup: str) -> None:
    """Runs in a fresh process: import, warm up on a tiny checkpoint, then measure one load.

    The peak is the process's VmHWM (peak RSS of its address space), reset just before the load. Not
    ``ru_maxrss``: Linux carries that over ``exec`` from the parent, so it would report the parent's peak.
    """
    from itd_core.sae_formats import load_sae

    load_sae(warmup, format=fmt, dtype=dtype)  # first-call imports and allocator set-up are not counted
    gc.collect()
    reset = reset_peak_rss()
    baseline_kb = status_kib("VmRSS")
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    sae = load_sae(path, format=fmt, dtype=dtype)
    seconds = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    tensors = [*sae.parameters(), *sae.buffers()]
    print(
        json.dumps(
            {
                "load_s": seconds,
                "cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
                "baseline_kb": baseline_kb,
                "peak_kb": status_kib("VmHWM") if reset else cpu_after.ru_maxrss,
                "peak_source": "VmHWM" if reset else "ru_maxrss",
                "rss_after_kb": status_kib("VmRSS"),
                "weights_bytes": sum(t.numel() * t.element_size() for t in tensors),
                "fingerprint": sae.fingerprint,
            }
        )
    )


def _evict_page_cache(folder: Path) -> None:
    for file in folder.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _write_checkpoints(root: Path, latents: int, args: argparse.Namespace) -> tuple[str, dict[str, Path]]:
    import torch

    from itd_core.sae import SAEConfig, TopKSAE
    from itd_core.sae_formats import save_sae, weights_fingerprint

    cfg = SAEConfig(d_model=args.d_model, n_latents=latents, k=args.k)
    sae = TopKSAE.random(cfg, seed=latents, dtype=getattr(torch, STORE_DTYPES[args.store_dtype]))
    with torch.no_grad():
        sae.b_lat.normal_(0, 0.1)
        sae.b_pre.normal_(0, 0.1)
        sae.stats_last_nonzero.random_(0, 10_000)
    fingerprint = weights_fingerprint(sae)
    folders = {}
    for fmt in args.format:
        folders[fmt] = save_sae(sae, root / f"sae_{latents}_{fmt}", format=fmt)
    return fingerprint, folders


def _write_warmups(root: Path, args: argparse.Namespace) -> dict[str, Path]:
    from itd_core.sae import SAEConfig, TopKSAE
    from itd_core.sae_formats import save_sae

    sae = TopKSAE.random(SAEConfig(d_model=8, n_latents=32, k=4))
    return {fmt: save_sae(sae, root / f"warmup_{fmt}", format=fmt) for fmt in args.format}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, nargs="+", default=[32768, 131072, 524288])
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--dtype", default="fp32", help="dtype to load as (fp32, bf16, fp16)")
    parser.add_argument("--store-dtype", choices=sorted(STORE_DTYPES), default="fp32", help="dtype the checkpoints are written in")
    parser.add_argument("--cold", action="store_true", help="evict the checkpoint from the page cache before each load")
    parser.add_argument("--tmp-dir", default=None, help="where to write the checkpoints (default: system temp)")
    parser.add_argument("--child", nargs=4, metavar=("PATH", "FORMAT", "DTYPE", "WARMUP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    rows = []
    root = Path(tempfile.mkdtemp(prefix="bench_sae_load_", dir=args.tmp_dir))
    try:
        warmups = _write_warmups(root, args)
        for latents in args.latents:
            print(f"writing {latents} x {args.d_model} checkpoints ({', '.join(args.format)}) ...", file=sys.stderr, flush=True)
            fingerprint, folders = _write_checkpoints(root, latents, args)
            gc.collect()
            for fmt, folder in folders.items():
                if args.cold:
                    _evict_page_cache(folder)
                result = subprocess.run(
                    [sys.executable, __file__, "--child", str(folder), fmt, args.dtype, str(warmups[fmt])],
                    capture_output=True, text=True, check=False,
                )
                if result.returncode != 0:
                    print(result.stderr, file=sys.stderr)
                    raise SystemExit(f"child failed for {latents} {fmt}")
                stats = json.loads(result.stdout.strip().splitlines()[-1])
                extra_mb = (stats["peak_kb"] - stats["baseline_kb"]) / 1024
                weights_mb = stats["weights_bytes"] / 2**20
                rows.append(
                    f"| {latents} | {fmt} | {weights_mb:.0f} | {stats['load_s']:.2f} | {stats['cpu_s']:.2f} | "
                    f"{extra_mb:.0f} | {extra_mb / weights_mb:.2f} | "
                    f"{'yes' if stats['fingerprint'] == fingerprint else 'NO'} |"
                )
                print(rows[-1], file=sys.stderr, flush=True)
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cache = "cold page cache" if args.cold else "warm page cache"
    print(f"\nd_model={args.d_model}, load dtype={args.dtype}, stored {args.store_dtype}, {cache}\n")
    print("| latents | format | weights MB | load s | load CPU s | peak extra RSS MB | peak/weights | fingerprint ok |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
