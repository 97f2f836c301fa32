"""Fixtures for the feature-index tests: a small corpus and an index built on the tiny bundle."""

from __future__ import annotations

import pytest

# Duplicates on purpose (ties in the top examples go to the earlier prompt); words reused across prompts.
CORPUS = [
    "a portrait of tom cruise", "a cat sitting on a red sofa", "an oil painting of a lighthouse at dusk",
    "picasso style guitar on a table", "a cat sitting on a red sofa", "tom cruise in an official photo",
    "a bowl of fruit on a wooden table", "a city street at night in the rain", "painting in the style of van gogh",
    "a dog running on the beach", "a portrait of tom cruise", "a red car parked by a house",
    "a lighthouse on a cliff", "an astronaut riding a horse", "a watercolor of a mountain lake",
    "a cubist painting by picasso", "a bowl of soup", "a child flying a kite", "a sunset over the sea", "a castle in the fog",
]
RETAIN = ["a portrait of brad pitt", "a cat on a mat", "a house by a lake", "emma stone in an official photo", "a bowl of fruit"]
TOP_K = 5


@pytest.fixture(scope="session")
def built_index(tiny_bundle, tmp_path_factory):
    """A FeatureIndex over CORPUS (stats with K=5, Flat FAISS, PCA map), shared by the read-only tests."""
    from feature_index import FeatureIndex

    index = FeatureIndex.open(tiny_bundle, tmp_path_factory.mktemp("fi") / "index")
    index.build(CORPUS, top_k=TOP_K, batch_size=8)
    return index
