"""Train ShapesWorld's denoiser: a small ``UNet2DConditionModel`` on the frozen VAE's latents.

Conditioning: cross-attention on the frozen MiniLM encoder's last hidden state
(``[b, 24, 384]``, padding masked inside the encoder as the pipeline does). Cross-attention
sits at 16x16 and 8x8 (and the 4x4 mid block); 4x4 down/up blocks are plain ResNets.
Classifier-free guidance: ``--cfg-drop`` (10%) of captions are replaced by the empty
caption ``""`` -- exactly the negative prompt the pipeline encodes at sampling time.

Noise schedule: 1000-step cosine (``squaredcos_cap_v2``), epsilon prediction. The sampling
scheduler is a static pipeline component (:func:`shapesworld.pipeline.sampling_scheduler`).

Speed: the encoder and the VAE are frozen, so the text embeddings and VAE latents of the
``--n-train`` training samples are computed once and cached in ``<run-dir>/cache.pt``.
EMA weights (``--ema``) are what gets exported. The loss is Min-SNR-5 weighted epsilon MSE
(``--min-snr``), which spends the small budget on the noisy steps that decide shape and colour.

Resumable: ``<run-dir>/ckpt.pt`` every ``--ckpt-every`` steps and on ``--max-minutes``; rerun
the same command to continue. ``--out`` receives ``unet/`` (fp16 EMA weights); the pipeline's other components come
from :mod:`shapesworld.pipeline`.

    python -m shapesworld.train_unet --run-dir runs/unet --steps 6000 --max-minutes 55
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import text_encoder as te
from . import world
from .pipeline import PIPELINE_DIR
from .train_utils import EMA, Logger, adapt_threads, checkpoint_or_stop, lr_factor, optimizer_step, optional_path, param_count, resume, save_checkpoint, setup


def build_unet(channels: tuple[int, ...] = (32, 64, 64), head_dim: int = 8, groups: int = 32):
    """The denoiser: ``len(channels)`` levels (16, 8, 4 px), cross-attention on all but the last."""
    from diffusers import UNet2DConditionModel

    n = len(channels)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=tuple(channels),
        down_block_types=down, up_block_types=up, layers_per_block=1, cross_attention_dim=te.HIDDEN_SIZE,
        attention_head_dim=[max(1, c // head_dim) for c in channels], norm_num_groups=groups,
    )


def train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=False)


def load_vae(folder: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(folder), dtype=torch.float32).eval().requires_grad_(False)


def encoder_key(vae_dir: Path) -> str:
    """SHA-256 of the VAE's encoder-side tensors (``encoder.*``, ``quant_conv.*``) and its ``scaling_factor``."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    digest.update(str(json.loads((vae_dir / "config.json").read_text())["scaling_factor"]).encode())
    with safe_open(str(vae_dir / "diffusion_pytorch_model.safetensors"), framework="pt") as weights:
        for name in sorted(k for k in weights.keys() if k.startswith(("encoder.", "quant_conv."))):
            digest.update(name.encode())
            digest.update(weights.get_tensor(name).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def build_cache(n: int, seed: int, vae_dir: Path, path: Path, bf16: bool = False) -> dict:
    """Encode ``n`` world samples once: fp16 text states ``[n, 24, 384]`` and scaled latents ``[n, 4, 16, 16]``.

    Captions repeat (identity templates), so each distinct caption is encoded once. The cache is
    keyed by what decides the latents -- ``world.WORLD_VERSION``, the encoder's weights and the
    latent scale, not the VAE's folder -- so retraining the VAE in place or changing the world
    re-encodes, and fine-tuning only the VAE's decoder does not.
    """
    vae_key = encoder_key(vae_dir)
    if path.is_file():
        cache = torch.load(path, map_location="cpu", weights_only=True)
        if (cache["n"], cache["seed"], cache["vae"], cache.get("world_version")) == (n, seed, vae_key, world.WORLD_VERSION):
            return cache
    t0 = time.time()
    samples = world.generate(n, seed)
    captions = [s.caption for s in samples]
    vae = load_vae(vae_dir)
    sf = vae.config.scaling_factor
    lat = []
    for i in range(0, n, 250):
        x = torch.from_numpy(np.stack([s.image for s in samples[i:i + 250]])).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            lat.append((vae.encode(x).latent_dist.mode().float() * sf).half())
    print(f"encoded {n} latents in {time.time() - t0:.0f}s", flush=True)
    distinct = sorted(set(captions))
    row = {c: i for i, c in enumerate(distinct)}
    states = te.encode(distinct).half()
    text = states[torch.tensor([row[c] for c in captions])]
    uncond = te.encode([""]).half()[0]
    cache = {"n": n, "seed": seed, "vae": vae_key, "world_version": world.WORLD_VERSION, "latents": torch.cat(lat),
             "text": text, "uncond": uncond, "captions": captions, "labels": [s.labels for s in samples]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path)
    print(f"cached {n} latents + text states ({len(distinct)} distinct captions) in {time.time() - t0:.0f}s -> {path}",
          flush=True)
    return cache


def style_weight(text: str) -> tuple[str, float]:
    """argparse type for ``--style-weight STYLE=W``."""
    style, _, weight = text.partition("=")
    try:
        factor = float(weight)
    except ValueError:
        factor = 0.0
    if style not in world.STYLES or factor <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STYLE=W with STYLE one of {world.STYLES} and a number W > 0")
    return style, factor


def sample_weights(labels: list[dict], factors: dict[str, float]) -> torch.Tensor | None:
    """Per-sample draw weights: ``factors[style]`` for samples in that artist style, 1 otherwise (``None``: uniform)."""
    if not factors:
        return None
    return torch.tensor([factors.get(lab["style"], 1.0) for lab in labels], dtype=torch.float64)


def export(unet, out: Path, metrics: dict | None = None) -> None:
    """Write ``unet/`` (fp16) into the pipeline folder ``out``."""
    unet.to(torch.float16).save_pretrained(str(out / "unet"), safe_serialization=True)
    unet.to(torch.float32)
    if metrics:
        (out / "unet" / "training_metrics.json").write_text(json.dumps(metrics, indent=1))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/unet"))
    ap.add_argument("--vae", type=Path, default=PIPELINE_DIR / "vae", help="trained VAE folder (frozen)")
    ap.add_argument("--out", type=optional_path, default=PIPELINE_DIR, help="pipeline folder to write unet/ into ('' to skip)")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    ap.add_argument("--head-dim", type=int, default=16)
    ap.add_argument("--groups", type=int, default=32)
    ap.add_argument("--n-train", type=int, default=30000)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (checkpointed, exported) after this long")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--cfg-drop", type=float, default=0.1)
    ap.add_argument("--style-weight", type=style_weight, action="append", default=[], metavar="STYLE=W",
                    help="draw samples of this artist style W times as often (repeatable); for relearning changed styles")
    ap.add_argument("--min-snr", type=float, default=5.0, help="Min-SNR-gamma loss weighting (0 = plain MSE)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (measure first: 1.5x slower than fp32 for the default UNet on this CPU)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adaptive-threads", action="store_true",
                    help="drop to 1 thread while other jobs load the box (checked every --log-every steps)")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args(argv)
    setup(args.seed, args.threads)
    log = Logger(args.run_dir / "log.jsonl")

    cache = build_cache(args.n_train, args.seed, args.vae, args.run_dir / "cache.pt", args.bf16)
    latents, text, uncond = cache["latents"], cache["text"], cache["uncond"]
    draw_weights = sample_weights(cache["labels"], dict(args.style_weight))
    unet = build_unet(tuple(args.channels), args.head_dim, args.groups)
    ema = EMA(unet, args.ema)
    noise_sched = train_scheduler()
    acp = noise_sched.alphas_cumprod.float()
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    step, train_seconds = resume(args.run_dir, g, model=unet, ema=ema, opt=opt)
    print(f"unet: {param_count(unet):,} params, {len(latents)} cached samples", flush=True)

    def checkpoint() -> None:
        save_checkpoint(args.run_dir / "ckpt.pt", model=unet.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                        gen=g.get_state(), step=step,
                        train_seconds=train_seconds + time.time() - t_loop, args=vars(args))

    unet.train()
    t_loop, first_step = time.time(), step
    losses: list[float] = []
    bar = tqdm(total=args.steps, initial=step, mininterval=10, disable=None)
    while step < args.steps:
        if draw_weights is None:
            idx = torch.randint(0, len(latents), (args.batch,), generator=g)
        else:
            idx = torch.multinomial(draw_weights, args.batch, replacement=True, generator=g)
        z0 = latents[idx].float()
        cond = text[idx].float()
        drop = torch.rand(args.batch, generator=g) < args.cfg_drop
        cond = torch.where(drop[:, None, None], uncond.float()[None], cond)
        t = torch.randint(0, 1000, (args.batch,), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            pred = unet(zt, t, encoder_hidden_states=cond).sample
        per_sample = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
        if args.min_snr > 0:  # Min-SNR-gamma weighting (Hang et al. 2023): less weight on near-clean steps
            snr = a.view(-1) / (1 - a.view(-1))
            per_sample = per_sample * snr.clamp(max=args.min_snr) / snr
        loss = per_sample.mean()
        elapsed = train_seconds + time.time() - t_loop
        optimizer_step(opt, loss, unet.parameters(), args.lr * lr_factor(step, args.steps, elapsed, args.max_minutes))
        ema.update(unet)
        step += 1
        bar.update(1)
        losses.append(loss.item())
        if step % args.log_every == 0:
            if args.adaptive_threads:
                adapt_threads(args.threads, torch.get_num_threads())
            log(step=step, threads=torch.get_num_threads(), loss=float(np.mean(losses[-args.log_every:])), lr=opt.param_groups[0]["lr"],
                steps_per_s=(step - first_step) / max(1e-6, time.time() - t_loop))
        if checkpoint_or_stop(step, args.ckpt_every, args.max_minutes, train_seconds + time.time() - t_loop, checkpoint):
            break
    bar.close()
    checkpoint()
    metrics = {"steps": step, "params": param_count(unet), "channels": args.channels, "batch": args.batch,
               "lr": args.lr, "style_weight": dict(args.style_weight), "ema": args.ema, "cfg_drop": args.cfg_drop,
               "min_snr": args.min_snr, "bf16": args.bf16, "n_train": args.n_train,
               "final_loss_mean_last_200": float(np.mean(losses[-200:])) if losses else None,
               "train_minutes": round((train_seconds + time.time() - t_loop) / 60, 1)}
    (args.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if args.out is not None:
        export(ema.model, args.out, metrics)
        print(f"wrote {args.out / 'unet'}", flush=True)
    return metrics


if __name__ == "__main__":
    main()
