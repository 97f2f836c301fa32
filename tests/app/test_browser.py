"""End-to-end in a real browser: Debian's headless Chromium, driven by Playwright, against ``streamlit run app.py``.

The journey: open the app, inspect a prompt, search a concept, add its features, calibrate, preview side by
side, export the config, then check with ``itd classify`` that the downloaded config erases that concept.
A screenshot of every step goes to ``test-artifacts/browser/``; with ``ITD_UPDATE_SCREENSHOTS=1`` small
copies also go to ``docs/screenshots/`` (the README's pictures).

Runs on the ShapesWorld demo (the app's default) when its assets are all there, else on the tiny bundle
through the ``ITD_APP_*`` variables (the sidebar's defaults); ``ITD_BROWSER_BUNDLE=demo|tiny`` forces one.
Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it); Playwright never
downloads a browser here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app_support.serving import app_server
from itd_core.errors import ItdError

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOC_SHOTS = ROOT / "docs" / "screenshots"
STEP = 120_000  # ms: the first page load waits for the server to load the model
UPDATING = os.environ.get("ITD_UPDATE_SCREENSHOTS") == "1"

RETAIN = ["a red circle", "a large blue square", "a green star on a white background"]
NON_TARGET = "a red circle"
OTHERS = ["a portrait of a woman", "a cat on a sofa", "a painting of a lighthouse", "two small cyan hearts on a black background",
          "an oil painting of a harbour", "a sketch of a horse", "a yellow triangle on a grey background", "a purple ring"]


def _use_demo() -> bool:
    from tests.app.conftest import demo_ready

    choice = os.environ.get("ITD_BROWSER_BUNDLE", "auto")
    return choice == "demo" or (choice == "auto" and demo_ready())


def _concept() -> tuple[str, list[str]]:
    """The concept the journey erases: a ShapesWorld identity on the demo, a celebrity on the tiny bundle."""
    if _use_demo():
        from shapesworld.world import erasure_prompts

        name, prompts = next(iter(erasure_prompts()["identity"].items()))
        return name, list(prompts[:3])
    return "Tom Cruise", ["A portrait of Tom Cruise", "Tom Cruise in an official photo", "Tom Cruise at a public event"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_pipeline_dir, tiny_sae_dir):
    """``streamlit run app.py`` on a free port, stopped afterwards; yields (url, environment, tmp folder)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (.ci/run does)")
    pytest.importorskip("playwright.sync_api")
    folder = tmp_path_factory.mktemp("browser")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "ITD_SETS_DIR": str(folder / "sets"), "ITD_CACHE_DIR": str(folder / "cache"), "ITD_INDEX_DIR": str(folder / "index")}
    if not _use_demo():
        env.update(ITD_APP_MODEL=str(tiny_pipeline_dir), ITD_APP_SAE=str(tiny_sae_dir), ITD_APP_LAYER="1")
    try:
        with app_server(env, folder / "streamlit.log", start_timeout=60,
                        options=["--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", "--server.fileWatcherType", "none"]) as (url, _):
            yield url, env, folder
    except ItdError as error:
        pytest.fail(str(error))
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "streamlit.log", ARTIFACTS / "streamlit.log")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Journey:
    """Small helpers over a Playwright page of the app."""

    def __init__(self, page):
        self.page = page
        self.step = 0

    def idle(self, timeout: int = STEP) -> None:
        """Wait until the script run ends: the status widget hidden twice, 400 ms apart. A widget may send its
        value after a short debounce, so one look can fall between the key press and the rerun it starts."""
        status = self.page.locator('[data-testid="stStatusWidget"]')
        deadline = time.monotonic() + timeout / 1000
        while True:
            self.page.wait_for_timeout(400)
            status.wait_for(state="hidden", timeout=max(1, int((deadline - time.monotonic()) * 1000)))
            self.page.wait_for_timeout(400)
            if not status.is_visible():
                return

    def see(self, text: str, timeout: int = STEP) -> None:
        self.page.get_by_text(text).first.wait_for(timeout=timeout)

    def go(self, title: str) -> None:
        self.page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=title).click()
        self.page.get_by_role("heading", name=title if title != "Export / import" else "Export / import").first.wait_for(timeout=STEP)
        self.idle()

    def fill_area(self, label: str, text: str) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(text)
        box.press("Control+Enter")
        self.idle()

    def fill_input(self, label: str, text: str) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(text)
        box.press("Enter")
        self.idle()

    def clear_multiselect(self, label: str) -> None:
        widget = self.page.get_by_test_id("stMultiSelect").filter(has=self.page.get_by_text(label, exact=True))
        chips = widget.locator("[data-tag] span[title]")
        cut = chips.evaluate_all("spans => spans.filter(s => s.scrollWidth > s.clientWidth + 1 || s.textContent !== s.title).map(s => s.title)")
        assert not cut, f"chips of {label!r} cut off: {cut}"
        assert chips.count() or not widget.get_by_role("button", name="Clear all").count(), "the chips were found (markup of this Streamlit)"
        clear = widget.get_by_role("button", name="Clear all")
        if clear.count():
            clear.click()
            self.idle()

    def click(self, name: str) -> None:
        self.page.get_by_role("button", name=name).first.click()
        self.idle()

    def shot(self, name: str) -> Path:
        self.idle()
        self.step += 1
        print(f"[journey] {time.strftime('%H:%M:%S')} step {self.step}: {name}", flush=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.step:02d}-{name}.png"
        self.page.wait_for_timeout(500)  # code blocks and tables paint after the run ends
        self.page.screenshot(path=str(path), full_page=True)
        if UPDATING:
            _small_copy(path, DOC_SHOTS / f"{name}.png")
        return path


def _print_page_state(page, server_log: Path) -> None:
    """What the page shows in its messages, and the server log's tail: CI keeps the test output, not the screenshots."""
    for alert in page.get_by_test_id("stAlert").all() + page.get_by_test_id("stException").all():
        print(f"[journey] page message: {alert.inner_text()[:500]}", flush=True)
    lines = server_log.read_text(errors="replace").splitlines()[-40:] if server_log.exists() else ["(no log)"]
    print("[journey] server log, last lines:\n" + "\n".join(lines), flush=True)


def _small_copy(source: Path, target: Path, width: int = 900, max_height: int = 1400) -> None:
    """A README-sized PNG: narrower, cropped, 128 colours."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image = image.convert("RGB")
        scale = width / image.width
        image = image.resize((width, round(image.height * scale)), Image.LANCZOS)
        image = image.crop((0, 0, width, min(image.height, max_height)))
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def test_journey_inspect_search_calibrate_preview_export_classify(server, browser, tmp_path):
    url, env, folder = server
    demo = _use_demo()
    concept, concept_prompts = _concept()
    corpus = [*concept_prompts, *RETAIN, *OTHERS]
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1400, "height": 1700}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(STEP)
    app = Journey(page)
    try:
        # 0. A fresh server's first request is a deep link: the page comes inside the app's frame (sidebar).
        page.goto(f"{url}/deactivation_set")
        app.see("fingerprint")
        page.get_by_role("heading", name="Deactivation set").first.wait_for()
        assert page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Token inspector").count() == 1

        # 1. Open the app: the sidebar says what is loaded.
        page.goto(url)
        app.see("fingerprint")
        app.idle()
        app.shot("model-and-sae")

        # 2. Inspect a prompt: a heatmap of tokens x features.
        app.go("Token inspector")
        app.fill_area("Prompts (one per line)", f"{concept_prompts[0]}\n{NON_TARGET}")
        page.locator(".js-plotly-plot").first.wait_for()
        app.see("Compare two prompts")
        app.shot("token-inspector")

        # 2b. Click a heatmap cell: its feature's dashboard opens; build the feature index over a small corpus.
        heatmap = page.locator(".js-plotly-plot").first
        cells = heatmap.locator(".nsewdrag").first.bounding_box()
        columns, rows = heatmap.locator("g.xtick").count(), heatmap.locator("g.ytick").count()
        page.mouse.move(cells["x"] + cells["width"] / (2 * columns), cells["y"] + cells["height"] / (2 * rows))
        page.wait_for_timeout(300)
        page.mouse.down()
        page.mouse.up()  # a click on the centre of the first cell: the strongest feature
        page.get_by_role("heading", name="Feature dashboard").first.wait_for()
        app.idle()
        if demo:  # built when the app first opened (views.common.prepare_index), with automatic labels
            app.see("Automatic label:")
        else:
            app.clear_multiselect("Corpus (prompt sets)")
            app.fill_area("More corpus prompts (one per line)", "\n".join(corpus))
            app.click("Build the feature index")
        app.see("Top activating examples", timeout=300_000)
        app.shot("feature-dashboard")
        app.go("Feature map")
        page.locator(".js-plotly-plot").first.wait_for()
        if UPDATING:  # the README shows the real map (UMAP: numba compiles first, then a minute or so)
            app.click("Compute the UMAP map (minutes at 524k; the first use compiles numba for ~30 s)")
            app.see("UMAP of", timeout=600_000)
        page.get_by_test_id("stRadio").get_by_text("frequency", exact=True).click()
        app.idle()
        app.see("log10 frequency")
        app.shot("feature-map")

        # 3. Search the concept against a retain set, and 4. add its features to the set.
        app.go("Concept search")
        page.get_by_test_id("stRadio").get_by_text("prompts", exact=True).click()
        app.idle()
        app.fill_area("Concept prompts (one per line)", "\n".join(concept_prompts))
        app.fill_input("Concept name (in the set)", concept)
        app.clear_multiselect("Shipped prompt sets")
        app.fill_area("More retain prompts (one per line)", "\n".join(RETAIN))
        app.click("Search")
        app.see(f"Features for '{concept}'")
        page.get_by_test_id("stDataFrame").first.wait_for(timeout=STEP)  # the table renders after the heading
        app.shot("concept-search")
        page.get_by_role("button", name="Add all").click()
        app.idle()
        app.see(f"added concept '{concept}'")

        app.go("Deactivation set")
        app.see("not calibrated")
        app.shot("deactivation-set")

        # 5. Calibrate with the paper's rule, and try the live box.
        app.go("Classifier calibration")
        app.clear_multiselect("Shipped retain sets")
        app.fill_area("More retain prompts (one per line)", "\n".join(RETAIN))
        app.click("Score the prompts")
        app.see("ROC AUC")
        app.click(f"Save this threshold for '{concept}'")
        app.see(f"threshold of '{concept}' set to")
        app.fill_input("Any prompt", concept_prompts[0])
        app.see("triggers")
        app.shot("calibration")

        # 6. Preview side by side (a target and a non-target), with a progress bar per image.
        app.go("Preview")
        app.fill_area("Prompts (targets and non-targets, one per line)", f"{concept_prompts[0]}\n{NON_TARGET}")
        if not UPDATING:  # 4 steps keep the test short on 2 shared cores; the README's pictures use the default 20
            steps = page.get_by_test_id("stSlider").filter(has=page.get_by_text("Steps", exact=True)).get_by_role("slider")
            steps.focus()
            for key in ("Home", "ArrowRight", "ArrowRight", "ArrowRight"):
                steps.press(key)
            app.idle()
        app.click("Generate")
        if not page.get_by_test_id("stProgress").count():  # a late rerun from the slider can swallow the click
            app.click("Generate")
        app.see("Download the side-by-side grid (PNG)", timeout=300_000)
        assert page.get_by_test_id("stImage").count() == 4
        app.shot("preview")

        # 7. Export the config (a real download).
        app.go("Export / import")
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Erasure config (JSON)").click()
        config_path = tmp_path / "erasure.json"
        download_info.value.save_as(config_path)
        app.shot("export")
    except Exception:
        app.shot("failure")
        _print_page_state(page, folder / "streamlit.log")
        raise
    finally:
        context.close()

    # 8. The downloaded config erases the concept, and leaves the non-target alone.
    config = json.loads(config_path.read_text())
    assert config["concepts"][0]["name"] == concept and config["concepts"][0]["threshold"] is not None
    result = subprocess.run([sys.executable, "-m", "itd_cli", "classify", str(config_path), concept_prompts[0], "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["prompts"]
    assert rows[0]["edited"] is True and rows[0]["concepts_hit"] == [concept]
