"""Feature maps: computed only when asked, cached, NaN for zero decoder rows; UMAP is imported lazily."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from feature_index.feature_map import compute_feature_map, map_params


def test_pca_map_is_cached(built_index):
    first = built_index.feature_map("pca")  # built by build() by default
    assert first is not None and first.coords.shape == (built_index.n_features, 2) and np.isfinite(first.coords).all()
    assert built_index.feature_map("umap") is None, "never computed unasked"
    again = built_index.feature_map("pca", compute=True)
    np.testing.assert_array_equal(first.coords, again.coords)
    colours = built_index.frequencies()
    assert colours.shape == (built_index.n_features,)
    assert built_index.concept_activations(["a portrait of tom cruise"]).shape == (built_index.n_features,)
    built_index.lists.add("map test", [1, 2])
    assert built_index.lists.membership("map test").sum() == 2


def test_zero_rows_have_no_coordinates():
    rng = np.random.default_rng(0)
    decoder = rng.standard_normal((50, 8)).astype(np.float32)
    decoder[7] = 0
    result = compute_feature_map(decoder, "pca", params=map_params("pca"))
    assert np.isnan(result.coords[7]).all() and np.isfinite(np.delete(result.coords, 7, axis=0)).all()


def test_importing_the_package_does_not_import_umap():
    code = "import sys, feature_index.index, itd_cli.index_commands, feature_index.feature_map; print('umap' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_umap_is_fitted_on_a_sample_and_transforms_the_rest_in_chunks(monkeypatch):
    calls = {}

    class FakeUMAP:  # stands in for umap.UMAP: the real one compiles numba code for ~30-90 s
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def fit_transform(self, x):
            calls["fit"] = len(x)
            return x[:, :2] * 10

        def transform(self, x):
            calls.setdefault("transform", []).append(len(x))
            return x[:, :2] * 10

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    monkeypatch.setattr("feature_index.feature_map.TRANSFORM_CHUNK", 40)
    rng = np.random.default_rng(1)
    decoder = rng.standard_normal((200, 6)).astype(np.float32)
    stages = []
    result = compute_feature_map(decoder, "umap", params=map_params("umap", sample_size=100, n_neighbors=5, transform="umap"),
                                 progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert calls["init"]["metric"] == "cosine" and calls["init"]["n_neighbors"] == 5
    assert calls["fit"] == 100 and calls["transform"] == [40, 40, 20] and result.n_fit == 100
    unit = decoder / np.linalg.norm(decoder, axis=1, keepdims=True)
    np.testing.assert_allclose(result.coords, unit[:, :2] * 10, rtol=1e-5)
    assert stages[-1] == ("umap-transform", 200, 200)


def test_knn_placement_puts_features_next_to_their_nearest_fitted_ones(monkeypatch):
    class FakeUMAP:
        def __init__(self, **kwargs):
            pass

        def fit_transform(self, x):
            return x[:, :2] * 10

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    rng = np.random.default_rng(2)
    base = rng.standard_normal((100, 12)).astype(np.float32)
    decoder = np.concatenate([base, base * 2.0])  # rows 100+i point exactly where row i does
    result = compute_feature_map(decoder, "umap", params=map_params("umap", sample_size=100, n_neighbors=4, seed=3))
    fitted = np.isin(np.arange(200), np.sort(np.random.default_rng(3).choice(200, size=100, replace=False)))
    pairs = [i for i in range(100) if fitted[i] != fitted[100 + i]]  # one of the pair fitted, the other placed
    assert len(pairs) > 20
    for i in pairs:
        np.testing.assert_allclose(result.coords[i], result.coords[100 + i], atol=0.05)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ITD_TEST_UMAP"), reason="real UMAP: numba compiles for 30-90 s; set ITD_TEST_UMAP=1")
def test_real_umap_fits_a_sample_and_transforms_the_rest():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16))
    decoder = np.concatenate([c + 0.1 * rng.standard_normal((60, 16)) for c in centres]).astype(np.float32)
    stages = []
    result = compute_feature_map(decoder, "umap", params=map_params("umap", sample_size=120, n_neighbors=10),
                                 progress=lambda stage, done, total: stages.append(stage))
    assert result.n_fit == 120 and "umap-transform" in stages
    assert np.isfinite(result.coords).all()
    # clusters stay apart: each point's nearest map neighbour is from its own cluster, mostly
    labels = np.repeat(np.arange(4), 60)
    distances = np.linalg.norm(result.coords[:, None] - result.coords[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(1)] == labels).mean() > 0.9
