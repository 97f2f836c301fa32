"""Fixtures for the app tests: the app pointed at the tiny bundle (until the demo loads everywhere),
with its sets, generation cache and feature index in a fresh folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def demo_ready(*, generation: bool = True) -> bool:
    """Whether the ShapesWorld demo's assets are there: its SAE (enough for every page but Preview),
    and with ``generation`` also the UNet, VAE and scheduler."""
    try:
        from shapesworld import demo
        from shapesworld.pipeline import PIPELINE_DIR

        demo.sae_folder()
        return not generation or all((PIPELINE_DIR / part).is_dir() for part in ("unet", "vae", "scheduler"))
    except Exception:  # noqa: BLE001 - any missing piece means: not ready
        return False
TIMEOUT = 120  # the first run imports torch, transformers and diffusers


@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch):
    """Run app.py on every AppTest run, as the server does.

    Streamlit runs a ``pages/`` file on its own (the old multipage mode) until some run of the process has
    called ``st.navigation``, and AppTest resets that flag before each run, so each run after the first
    would execute the page without app.py's frame (no sidebar) and lose its widget events to the frame's
    rerun (:func:`pages.common.frame`). This makes the old mode run the entrypoint instead.
    """
    import types

    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import script_runner

    def run_entrypoint(main_script_path: str) -> None:
        PagesManager.uses_pages_directory = False
        module = types.ModuleType("__main__")
        module.__file__ = main_script_path
        source = Path(main_script_path).read_text(encoding="utf-8")
        exec(compile(source, main_script_path, "exec"), module.__dict__)  # noqa: S102 - the app under test

    monkeypatch.setattr(script_runner, "_mpa_v1", run_entrypoint)


@pytest.fixture()
def app_env(monkeypatch, tmp_path, tiny_pipeline_dir, tiny_sae_dir):
    """Environment that makes the sidebar default to the tiny bundle; returns the tmp folder."""
    monkeypatch.setenv("ITD_APP_MODEL", str(tiny_pipeline_dir))
    monkeypatch.setenv("ITD_APP_SAE", str(tiny_sae_dir))
    monkeypatch.setenv("ITD_APP_LAYER", "1")
    monkeypatch.setenv("ITD_SETS_DIR", str(tmp_path / "sets"))
    monkeypatch.setenv("ITD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ITD_INDEX_DIR", str(tmp_path / "index"))
    return tmp_path


@pytest.fixture()
def app(app_env):
    """A fresh browser session on the app's home page, already run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at
