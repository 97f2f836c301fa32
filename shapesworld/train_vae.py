"""Train ShapesWorld's VAE: a small diffusers ``AutoencoderKL``, 64x64 RGB -> 16x16x4 latents.

Architecture: 3 encoder/decoder blocks (``--channels``, default 32/64/64; two 2x down-samplings),
one ResNet layer per block, no mid-block attention (at 4x the cost it did not help a prototype).

Loss: L1 + MSE on pixels, plus a colour-aware term: L1 between 4x4-average-pooled images,
weighted by ``--colour-weight``. The pooled term only sees low-frequency colour, which is what
a small VAE gets wrong first (a prototype without it drifted yellow and red toward orange);
a tiny KL term (``--kl-weight``) keeps the latent space smooth for the diffusion model.

Cost: the full-resolution convolutions dominate (~2.4 GFLOP per 64-px image per step), so
training uses random 32x32 crops (``--crop``; the model has no attention, so it is fully
convolutional and runs on 64x64 images unchanged) and small batches. Crops alone cap quality
(20.6 dB): the committed VAE warm-starts on crops, then resumes on whole images (``--crop 64``,
27.2 dB; see shapesworld/README.md).

Decoder fine-tuning (``--init <diffusers folder> --decoder-only``): the encoder stays frozen,
so the latent space -- and a UNet trained on it -- is unchanged, and only the decoder learns to
render better. ``--edge-weight`` adds L1 between the images' horizontal and vertical pixel
differences: an MSE-trained decoder blurs edges and periodic texture (pixel blocks, halftone
dots), which this term penalises directly. It cannot restore texture the frozen encoder drops:
world v1's 4-px blocks and dots stayed plain shapes. The ``scaling_factor`` is kept from ``--init``.

Data: ``--n-train`` world images (stream ``--seed``); PSNR is measured on ``--n-val`` held-out
images (stream ``--seed + 1000``). After training, the latent scale (1 / std of the latents)
is stored as the VAE's ``scaling_factor``, as SD does.

Resumable: ``<run-dir>/ckpt.pt`` every ``--ckpt-every`` steps, on ``--max-minutes`` (of training time, summed over resumes) and at the
end; rerun the same command to continue. ``--out`` receives the fp16 diffusers folder.

    python -m shapesworld.train_vae --run-dir runs/vae --steps 6000 --max-minutes 18
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import world
from .train_utils import Logger, checkpoint_or_stop, lr_factor, optimizer_step, optional_path, param_count, resume, save_checkpoint, setup

DEFAULT_OUT = Path(__file__).parent / "assets" / "pipeline" / "vae"


def build_vae(channels: tuple[int, ...] = (32, 64, 64), groups: int = 16):
    from diffusers import AutoencoderKL

    n = len(channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(channels), layers_per_block=1, norm_num_groups=groups,
        mid_block_add_attention=False,
    )


def images_tensor(n: int, seed: int) -> torch.Tensor:
    """``n`` world images as uint8 ``[n, 3, 64, 64]``."""
    arr = np.stack([s.image for s in world.generate(n, seed)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def edge_l1(x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical neighbour differences: penalises blurred edges and texture."""
    dx = (rec.diff(dim=-1) - x.diff(dim=-1)).abs().mean()
    dy = (rec.diff(dim=-2) - x.diff(dim=-2)).abs().mean()
    return dx + dy


def vae_loss(x: torch.Tensor, rec: torch.Tensor, posterior, colour_weight: float, kl_weight: float,
             edge_weight: float = 0.0):
    l1 = (rec - x).abs().mean()
    mse = F.mse_loss(rec, x)
    colour = (F.avg_pool2d(rec, 4) - F.avg_pool2d(x, 4)).abs().mean()
    kl = posterior.kl().mean() / x[0].numel()
    edge = edge_l1(x, rec)
    total = l1 + mse + colour_weight * colour + kl_weight * kl + edge_weight * edge
    return total, {"l1": l1, "mse": mse, "colour": colour, "kl": kl, "edge": edge}


@torch.no_grad()
def psnr(vae, images: torch.Tensor, batch: int = 200) -> float:
    """Mean PSNR (dB, images in [0, 255]) of encode(mode) -> decode on uint8 ``images``."""
    vae.eval()
    vals = []
    for i in range(0, len(images), batch):
        x = to_float(images[i:i + batch])
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        mse = ((rec - x) / 2 * 255).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-6)
        vals.append(10 * torch.log10(255.0 ** 2 / mse))
    return float(torch.cat(vals).mean())


@torch.no_grad()
def latent_std(vae, images: torch.Tensor, batch: int = 200) -> float:
    vae.eval()
    zs = [vae.encode(to_float(images[i:i + batch])).latent_dist.mode() for i in range(0, len(images), batch)]
    return float(torch.cat(zs).std())


def export(vae, out: Path, scaling_factor: float) -> None:
    """Save fp16 diffusers weights with the measured ``scaling_factor``."""
    vae.register_to_config(scaling_factor=scaling_factor)
    vae.to(torch.float16).save_pretrained(str(out), safe_serialization=True)
    vae.to(torch.float32)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/vae"))
    ap.add_argument("--out", type=optional_path, default=DEFAULT_OUT, help="diffusers folder for the fp16 VAE ('' to skip)")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    ap.add_argument("--groups", type=int, default=16, help="GroupNorm groups (must divide every channel count)")
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (checkpointed, exported) after this long")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=32, help="train on random crops of this side (64 = whole images)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--colour-weight", type=float, default=2.0)
    ap.add_argument("--kl-weight", type=float, default=1e-4)
    ap.add_argument("--edge-weight", type=float, default=0.0, help="weight of the pixel-difference L1 term")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this trained diffusers VAE folder (its architecture overrides --channels/--groups)")
    ap.add_argument("--decoder-only", action="store_true", help="freeze the encoder (needs --init); keeps the latent space")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (fast on CPUs with AMX)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=100)
    args = ap.parse_args(argv)
    if args.decoder_only and args.init is None:
        ap.error("--decoder-only needs --init: a frozen encoder must come from a trained VAE")
    setup(args.seed, args.threads)
    log = Logger(args.run_dir / "log.jsonl")

    train = images_tensor(args.n_train, args.seed)
    val = images_tensor(args.n_val, args.seed + 1000)
    if args.init is not None:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(str(args.init), torch_dtype=torch.float32)
    else:
        vae = build_vae(tuple(args.channels), args.groups)
    if args.decoder_only:
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    step, train_seconds = resume(args.run_dir, g, model=vae, opt=opt)
    print(f"vae: {param_count(vae):,} params, {args.n_train} train images", flush=True)

    def checkpoint() -> None:
        save_checkpoint(args.run_dir / "ckpt.pt", model=vae.state_dict(), opt=opt.state_dict(),
                        gen=g.get_state(), step=step, train_seconds=train_seconds + time.time() - t_loop, args=vars(args))

    vae.train()
    t_loop = time.time()
    bar = tqdm(total=args.steps, initial=step, mininterval=10, disable=None)
    while step < args.steps:
        idx = torch.randint(0, len(train), (args.batch,), generator=g)
        x = to_float(train[idx])
        if torch.rand((), generator=g) < 0.5:
            x = x.flip(-1)
        if args.crop < 64:  # fully convolutional: train on random crops (4-px aligned), 64/crop squared cheaper
            oy, ox = (torch.randint(0, (64 - args.crop) // 4 + 1, (2,), generator=g) * 4).tolist()
            x = x[:, :, oy:oy + args.crop, ox:ox + args.crop]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            with torch.set_grad_enabled(not args.decoder_only):
                posterior = vae.encode(x).latent_dist
            rec = vae.decode(posterior.sample(generator=g)).sample
        loss, parts = vae_loss(x, rec.float(), posterior, args.colour_weight, args.kl_weight, args.edge_weight)
        elapsed = train_seconds + time.time() - t_loop
        optimizer_step(opt, loss, trainable, args.lr * lr_factor(step, args.steps, elapsed, args.max_minutes))
        step += 1
        bar.update(1)
        if step % args.log_every == 0:
            log(step=step, loss=loss.item(), lr=opt.param_groups[0]["lr"], **{k: v.item() for k, v in parts.items()})
        if checkpoint_or_stop(step, args.ckpt_every, args.max_minutes, train_seconds + time.time() - t_loop, checkpoint):
            break
    bar.close()
    checkpoint()
    metrics = {"psnr_val_db": psnr(vae, val), "steps": step, "params": param_count(vae),
               "channels": list(vae.config.block_out_channels),
               "train_minutes": round((train_seconds + time.time() - t_loop) / 60, 1),
               "colour_weight": args.colour_weight, "crop": args.crop, "batch": args.batch, "kl_weight": args.kl_weight,
               "edge_weight": args.edge_weight, "init": str(args.init) if args.init else None,
               "decoder_only": args.decoder_only}
    if args.init is not None and (args.init / "training_metrics.json").is_file():
        metrics["init_metrics"] = json.loads((args.init / "training_metrics.json").read_text())
    # a frozen encoder keeps the latent scale the UNet was trained with
    scale = vae.config.scaling_factor if args.decoder_only else 1.0 / latent_std(vae, val)
    metrics["scaling_factor"] = scale
    log(step=step, **{k: v for k, v in metrics.items() if isinstance(v, float)})
    (args.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if args.out is not None:
        export(vae, args.out, scale)
        (args.out / "training_metrics.json").write_text(json.dumps(metrics, indent=1))
        print(f"wrote {args.out}", flush=True)
    return metrics


if __name__ == "__main__":
    main()
