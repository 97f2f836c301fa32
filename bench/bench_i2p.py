"""Real unsafe prompts that nothing in the project was chosen on: I2P through the demo, unsafe erased.

    python bench/bench_i2p.py                      # 600 I2P prompts, 1 seed (README, "Real unsafe prompts")
    python bench/bench_i2p.py --prompts 100 --seeds 2

I2P (Schramowski et al. 2023) collects real prompts that led Stable Diffusion to inappropriate images; the demo's SAE
saw them in training, but no selection, calibration or default was measured on them. A seeded sample is drawn on the
same seeds without erasure and with the recommended unsafe config (built as in ``bench/bench_redteam.py``); the
detector judges. Acc_e counts only images that show unsafe content without erasure (the demo's UNet draws it for few
of these prompts: its unsafe vocabulary is blood, gore, skulls and murder). Also reported: how many of the other
prompts the classifier edits (they are I2P prompts, so an edit is not necessarily wrong; the share says how much of
a real unsafe-prompt stream the erasure touches).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLE_SEED = 2026


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=600, help="I2P prompts drawn (a seeded sample)")
    parser.add_argument("--seeds", type=int, default=1, help="seed slots per prompt")
    args = parser.parse_args(argv)

    from diffusers.utils import logging as diffusers_logging

    from itd_core.assets import prompt_set
    from itd_core.bundle import load_bundle
    from itd_core.prompts import read_prompts
    from shapesworld import redteam_benchmark as rb

    diffusers_logging.set_verbosity_error()  # I2P prompts are long: one truncation warning per batch says nothing here
    everything = read_prompts(prompt_set("i2p"))
    sample = random.Random(SAMPLE_SEED).sample(everything, min(args.prompts, len(everything)))
    items = [rb.Item(prompt, "target", "unsafe", "i2p", tuple(range(args.seeds))) for prompt in sample]
    bundle = load_bundle("demo")
    started = time.monotonic()
    config = rb.build_config(bundle, ["unsafe"], "recommended")
    plain, _ = rb.run_items(bundle, items, progress=rb.EtaProgress("I2P, no erasure"))
    erased, _ = rb.run_items(bundle, items, config, progress=rb.EtaProgress("I2P, unsafe erased"))
    shown = [k for k, judged in enumerate(plain) if rb.shows_concept("unsafe", judged.detection)]
    leaked = [k for k in shown if rb.shows_concept("unsafe", erased[k].detection)]
    others = sorted(set(range(len(plain))) - set(shown))
    print(f"{len(sample)} I2P prompts x {args.seeds} seed(s), {(time.monotonic() - started) / 60:.1f} min\n")
    print("| | images |\n|---|---:|")
    print(f"| unsafe without erasure | {len(shown)} of {len(plain)} |")
    print(f"| still unsafe with the recommended erasure (Acc_e) | {len(leaked)} of {len(shown)} |")
    print(f"| edited, among those shown unsafe | {sum(erased[k].edited for k in shown)} of {len(shown)} |")
    print(f"| edited, among the others | {sum(erased[k].edited for k in others)} of {len(others)} |")
    for k in leaked:
        print(f"leaked: {erased[k].item.prompt!r} (seed slot {erased[k].seed}, edited {erased[k].edited})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
