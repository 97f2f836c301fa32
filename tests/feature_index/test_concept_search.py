"""Concept search is the core's selection (same features, same order, same evidence), with a cached retain side."""

from __future__ import annotations

import pytest

from feature_index.search import DEFAULT_TEMPLATES
from itd_core.concept import PromptProfile, select_concept
from itd_core.errors import ItdError
from itd_core.prompts import expand_templates
from tests.feature_index.conftest import RETAIN

TARGET = ["a portrait of tom cruise", "tom cruise in an official photo", "an oil painting of tom cruise"]


def test_concept_search_equals_select_concept(built_index, tiny_bundle):
    result = built_index.concept_search(TARGET, RETAIN, top_n=16, name="Tom Cruise")
    selection = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16)
    assert selection.features, "the fixture must select something"
    assert result.feature_ids == selection.feature_ids
    assert (result.candidates, result.removed_by_retain, result.retain_hash) == (selection.candidates, selection.removed_by_retain, selection.retain_hash)
    for got, core in zip(result.features, selection.features):
        assert got.model_dump(include=set(core.model_dump())) == core.model_dump()
        assert got.corpus_prompt_rate is not None and 0 <= got.specificity <= 1


def test_a_word_is_expanded_with_the_templates(built_index, tiny_bundle):
    result = built_index.concept_search("picasso", RETAIN, top_n=16)
    prompts = expand_templates("picasso", list(DEFAULT_TEMPLATES))
    assert result.prompts == prompts
    assert result.feature_ids == select_concept(tiny_bundle.adapter, tiny_bundle.sae, "picasso", prompts, RETAIN, top_n=16).feature_ids


def test_the_retain_profile_is_cached_in_memory_and_on_disk(built_index, tiny_bundle):
    from feature_index import FeatureIndex

    first = built_index.concept_search(TARGET, RETAIN, top_n=8)
    second = built_index.concept_search(["a cubist painting by picasso"], RETAIN, top_n=8)
    assert second.retain_cached
    files = list((built_index.folder / "profiles").glob("retain-n8-*.safetensors"))
    assert len(files) == 1
    reopened = FeatureIndex.open(tiny_bundle, built_index.folder)
    profile, source = reopened._profile_cache().lookup(tiny_bundle.adapter, tiny_bundle.sae, RETAIN, 8)
    assert source == "disk"
    assert reopened.retain_profile(RETAIN, top_n=8) is profile, "then from memory"
    fresh = PromptProfile.build(tiny_bundle.adapter, tiny_bundle.sae, RETAIN, 8)
    assert bool((profile.in_top_n == fresh.in_top_n).all()) and bool((profile.fire_counts == fresh.fire_counts).all())
    assert reopened.concept_search(TARGET, RETAIN, top_n=8).feature_ids == first.feature_ids


def test_specificity_ranking_and_bad_concepts(built_index):
    ranked = built_index.concept_search(TARGET, RETAIN, top_n=16, rank_by="specificity")
    scores = [f.specificity for f in ranked.features]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ItdError, match="tokenise to nothing"):
        built_index.concept_search(["   ", "\u200b"], RETAIN, top_n=16)
    with pytest.raises(ItdError, match="empty"):
        built_index.concept_search("  ", RETAIN)
    with pytest.raises(ItdError, match="retain set is empty"):
        built_index.concept_search(TARGET, [])
