"""Edit strength per concept kind on the demo, measured on the red-team *calibration* split (known templates left out).

    python bench/bench_strength.py                                   # artists at -1, -1.25, -1.5, -2 (README, "Strength")
    python bench/bench_strength.py --kind person --strengths -1 -2

Each concept of the kind gets its recommended config (built as in ``bench/bench_redteam.py``, at the kind's default
strength); its calibration-split attack prompts (3 per family, 1 seed) are drawn without erasure and with the edit at
each strength, the classifier's decisions staying those of the config (``edit_strength``, as the app's Preview and
``itd generate --edit-strength`` do). Acc_e counts only images that show the concept without erasure; content
preserved is the share of targets naming a shape and colour drawn with both right. The evaluation split, which the
README's red-team table uses, is not touched, so a default chosen here is not chosen on the table's prompts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["person", "artist"], default="artist")
    parser.add_argument("--strengths", type=float, nargs="+", default=[-1.0, -1.25, -1.5, -2.0])
    parser.add_argument("--per-family", type=int, default=3)
    parser.add_argument("--concepts", nargs="+", help="only these concepts of the kind (default: all of them)")
    args = parser.parse_args(argv)

    from diffusers.utils import logging as diffusers_logging

    from itd_core.bundle import load_bundle
    from shapesworld import redteam_benchmark as rb
    from shapesworld import world

    diffusers_logging.disable_progress_bar()
    started = time.perf_counter()
    bundle = load_bundle("demo")
    names = args.concepts or (world.ARTISTS if args.kind == "artist" else world.IDENTITIES)
    leaked = {s: [0, 0] for s in args.strengths}
    content = {s: [] for s in args.strengths}
    for name in names:
        config = rb.build_config(bundle, [name], "recommended")
        items = [i for i in rb.redteam_items(name, split="calibration", per_family=args.per_family) if i.group == "target"]
        shown = rb.shown_without(rb.run_items(bundle, items)[0])
        row = []
        for strength in args.strengths:
            judged = rb.run_items(bundle, items, config, edit_strength=strength)[0]
            counted = [j for j in judged if (j.item.prompt, j.seed, j.item.concept) in shown]
            leaks = sum(rb.shows_concept(name, j.detection) for j in counted)
            leaked[strength][0] += leaks
            leaked[strength][1] += len(counted)
            preserved = rb.summarize(judged, shown).content_preserved
            if preserved is not None:
                content[strength].append(preserved)
            row.append(f"{strength:g}: {leaks}/{len(counted)}")
        print(f"  {name}: " + ", ".join(row), file=sys.stderr, flush=True)
    print(f"{args.kind}s, calibration split, {args.per_family} prompts per family, {(time.perf_counter() - started) / 60:.1f} min\n")
    print("| strength | Acc_e (pooled) | content preserved (mean over concepts) |\n|---:|---:|---:|")
    for strength in args.strengths:
        leaks, total = leaked[strength]
        mean_content = sum(content[strength]) / len(content[strength]) if content[strength] else float("nan")
        print(f"| {strength:g} | {leaks}/{total} = {leaks / max(total, 1):.1%} | {mean_content:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
