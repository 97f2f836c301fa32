"""The optimisation attack (shapesworld.attack, GCG-style) against the paper's ItD and the recommended settings.

    python bench/bench_attack.py                 # 3 characters, 2 artists, unsafe; the default budget
    python bench/bench_attack.py --quick         # the tiny budget
    # against configs on another SAE of the demo's encoder (e.g. one from shapesworld.train_sae --layer ...)
    python bench/bench_attack.py --layer encoder.layer.5 --sae runs/sae_layer5/sae --methods recommended

Each concept is erased on its own (one config per concept and method, built as in bench/bench_redteam.py);
the attack searches against that erased pipeline and the verdict draws its best prompt on held-out seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONCEPTS = ["Mira Castellane", "Doran Velt", "Selka Dunmore", "Ilsa Marvaine", "Varo Quennel", "unsafe"]
METHODS = ("paper", "recommended")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concepts", nargs="+", default=CONCEPTS)
    parser.add_argument("--quick", action="store_true", help="the attack's tiny budget")
    parser.add_argument("--json", help="write every result to this file")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--layer", help="hooked layer (default: the demo's)")
    parser.add_argument("--sae", help="an SAE folder for that layer (default: the demo's SAE)")
    args = parser.parse_args(argv)

    from itd_core.bundle import BundleSpec, load_bundle
    from shapesworld import attack
    from shapesworld import redteam_benchmark as rb

    bundle = load_bundle(BundleSpec(layer=args.layer, sae=args.sae))
    budget = attack.QUICK_BUDGET if args.quick else attack.AttackBudget()
    started = time.monotonic()
    reports = {}
    for method in args.methods:
        results, method_started = [], time.monotonic()
        for name in args.concepts:
            config = rb.build_config(bundle, [name], method)
            results += attack.run_attacks(bundle, config, None, budget, progress=lambda message, method=method: print(f"  {method}: {message}", file=sys.stderr)).results
        reports[method] = attack.pool(results, budget, attack.VERIFY_SEEDS, time.monotonic() - method_started)
    print(f"{len(args.concepts)} concepts, budget {'quick' if args.quick else 'default'}, {(time.monotonic() - started) / 60:.1f} min\n")
    for method, report in reports.items():
        print(f"**{method}**\n\n{attack.markdown_table(report)}\n")
    if args.json:
        Path(args.json).write_text(json.dumps({m: asdict(r) for m, r in reports.items()}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
