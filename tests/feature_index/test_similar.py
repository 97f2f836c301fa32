"""Similar features and nearest-to-a-direction: equal to exact search; FAISS sidecar and index types."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feature_index.faiss_index import FAISS_FILE, DecoderIndex, DimensionError, choose_factory, sidecar_path
from itd_core.errors import ItdError


def _exact(decoder: np.ndarray, query: np.ndarray, k: int, exclude=()) -> list[int]:
    rows = decoder / np.linalg.norm(decoder, axis=1, keepdims=True)
    scores = rows @ (query / np.linalg.norm(query))
    order = [int(i) for i in np.lexsort((np.arange(len(scores)), -scores)) if int(i) not in exclude]
    return order[:k]


def test_similar_equals_exact_search(built_index):
    decoder = built_index.bundle.sae.W_dec.detach().numpy()
    for feature in (0, 17, 255):
        got = built_index.similar(feature, k=10)
        assert [n.id for n in got] == _exact(decoder, decoder[feature], 10, exclude={feature})
        cosines = [n.cosine for n in got]
        assert cosines == sorted(cosines, reverse=True) and all(-1 <= c <= 1 for c in cosines)


def test_nearest_to_a_direction(built_index):
    decoder = built_index.bundle.sae.W_dec.detach().numpy()
    direction = built_index.concept_direction(["a portrait of tom cruise", "tom cruise in an official photo"])
    assert direction.shape == (built_index.d_model,)
    assert [n.id for n in built_index.nearest(direction, k=7)] == _exact(decoder, direction, 7)
    own = built_index.nearest(decoder[42] * 3.0, k=1)
    assert own[0].id == 42 and own[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert [n.id for n in built_index.nearest(built_index.encoder_direction(5), k=3, exclude=[5])] == _exact(decoder, decoder[5], 3, exclude={5})


def test_wrong_dimension_is_a_clear_value_error(built_index):
    with pytest.raises(ValueError, match=r"shape \(31,\).*32-dimensional"):
        built_index.nearest(np.ones(31), k=3)
    with pytest.raises(DimensionError):
        built_index.nearest(np.ones((2, 32)), k=3)
    with pytest.raises(ItdError, match="zero vector"):
        built_index.nearest(np.zeros(32), k=3)


def test_sidecar_describes_the_index(built_index):
    meta = json.loads(sidecar_path(built_index.folder).read_text())
    assert meta["factory"] == "Flat" == choose_factory(built_index.n_features)
    assert choose_factory(524288) == "SQ8"
    assert meta["dimension"] == 32 and meta["metric"] == "inner_product" and meta["normalized"] is True
    assert meta["fingerprint"] == built_index.fingerprint and meta["n_features"] == 256
    assert meta["file_bytes"] == (built_index.folder / FAISS_FILE).stat().st_size


def test_sqfp16_finds_planted_neighbours_and_reranks_exactly(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2000, 48)).astype(np.float32)
    planted = base[:20] + 0.05 * rng.standard_normal((20, 48)).astype(np.float32)  # rows 2000+i ~ row i
    decoder = np.concatenate([base, planted])
    index = DecoderIndex.build(decoder, "fp", "SQfp16")
    index.save(tmp_path)
    loaded = DecoderIndex.load(tmp_path, "fp", 48, len(decoder))
    assert loaded.factory == "SQfp16"
    _, ids = loaded.search(decoder[:20] / np.linalg.norm(decoder[:20], axis=1, keepdims=True), 2)
    assert all(ids[i, 1] == 2000 + i or ids[i, 0] == 2000 + i for i in range(20))
    hits = 0
    for q in range(50):
        exact = set(_exact(decoder, decoder[q], 20))
        hits += len(exact & set(loaded.search(decoder[q] / np.linalg.norm(decoder[q]), 20)[1][0].tolist()))
    assert hits / (50 * 20) > 0.95


@pytest.mark.parametrize("factory", ["SQ8", "SQfp16"])
def test_similar_with_a_quantised_index_matches_exact(tiny_bundle, tmp_path, factory):
    from feature_index import FeatureIndex

    index = FeatureIndex.open(tiny_bundle, tmp_path / "sq")
    info = index.ensure_decoder_index(factory=factory)
    assert info["factory"] == factory
    assert FeatureIndex.open(tiny_bundle, tmp_path / "sq").ensure_decoder_index()["factory"] == factory, "the type on disk is kept"
    decoder = tiny_bundle.sae.W_dec.detach().numpy()
    for feature in (3, 99):
        assert [n.id for n in index.similar(feature, k=8)] == _exact(decoder, decoder[feature], 8, exclude={feature})
