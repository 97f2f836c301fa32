"""Measure ShapesWorld: detector accuracy, VAE ceiling, generation accuracy and speed.

* **detector**: per-head accuracy on clean held-out world images (stream ``HELD_OUT_SEED``);
* **VAE ceiling**: the same accuracy on VAE-reconstructed images (encode -> decode), i.e. the
  best the generator could score as judged by the detector, plus PSNR; counted, like the
  generation figures, over the images whose caption names the attribute;
* **generation**: images for held-out captions (stream ``HELD_OUT_SEED + 1``) at each guidance
  scale, 20 steps of the pipeline's scheduler, fixed seeds; per attribute, the share of prompts naming it whose image
  the detector reads as that value (shape, colour, artist style, identity, unsafe), and per
  artist and per character;
* **timing**: a 2-prompt 20-step generation at 64 px after warm-up (median of 5).

Results go to ``assets/metrics.json`` together with the training metrics of each model.

    python -m shapesworld.evaluate --guidance 4 7.5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import detector as D
from . import world
from .pipeline import PIPELINE_DIR, load_pipeline

ASSETS = Path(__file__).parent / "assets"
METRICS_PATH = ASSETS / "metrics.json"
HELD_OUT_SEED = 424242
ATTRS = ["shape", "colour", "artist", "identity", "unsafe"]


def _truth(labels: dict, attr: str):
    return bool(labels["unsafe"]) if attr == "unsafe" else labels[attr]


def score(detections: list[dict], labels: list[dict], attrs=ATTRS, only_mentioned: bool = True) -> dict:
    """Share of images whose detected value equals the truth, per attribute (``n_<attr>`` = count)."""
    out: dict = {}
    for a in attrs:
        pairs = [(d[a], _truth(lab, a)) for d, lab in zip(detections, labels)
                 if (a in lab.get("mentions", []) if only_mentioned else True)]
        if pairs:
            out[a] = sum(p == t for p, t in pairs) / len(pairs)
            out[f"n_{a}"] = len(pairs)
    return out


def accuracy_by_value(detections: list[dict], labels: list[dict], attr: str) -> dict[str, float]:
    """Per true value of ``attr`` (each artist, each character), the share of images that name it and show it."""
    hits: dict[str, list[int]] = {}
    for d, lab in zip(detections, labels):
        if attr in lab.get("mentions", []):
            tally = hits.setdefault(lab[attr], [0, 0])
            tally[0] += d[attr] == lab[attr]
            tally[1] += 1
    return {value: right / n for value, (right, n) in sorted(hits.items())}


@torch.no_grad()
def vae_ceiling(vae, n: int = 1000, seed: int = HELD_OUT_SEED) -> dict:
    """Detector accuracy on held-out world images and on their VAE reconstructions, and PSNR.

    The headline figures count, per attribute, only images whose caption names it -- the same
    population as the generation figures, so the reconstruction figure is the generator's
    ceiling. ``all_images`` also counts images that do not name it (mostly the easy "no style"
    / "no character" reading), as the detector's own validation does.
    """
    samples = world.generate(n, seed)
    imgs = np.stack([s.image for s in samples])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    dtype = next(vae.parameters()).dtype
    recs = []
    for i in range(0, n, 200):
        z = vae.encode(x[i:i + 200].to(dtype)).latent_dist.mode()
        recs.append(vae.decode(z).sample.float().clamp(-1, 1))
    rec = torch.cat(recs)
    mse = ((rec - x) / 2 * 255).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-6)
    rec_u8 = ((rec + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    labels = [s.labels for s in samples]
    detections = {"originals": D.detect(imgs), "reconstructions": D.detect(rec_u8)}
    return {"psnr_db": float((10 * torch.log10(255.0 ** 2 / mse)).mean()), "n": n,
            **{f"detector_on_{k}": score(d, labels) for k, d in detections.items()},
            "by_value": {k: {a: accuracy_by_value(d, labels, a) for a in ("artist", "identity")}
                         for k, d in detections.items()},
            "all_images": {k: score(d, labels, only_mentioned=False) for k, d in detections.items()}}


def held_out_prompts(n: int, seed: int = HELD_OUT_SEED + 1) -> list[world.Sample]:
    """Held-out world captions (never in a training stream), all kinds."""
    return world.generate(n, seed)


@torch.no_grad()
def generation_accuracy(pipe, samples: list[world.Sample], guidance: float, steps: int = 20, batch: int = 64,
                        seed: int = 0) -> tuple[dict, np.ndarray]:
    """Generate one image per caption (seed ``seed + i``) and score the detector's reading of it."""
    images = []
    for i in range(0, len(samples), batch):
        chunk = samples[i:i + batch]
        gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(chunk))]
        out = pipe([s.caption for s in chunk], num_inference_steps=steps, guidance_scale=guidance, height=64,
                   width=64, generator=gens, output_type="np")
        images.append((out.images * 255).round().clip(0, 255).astype(np.uint8))
    imgs = np.concatenate(images)
    detections, labels = D.detect(imgs), [s.labels for s in samples]
    result = score(detections, labels)
    result["by_value"] = {a: accuracy_by_value(detections, labels, a) for a in ("artist", "identity")}
    return result, imgs


def time_pair(pipe, prompts=("a red circle", "A portrait of Mira Castellane"), steps: int = 20,
              guidance: float = 7.5, repeats: int = 5) -> float:
    """Median seconds for one call generating ``prompts`` side by side, after one warm-up call."""
    kw = dict(num_inference_steps=steps, guidance_scale=guidance, height=64, width=64, output_type="pil")
    pipe(list(prompts), generator=torch.Generator().manual_seed(0), **kw)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        pipe(list(prompts), generator=torch.Generator().manual_seed(r), **kw)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary_markdown(results: dict) -> str:
    """The headline figures of ``results`` (``main``'s output) as a markdown table."""
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    det = ((results.get("training") or {}).get("detector") or {}).get("val_accuracy_clean", {})
    ceil = results["vae_ceiling"]["detector_on_reconstructions"]
    clean = results["vae_ceiling"]["detector_on_originals"]
    rows = ["| attribute | detector, clean held-out (all images) | detector, clean images naming it | VAE ceiling | " +
            " | ".join(f"generated, guidance {g}" for g in results["generation"]["by_guidance"]) + " |",
            "|---|---|---|---|" + "---|" * len(results["generation"]["by_guidance"])]
    for a, head in [("shape", "shape"), ("colour", "colour"), ("artist", "style"), ("identity", "identity"),
                    ("unsafe", "unsafe")]:
        gen = [pct(v.get(a)) + f" (n={v.get('n_' + a, 0)})" for v in results["generation"]["by_guidance"].values()]
        rows.append(f"| {a} | {pct(det.get(head))} | {pct(clean.get(a))} | {pct(ceil.get(a))} | " + " | ".join(gen) + " |")
    first = next(iter(results["generation"]["by_guidance"].values()))
    ceiling_by_value = results["vae_ceiling"].get("by_value", {}).get("reconstructions", {})
    for attr in ("artist", "identity"):
        per = [f"{value} {pct(v)} (ceiling {pct(ceiling_by_value.get(attr, {}).get(value))})"
               for value, v in first.get("by_value", {}).get(attr, {}).items()]
        if per:
            rows.append(f"\n{attr} by value, first guidance: " + ", ".join(per))
    rows.append(f"\nVAE PSNR {results['vae_ceiling']['psnr_db']:.1f} dB; a 2-prompt 20-step 64-px generation takes "
                f"{results['timing']['pair_20_steps_64px_seconds']:.2f} s on CPU after warm-up.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-prompts", type=int, default=1200,
                    help="held-out captions (1200: 35-58 per artist, so a per-artist share has a standard error of 5-8 points)")
    ap.add_argument("--n-vae", type=int, default=1000)
    ap.add_argument("--guidance", type=float, nargs="+", default=[4.0, 7.5])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=METRICS_PATH)
    ap.add_argument("--grid", type=Path, default=None, help="also save a PNG grid of the first 64 generations")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    pipe = load_pipeline("cpu", torch.float32)
    det_cfg = _read(D.ASSET_DIR / D.CONFIG_NAME) or {}
    results: dict = {
        "training": {
            "detector": det_cfg.get("metrics"),
            "vae": _read(PIPELINE_DIR / "vae" / "training_metrics.json"),
            "unet": _read(PIPELINE_DIR / "unet" / "training_metrics.json"),
        },
    }
    results["vae_ceiling"] = vae_ceiling(pipe.vae, args.n_vae)
    print("vae ceiling:", json.dumps(results["vae_ceiling"]), flush=True)
    samples = held_out_prompts(args.n_prompts)
    results["generation"] = {"n_prompts": args.n_prompts, "steps": 20, "by_guidance": {}}
    for gs in args.guidance:
        t0 = time.time()
        acc, imgs = generation_accuracy(pipe, samples, gs)
        acc["seconds"] = round(time.time() - t0, 1)
        results["generation"]["by_guidance"][str(gs)] = acc
        print(f"guidance {gs}:", json.dumps(acc), flush=True)
        if args.grid:
            from PIL import Image

            k = min(64, len(imgs))
            rows = [np.concatenate(list(imgs[r:r + 8]), 1) for r in range(0, k - k % 8, 8)]
            Image.fromarray(np.concatenate(rows, 0)).save(args.grid.with_name(f"{args.grid.stem}_g{gs}.png"))
            (args.grid.with_name(f"{args.grid.stem}_captions.txt")).write_text(
                "\n".join(s.caption for s in samples[:k]))
    results["timing"] = {"pair_20_steps_64px_seconds": time_pair(pipe), "threads": args.threads}
    print("timing:", results["timing"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}", flush=True)
    print(summary_markdown(results), flush=True)
    return results


if __name__ == "__main__":
    main()
