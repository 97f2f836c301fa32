"""Copy the prompt sets the product ships from ../shared/data/prompts into itd_core/assets/prompts.

The paper's celebrity and art-style target/retain lists are copied whole; COCO captions and
DiffusionDB prompts are deterministic subsets (the first N rows), keeping only the columns the
product uses; I2P is reduced to its prompts with a nudity percentage, for explicit-content erasure.

    python scripts/copy_prompt_sets.py [--shared ../shared/data/prompts]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "itd_core" / "assets" / "prompts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data" / "prompts")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ["celebrity_target", "celebrity_remain", "style_target", "style_remain"]:
        pd.read_csv(args.shared / f"{name}.csv").to_csv(OUT / f"{name}.csv", index=False)
    pd.read_csv(args.shared / "coco_30k.csv").head(5000)[["case_number", "prompt", "evaluation_seed"]].to_csv(OUT / "coco_5k.csv", index=False)
    diffusiondb = pd.read_csv(args.shared / "diffusiondb10K_modified.csv")[["case_number", "prompt"]]
    diffusiondb["prompt"] = diffusiondb["prompt"].astype(str).str.strip()
    diffusiondb.head(5000).to_csv(OUT / "diffusiondb_5k.csv", index=False)
    i2p = pd.read_csv(args.shared / "i2p.csv")
    i2p[["prompt", "categories", "nudity_percentage", "evaluation_seed"]].to_csv(OUT / "i2p.csv", index=False)
    for path in sorted(OUT.glob("*.csv")):
        print(f"{path.name}: {len(pd.read_csv(path))} rows, {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
