"""Many concepts at once, and bf16 decisions on real prompts (issue #17 items 2 and 3).

    python bench/bench_scale.py                 # part A (524k latents, random weights) and part B (the demo)
    python bench/bench_scale.py --skip-a        # the demo only (about two minutes)

Part A: a random-weight CLIP ViT-L/14 text tower (layer 8) and a random SAE 768 x 524,288 (k=64), 8 prompts x 77
tokens; 1, 10, 50 and 100 concepts of 128 features each, drawn from the latents that fire on the prompts;
thresholds between the prompts' scores. Median time of ``Deactivator.apply`` (fp32) against one concept.

Part B: the demo with every world concept erased at once (14 characters, 8 artists, unsafe), built with the
recommended method (as ``bench/bench_redteam.py``): the erasure path's time on a batch of prompts and the
classifier's false-positive rate on retain prompts that name no concept (the world's object prompts and people
outside the world) as concepts are added (1, 5, 10, 23); then fp32 against bf16 SAE weights, decision by
decision, over real prompts: the shipped COCO, DiffusionDB and celebrity sets and the world's captions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_erasure import PROMPTS, clip_large_activations, timed  # noqa: E402
from bench.memory import peak_extra_bytes  # noqa: E402
from itd_core.deactivation import ConceptFeatures, Deactivator  # noqa: E402
from itd_core.sae import SAEConfig, TopKSAE  # noqa: E402

COUNTS = (1, 10, 50, 100)
HELD_OUT = 2000  # real prompts from here on: past the COCO captions on the demo's retain side


def median_seconds(fn, repeats: int) -> float:
    return timed(fn, repeats, "cpu")[0]


def part_a(latents: int, repeats: int) -> None:
    torch.set_grad_enabled(False)
    activations = clip_large_activations("cpu", PROMPTS)
    sae = TopKSAE.random(SAEConfig(d_model=768, n_latents=latents, k=64), seed=0)
    firing = sae.encode(activations[:, 1:]).indices.flatten().unique()
    generator = torch.Generator().manual_seed(0)
    rows = []
    for count in COUNTS:
        picks = firing[torch.randperm(len(firing), generator=generator)][: 128 * count] if 128 * count <= len(firing) else \
            torch.randperm(latents, generator=generator)[: 128 * count]
        concepts = [ConceptFeatures.uniform(f"c{i}", picks[i::count].tolist()) for i in range(count)]
        scores = Deactivator(sae, concepts).scores(activations)
        middle = scores.sort(dim=0).values[len(PROMPTS) // 2 - 1: len(PROMPTS) // 2 + 1].mean(0)
        deactivator = Deactivator(sae, [c.with_threshold(float(middle[i])) for i, c in enumerate(concepts)])
        seconds = median_seconds(lambda deactivator=deactivator: deactivator.apply(activations), repeats)
        peak = peak_extra_bytes(lambda deactivator=deactivator: deactivator.apply(activations), "cpu")
        rows.append((count, seconds, peak))
        print(f"  part A: {count} concept(s): {seconds:.3f} s", file=sys.stderr)
    print(f"\nPart A: SAE 768 x {latents:,}, k=64, 8 prompts x 77 tokens, fp32, CPU {torch.get_num_threads()} threads, medians of {repeats}\n")
    print("| concepts (128 features each) | erasure path s | vs one concept | peak extra memory of one call |")
    print("|---:|---:|---:|---:|")
    for count, seconds, peak in rows:
        print(f"| {count} | {seconds:.3f} | {seconds / rows[0][1]:.2f}x | {peak / 2**20:,.0f} MiB |")


def part_b(repeats: int, per_set: int) -> None:
    from itd_core.assets import prompt_set
    from itd_core.bundle import load_bundle
    from itd_core.prompts import read_prompts
    from shapesworld import demo, world
    from shapesworld import redteam_benchmark as rb

    torch.set_grad_enabled(False)
    bundle = load_bundle("demo")
    names = list(world.IDENTITIES) + list(world.ARTISTS) + ["unsafe"]
    started = time.monotonic()
    config = rb.build_config(bundle, names, "recommended")
    print(f"  part B: config for {len(names)} concepts built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    sets = demo.prompt_sets()
    retain = list(sets[demo.RETAIN_SET]) + list(sets[demo.OUTSIDE_SET])
    batch = bundle.adapter.tokenize(retain[:64])
    activations = bundle.adapter.capture(batch)
    rows = []
    for count in (1, 5, 10, len(names)):
        subset = config.model_copy(update={"concepts": config.concepts[:count]})
        deactivator = subset.deactivator(bundle.sae)
        seconds = median_seconds(lambda deactivator=deactivator: deactivator.apply(activations, prompt_mask=batch.prompt_mask), repeats)
        peak = peak_extra_bytes(lambda deactivator=deactivator: deactivator.apply(activations, prompt_mask=batch.prompt_mask), "cpu")
        scores = deactivator.score_prompts(bundle.adapter, retain)
        fpr = float((scores >= deactivator.threshold_tensor()).any(dim=1).float().mean())
        rows.append((count, seconds, fpr, peak))
    print(f"\nPart B: the demo, every world concept erased at once (recommended method), {len(retain)} retain prompts naming none\n")
    print("| concepts | erasure path s (64 prompts) | vs one concept | retain prompts edited | peak extra memory of one call |")
    print("|---:|---:|---:|---:|---:|")
    for count, seconds, fpr, peak in rows:
        print(f"| {count} | {seconds:.4f} | {seconds / rows[0][1]:.2f}x | {100 * fpr:.1f}% | {peak / 2**20:,.1f} MiB |")

    real = {name: read_prompts(prompt_set(name))[HELD_OUT:HELD_OUT + per_set] for name in ("coco_5k", "diffusiondb_5k")}
    real["celebrity_target"] = read_prompts(prompt_set("celebrity_target"))[:per_set]  # 250 in all
    real["ShapesWorld captions"] = [s.caption for s in world.generate(per_set, seed=99)]
    full = config.deactivator(bundle.sae)
    half = config.deactivator(bundle.sae.copy_as(torch.bfloat16))
    screened = config.deactivator(bundle.sae.copy_as(torch.float32).screen_in_bf16())
    print(f"\nbf16 against fp32 SAE weights, the {len(names)}-concept config, decision by decision:\n")
    print("| prompts | n | edited (fp32) | bf16: decisions differing | fp32 behind the bf16 screen: differing |")
    print("|---|---:|---:|---:|---:|")
    total, differing = 0, [0, 0]
    for name, prompts in real.items():
        a = full.score_prompts(bundle.adapter, prompts) >= full.threshold_tensor()
        diffs = [int(((d.score_prompts(bundle.adapter, prompts) >= d.threshold_tensor()) != a).any(dim=1).sum()) for d in (half, screened)]
        total, differing = total + len(prompts), [x + y for x, y in zip(differing, diffs)]
        print(f"| {name} | {len(prompts)} | {int(a.any(dim=1).sum())} | {diffs[0]} | {diffs[1]} |")
    print(f"| all | {total} | | {differing[0]} | {differing[1]} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=524288)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-set", type=int, default=300, help="real prompts per set in the bf16 check")
    parser.add_argument("--skip-a", action="store_true")
    parser.add_argument("--skip-b", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_a:
        part_a(args.latents, args.repeats)
    if not args.skip_b:
        part_b(args.repeats, args.per_set)
    return 0


if __name__ == "__main__":
    sys.exit(main())
