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
