"""SAE training throughput (tokens/s) on random data, at the issue's size: 2^15 latents, d=768, k=64,
4096-token batches. Prints a markdown table.

Variants:

- ``itd_core``: :class:`itd_core.training.SAETrainer` as the runner uses it (accelerate, sparse encoder
  backward, gradient projection, Adam). ``auxk idle``: no dead latents (a healthy run);
  ``auxk, 10% dead``: a tenth of the latents are dead (their encoder rows shrunk so they never fire),
  so every step also runs the AuxK path (top-256 of the dead latents' pre-activations, decode, backward);
  ``auxk, all dead``: ``dead_steps_threshold=0``, every latent counts as dead -- the worst case.
- ``dense reference``: the same maths written the plain way (dense pre-activations, autograd through
  ``topk``, so the encoder backward is a second dense ``B x n x d`` matmul), as the reference code does.

Timing: ``--warmup`` steps are run first and not counted; then ``--steps`` steps are timed
(CUDA is synchronised before the clock is read).

    python bench/bench_training.py                       # CPU, the issue's size
    python bench/bench_training.py --device cuda --steps 50
    python bench/bench_training.py --latents 4096 --d-model 128 --batch-size 1024   # quick look
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itd_core.sae import SparseCode, TopKSAE  # noqa: E402
from itd_core.training import (  # noqa: E402
    SAETrainer,
    TrainingConfig,
    normalize_decoder_,
    project_decoder_grad_,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(n: int, batch: int, d: int, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    pool = [torch.randn(batch, d, generator=generator).to(device) for _ in range(min(n, 4))]
    return [pool[i % len(pool)] for i in range(n)]


def run_itd_core(cfg: TrainingConfig, d: int, device: torch.device, warmup: int, steps: int, dead_fraction: float = 0.0) -> float:
    from accelerate import Accelerator

    sae = TopKSAE.random(cfg.sae_config(d), seed=0)
    n_dead = int(dead_fraction * cfg.n_latents)
    with torch.no_grad():  # dead latents: tiny encoder rows (never in the top k), long unfired
        sae.W_enc[:n_dead] *= 1e-3
        sae.stats_last_nonzero[:n_dead] = cfg.dead_steps_threshold + 10**6
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no")
    trainer = SAETrainer(sae, cfg, mse_scale=1.0, accelerator=accelerator)
    data = _batches(warmup + steps, cfg.batch_size, d, accelerator.device)
    for batch in data[:warmup]:
        trainer.train_step(batch)
    _sync(accelerator.device)
    start = time.perf_counter()
    for batch in data[warmup:]:
        trainer.train_step(batch)
    _sync(accelerator.device)
    return time.perf_counter() - start


def run_dense_reference(cfg: TrainingConfig, d: int, device: torch.device, warmup: int, steps: int) -> float:
    sae = TopKSAE.random(cfg.sae_config(d), seed=0).to(device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    data = _batches(warmup + steps, cfg.batch_size, d, device)

    def step(x: torch.Tensor) -> None:
        pre = sae.encode_pre_act(x)
        values, indices = pre.topk(cfg.k, dim=-1, sorted=False)
        recons = sae.decode_sparse(SparseCode(torch.relu(values), indices))
        loss = (recons - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        project_decoder_grad_(sae)
        optimizer.step()
        normalize_decoder_(sae)

    for x in data[:warmup]:
        step(x)
    _sync(device)
    start = time.perf_counter()
    for x in data[warmup:]:
        step(x)
    _sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=2**15)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--auxk", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--variants", default="auxk-idle,auxk-10pct,auxk-all,dense", help="comma list of auxk-idle, auxk-10pct, auxk-all, dense")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = TrainingConfig(n_latents=args.latents, k=args.k, auxk=args.auxk, batch_size=args.batch_size, warmup_steps=0, lr=1e-4)
    healthy = base.model_copy(update={"dead_steps_threshold": 10**9})
    variants = {
        "auxk-idle": ("itd_core, auxk idle (no dead latents)", lambda: run_itd_core(healthy, args.d_model, device, args.warmup, args.steps)),
        "auxk-10pct": ("itd_core, auxk, 10% dead", lambda: run_itd_core(healthy, args.d_model, device, args.warmup, args.steps, dead_fraction=0.1)),
        "auxk-all": ("itd_core, auxk, all dead (worst case)", lambda: run_itd_core(base.model_copy(update={"dead_steps_threshold": 0}), args.d_model, device, args.warmup, args.steps)),
        "dense": ("dense reference (no auxk)", lambda: run_dense_reference(base, args.d_model, device, args.warmup, args.steps)),
    }
    rows = []
    for key in args.variants.split(","):
        name, run = variants[key.strip()]
        seconds = run()
        rows.append((name, seconds / args.steps, args.steps * args.batch_size / seconds))
        print(f"  {name}: {seconds / args.steps:.3f} s/step", file=sys.stderr, flush=True)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\nSAE training throughput: {args.latents} latents, d={args.d_model}, k={args.k}, batch {args.batch_size} tokens, "
          f"{args.steps} timed steps after {args.warmup} warm-up; {args.device} ({where}); torch {torch.__version__}\n")
    print("| variant | s/step | tokens/s |")
    print("| --- | ---: | ---: |")
    for name, per_step, tokens_per_s in rows:
        print(f"| {name} | {per_step:.3f} | {tokens_per_s:,.0f} |")


if __name__ == "__main__":
    main()
