"""Train the demo SAE: a TopK SAE on ShapesWorld's text encoder (all-MiniLM-L6-v2, layer
``encoder.layer.3``) with the core's own trainer, over the world's captions plus real prompt sets.

Corpus (deterministic): world captions from a dedicated stream, every identity/artist/unsafe
erasure prompt, and the shipped real prompt sets (COCO captions, DiffusionDB prompts, the paper's
celebrity and style lists, I2P), deduplicated and shuffled with the seed.

    python -m shapesworld.train_sae                    # ~15 min on 2 CPU cores; resumable
    python -m shapesworld.train_sae --export-only      # re-export runs/demo_sae/sae into the assets
    # the same recipe on another layer (kept in the run folder, never exported over the demo's SAE)
    python -m shapesworld.train_sae --layer encoder.layer.5 --run-dir runs/sae_layer5

The SAE is exported to ``shapesworld/assets/sae/`` (native format, fp16 weights: loads exactly
into fp32), its training metrics to ``shapesworld/assets/sae_metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from shapesworld import world
from shapesworld.text_encoder import HOOK_LAYER

ASSETS = Path(__file__).parent / "assets"
SAE_DIR = ASSETS / "sae"
METRICS_PATH = ASSETS / "sae_metrics.json"
CORPUS_SEED = 7
REAL_SETS = ["coco_5k", "diffusiondb_5k", "celebrity_target", "celebrity_remain", "style_target", "style_remain", "i2p"]


def corpus(n_world: int = 30000, seed: int = CORPUS_SEED) -> list[str]:
    from itd_core.assets import prompt_set
    from itd_core.prompts import read_prompts

    prompts = [s.caption for s in world.generate(n_world, seed=seed)]
    sets = world.erasure_prompts()
    prompts += [p for group in ("identity", "artist") for ps in sets[group].values() for p in ps]
    prompts += sets["unsafe"] + [r["prompt"] for r in sets["retain"]]
    for name in REAL_SETS:
        prompts += read_prompts(prompt_set(name))
    unique = sorted(set(p for p in prompts if p.strip()))
    random.Random(seed).shuffle(unique)
    return unique


def export(run_dir: Path) -> None:
    from itd_core.sae_formats import load_sae, save_sae
    from shapesworld.text_encoder import MODEL_ID

    sae = load_sae(run_dir / "sae")
    sae.config = sae.config.model_copy(update={"model_id": MODEL_ID.split(" ")[0]})  # not the local folder it was loaded from
    save_sae(sae.half(), SAE_DIR, format="native")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["model_id"] = sae.config.model_id
    metrics["exported_fp16_fingerprint"] = load_sae(SAE_DIR).fingerprint
    METRICS_PATH.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"exported {SAE_DIR} ({sum(p.stat().st_size for p in SAE_DIR.iterdir()) / 2**20:.1f} MiB) and {METRICS_PATH}")


def main(argv: list[str] | None = None) -> None:
    from itd_core.bundle import BundleSpec, load_adapter
    from itd_core.training import TrainingConfig, train_sae_from_prompts

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo_sae"))
    parser.add_argument("--latents", type=int, default=8192)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--world-captions", type=int, default=30000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument("--layer", default=HOOK_LAYER, help=f"hooked layer (default: the demo's, {HOOK_LAYER}); another one is not exported")
    args = parser.parse_args(argv)
    if not args.export_only:
        torch.set_num_threads(args.threads)
        adapter, _ = load_adapter(BundleSpec(layer=args.layer))
        prompts = corpus(args.world_captions)
        tokens_estimate = len(prompts) * (adapter.max_length - 1)
        steps = max(1, int(args.epochs * tokens_estimate / args.batch_size))
        print(f"corpus: {len(prompts)} prompts; about {tokens_estimate:,} tokens; {steps} steps")
        config = TrainingConfig(n_latents=args.latents, k=args.k, lr=args.lr, batch_size=args.batch_size, steps=steps,
                                warmup_steps=min(100, steps // 10), checkpoint_every=200, seed=CORPUS_SEED,
                                dead_steps_threshold=200, cache_batch_size=256)
        train_sae_from_prompts(adapter, prompts, args.run_dir, config)
    if args.layer == HOOK_LAYER:
        export(args.run_dir)
    else:
        print(f"trained on {args.layer}: the SAE is in {args.run_dir / 'sae'} (the demo's assets are for {HOOK_LAYER})")


if __name__ == "__main__":
    main()
