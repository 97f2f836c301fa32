"""The ShapesWorld erasure benchmark (see shapesworld/erasure_benchmark.py): single identities,
five at once and all identities at once; no erasure vs keyword blacklist vs SAE steering vs ItD, and
ItD with the score averaged over the prompt's own tokens (``itd-prompt``; ``--no-prompt-score`` skips it).

    python bench/bench_demo_erasure.py                    # ~15-30 min on 2 CPU cores
    python bench/bench_demo_erasure.py --single 2 --seeds 0   # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itd_core.bundle import load_bundle  # noqa: E402
from shapesworld import erasure_benchmark, world  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=3, help="how many identities to erase one at a time")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(erasure_benchmark.SEEDS), help="seed slots of the retained-identity and object prompts (each prompt x slot gets its own seed)")
    parser.add_argument("--target-seeds", type=int, nargs="+", default=list(erasure_benchmark.TARGET_SEEDS),
                        help="seed slots of the erased names' prompts and their adversarial variants (6 x 5 prompts = 30 target images per identity)")
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--guidance", type=float, default=6.0)
    parser.add_argument("--strength", type=float, default=-8.0, help="deactivation strength of the selected features (paper: -8)")
    parser.add_argument("--top-n", type=int, default=128, help="top-N features per prompt in the ItD selection")
    parser.add_argument("--skip-groups", action="store_true", help="only the single-identity scenarios")
    parser.add_argument("--no-prompt-score", action="store_true", help="skip the itd-prompt method (a fifth of the time)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    bundle = load_bundle("demo")
    scenarios = [(f"single identity: {name}", [name]) for name in world.IDENTITIES[: args.single]]
    if not args.skip_groups:
        scenarios += [("five identities at once", world.IDENTITIES[:5]), (f"all {len(world.IDENTITIES)} identities at once", world.IDENTITIES)]
    methods = erasure_benchmark.METHODS + (() if args.no_prompt_score else (erasure_benchmark.PROMPT_SCORE_METHOD,))
    report = []
    for title, erased in scenarios:
        started = time.perf_counter()
        config = erasure_benchmark.build_config(bundle, erased, top_n=args.top_n, strength=args.strength)
        outcome = erasure_benchmark.run(bundle, erased, seeds=args.seeds, target_seeds=args.target_seeds, n_objects=args.objects, guidance=args.guidance, config=config, methods=methods,
                                        progress=lambda message: print(f"  {message}", file=sys.stderr))
        print(erasure_benchmark.markdown_table(title, outcome) + f"\n\n({time.perf_counter() - started:.0f} s)\n", flush=True)
        report.append({"scenario": title, "erased": outcome["erased"], "strength": args.strength, "top_n": args.top_n,
                       "n_by_group": outcome["n_by_group"], "results": [vars(r) for r in outcome["results"]],
                       "calibration": {method: [c.calibration.model_dump() for c in variant.concepts]
                                       for method, variant in outcome["configs"].items() if method != "steering"}})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
