"""Bad input gets clear errors and nothing already stored is lost."""

from __future__ import annotations

import pytest

from feature_index import FeatureIndex
from feature_index.faiss_index import FAISS_FILE
from feature_index.stats import FEATURES_FILE
from itd_core.errors import ItdError
from tests.feature_index.conftest import CORPUS


@pytest.fixture
def other_sae_bundle(tiny_bundle):
    """The tiny bundle's encoder with another SAE (another seed)."""
    from itd_core.bundle import ModelBundle
    from itd_core.sae_formats import weights_fingerprint
    from tests.tiny_models import build_tiny_sae

    sae = build_tiny_sae(seed=1)
    sae.fingerprint = weights_fingerprint(sae)
    return ModelBundle(tiny_bundle.spec, tiny_bundle.adapter, sae, None, tiny_bundle.sae_path, "native")


def test_unknown_feature_ids(built_index):
    for bad in (-1, built_index.n_features, "seven", 3.5):
        with pytest.raises(ItdError, match="feature"):
            built_index.stats(bad)
        with pytest.raises(ItdError, match="feature"):
            built_index.top_examples(bad)
        with pytest.raises(ItdError, match="feature"):
            built_index.similar(bad)
    with pytest.raises(ItdError, match="k must be"):
        built_index.similar(1, k=0)


def test_an_index_of_another_sae_is_refused_and_kept(tiny_bundle, other_sae_bundle, tmp_path):
    index = FeatureIndex.open(tiny_bundle, tmp_path / "idx")
    index.labels.set(3, "precious")
    index.ensure_decoder_index()
    with pytest.raises(ItdError, match="another SAE"):
        FeatureIndex.open(other_sae_bundle, tmp_path / "idx")
    assert FeatureIndex.open(tiny_bundle, tmp_path / "idx").labels.get(3) == "precious"
    # default folders are per fingerprint, so both SAEs coexist
    assert FeatureIndex.open(other_sae_bundle, tmp_path / "other").fingerprint != index.fingerprint


def test_truncated_files_are_reported_and_rebuilt_without_losing_labels(tiny_bundle, tmp_path):
    index = FeatureIndex.open(tiny_bundle, tmp_path / "idx")
    index.build(CORPUS[:6], top_k=3, feature_map="none")
    index.labels.set(1, "survivor")
    faiss_path = index.folder / FAISS_FILE
    faiss_path.write_bytes(faiss_path.read_bytes()[:1000])
    reopened = FeatureIndex.open(tiny_bundle, tmp_path / "idx")
    with pytest.raises(ItdError, match="truncated"):
        reopened.similar(1)
    report = reopened.build(CORPUS[:6], top_k=3, feature_map="none")
    assert report.stats.reused and not report.faiss["reused"], "build replaces a damaged FAISS file, statistics are reused"
    assert len(reopened.similar(1, 5)) == 5 and reopened.labels.get(1) == "survivor"

    features = tmp_path / "idx" / "stats" / reopened.document["stats"] / FEATURES_FILE
    features.write_bytes(features.read_bytes()[:500])
    with pytest.raises(ItdError, match="truncated or damaged"):
        FeatureIndex.open(tiny_bundle, tmp_path / "idx").stats(1)


def test_empty_corpus_and_prompts_that_tokenise_to_nothing(tiny_bundle, tmp_path):
    index = FeatureIndex.open(tiny_bundle, tmp_path / "idx")
    with pytest.raises(ItdError, match="corpus is empty"):
        index.build([])
    with pytest.raises(ItdError, match="tokenised"):
        index.build(["", "   "])
    assert not index.has_stats
    with pytest.raises(ItdError, match="no corpus statistics"):
        index.stats(0)
    with pytest.raises(ItdError, match="tokenise to nothing"):
        index.concept_direction([""])
