"""Shared fixtures: a tiny diffusers folder, a tiny SAE folder, and the bundle made of them."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from tests.tiny_models import build_tiny_pipeline, build_tiny_sae


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_sd")
    build_tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sae_dir(tmp_path_factory):
    from itd_core.sae_formats import save_sae

    folder = tmp_path_factory.mktemp("tiny_sae") / "sae"
    save_sae(build_tiny_sae(), folder, format="native")
    return folder


@pytest.fixture(scope="session")
def tiny_bundle(tiny_pipeline_dir, tiny_sae_dir):
    from itd_core.bundle import BundleSpec, load_bundle

    return load_bundle(BundleSpec(model=str(tiny_pipeline_dir), sae=str(tiny_sae_dir), layer="1"))
