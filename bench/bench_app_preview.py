"""Preview in the real browser: from the click on Generate to the settled page, against the library's own time.

    python bench/bench_app_preview.py                # 2 prompts x 20 steps on the demo, 1 warm-up + 5 timed clicks

Starts ``streamlit run app.py`` on the demo (fresh sets/cache/index folders; the set holds Mira Castellane erased
with the recommended method, calibrated), opens the Preview page in headless Chromium (Playwright), and times each
click on Generate until the run has ended and the side-by-side download button is there. Every click uses new seeds,
so nothing comes from the generation cache. The same pairs are then timed in-process with
:func:`itd_core.pipeline.generate_side_by_side` (no cache), which is what the page calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
PROMPTS = ["A portrait of Mira Castellane", "a red circle on a white background"]


def _prepare_set(folder: Path) -> Path:
    """The app's default set for the demo SAE: Mira Castellane, recommended method, calibrated."""
    from app_support.settings import sets_folder
    from itd_core.bundle import load_bundle
    from shapesworld import redteam_benchmark as rb

    bundle = load_bundle("demo")
    config = rb.build_config(bundle, ["Mira Castellane"], "recommended")
    target = sets_folder(bundle.fingerprint, {"ITD_SETS_DIR": str(folder / "sets")}) / "default.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(config.to_json())
    return target


def _library_seconds(set_file: Path, clicks: int, steps: int) -> list[float]:
    """The page's work in-process: one :func:`generate_side_by_side` per prompt (as Preview calls it), no cache."""
    from itd_core.bundle import load_bundle
    from itd_core.erasure_config import ErasureConfig
    from itd_core.pipeline import GenerationSettings, generate_side_by_side

    bundle = load_bundle("demo")
    config = ErasureConfig.load(set_file)
    settings = GenerationSettings(steps=steps)
    seconds = []
    for click in range(clicks + 1):
        started = time.perf_counter()
        for prompt in PROMPTS:
            generate_side_by_side(bundle.pipeline, config, bundle.sae, [prompt], [100 + click], settings, model_id=bundle.model_id)
        if click:
            seconds.append(time.perf_counter() - started)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from app_support.serving import app_server

    folder = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    set_file = _prepare_set(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "ITD_SETS_DIR": str(folder / "sets"),
           "ITD_CACHE_DIR": str(folder / "cache"), "ITD_INDEX_DIR": str(folder / "index")}
    timings: list[float] = []
    with app_server(env, folder / "streamlit.log") as (url, _):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(600_000)
            page.goto(f"{url}/preview")
            page.get_by_role("heading", name="Preview").first.wait_for()
            status = page.locator('[data-testid="stStatusWidget"]')

            def settle() -> None:
                page.wait_for_timeout(100)
                status.wait_for(state="hidden")

            settle()
            box = page.get_by_label("Prompts (targets and non-targets, one per line)", exact=True)
            box.fill("\n".join(PROMPTS))
            box.press("Control+Enter")
            settle()
            if args.steps != 20:
                raise SystemExit("only the page's default of 20 steps is measured")
            for click in range(args.clicks + 1):  # the first click is the warm-up (the pipeline loads)
                seeds = page.get_by_label("Seeds", exact=True)
                seeds.fill(str(100 + click))
                seeds.press("Enter")
                settle()
                started = time.perf_counter()
                page.get_by_role("button", name="Generate").first.click()
                for prompt in PROMPTS:  # the results of this click: each row names its prompt and the new seed
                    page.get_by_text(f"{prompt} · seed {100 + click}").first.wait_for()
                page.get_by_role("button", name="Download the side-by-side grid (PNG)").wait_for()
                settle()
                if click:
                    timings.append(time.perf_counter() - started)
                print(f"click {click}: {time.perf_counter() - started:.2f} s{' (warm-up)' if not click else ''}", file=sys.stderr)
            browser.close()

    library = _library_seconds(set_file, args.clicks, args.steps)
    print(f"Preview, 2 prompts x {args.steps} steps (warm, no cache), {args.clicks} clicks:")
    print(f"  browser, click to settled page: median {statistics.median(timings):.2f} s (min {min(timings):.2f}, max {max(timings):.2f})")
    print(f"  library, generate_side_by_side: median {statistics.median(library):.2f} s (min {min(library):.2f}, max {max(library):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
