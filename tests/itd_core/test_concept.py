import pytest
import torch

from itd_core.concept import PromptProfile, select_concept
from itd_core.errors import ItdError

TARGET = ["A portrait of Tom Cruise", "Tom Cruise in an official photo", "An oil painting of Tom Cruise"]
RETAIN = ["A portrait of Brad Pitt", "a cat on a mat", "An oil painting of a house", "Emma Stone in an official photo"]


def _brute_force_top_n(bundle, prompts, top_n):
    """Per prompt: dense latents at every position but BOS, max over positions, top-N that fire."""
    sets = []
    for prompt in prompts:
        activations = bundle.adapter.capture([prompt])[0, 1:]
        dense = bundle.sae.encode_dense(activations)  # [T-1, n]
        peak = dense.max(dim=0).values
        top = torch.topk(peak, top_n)
        sets.append({int(i) for i, v in zip(top.indices, top.values) if v > 0})
    return sets


def test_selection_is_top_n_of_the_concept_minus_top_n_of_the_retain_set(tiny_bundle):
    top_n = 16
    selection = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=top_n)
    concept_sets = _brute_force_top_n(tiny_bundle, TARGET, top_n)
    retain_union = set().union(*_brute_force_top_n(tiny_bundle, RETAIN, top_n))
    expected = set().union(*concept_sets) - retain_union
    assert set(selection.feature_ids) == expected
    assert selection.candidates == len(set().union(*concept_sets))
    assert selection.removed_by_retain == len(set().union(*concept_sets) & retain_union)
    hits = [f.concept_hits for f in selection.features]
    assert hits == sorted(hits, reverse=True), "ranked by how many concept prompts have the feature"
    for feature in selection.features:
        assert feature.concept_hits == sum(feature.id in s for s in concept_sets)
        assert feature.max_activation >= feature.mean_activation > 0
        assert feature.peak_tokens


def test_a_reused_retain_profile_gives_the_same_selection(tiny_bundle):
    profile = PromptProfile.build(tiny_bundle.adapter, tiny_bundle.sae, RETAIN, top_n=16)
    direct = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16)
    reused = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, profile, top_n=16)
    assert direct.feature_ids == reused.feature_ids
    with pytest.raises(ItdError, match="top-N=16"):
        select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, profile, top_n=32)


def test_empty_inputs_are_refused(tiny_bundle):
    with pytest.raises(ItdError, match="no prompts"):
        select_concept(tiny_bundle.adapter, tiny_bundle.sae, "x", [], RETAIN)
    with pytest.raises(ItdError, match="retain set is empty"):
        select_concept(tiny_bundle.adapter, tiny_bundle.sae, "x", TARGET, [])


def test_retain_margin_keeps_a_feature_that_one_retain_prompt_shares(tiny_bundle):
    paper = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16)
    margin = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16, retain_margin=1.0)
    assert set(paper.feature_ids) <= set(margin.feature_ids)
    profile = PromptProfile.build(tiny_bundle.adapter, tiny_bundle.sae, RETAIN, top_n=16)
    kept = set(margin.feature_ids) - set(paper.feature_ids)
    assert kept, "some feature of the concept also ranks in one retain prompt's top-N"
    hits = {f.id: f.concept_hits for f in margin.features}
    for feature in kept:  # kept only where the retain side uses it less often than the concept
        assert 0 < int(profile.top_n_counts[feature]) / len(RETAIN) < hits[feature] / len(TARGET)
    assert margin.removed_by_retain == paper.removed_by_retain - len(kept)
    zero = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, profile, top_n=16, retain_margin=0.0)
    assert zero.feature_ids == paper.feature_ids, "a margin of 0 is the paper's rule"


def test_min_share_keeps_features_common_to_the_concept_prompts(tiny_bundle):
    union = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16)
    common = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16, min_share=0.6)
    assert set(common.feature_ids) == {f.id for f in union.features if f.concept_hits >= 0.6 * len(TARGET)}
    with pytest.raises(ItdError, match="min_share"):
        select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, min_share=1.5)
    with pytest.raises(ItdError, match="retain margin"):
        select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, retain_margin=float("nan"))


def _fire_sets(bundle, prompts):
    """Per prompt: the latents that fire at some position but BOS (brute force, dense)."""
    return [set((bundle.sae.encode_dense(bundle.adapter.capture([p])[0, 1:]) > 0).any(0).nonzero().flatten().tolist()) for p in prompts]


def test_specific_share_adds_features_the_concept_fires_and_the_retain_side_does_not(tiny_bundle):
    top_n = 4  # a small top-N: the concept's prompts fire features that rank below it
    plain = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=top_n)
    specific = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=top_n, specific_share=0.6, specific_max_retain=0.0)
    concept_fires, retain_fires = _fire_sets(tiny_bundle, TARGET), set().union(*_fire_sets(tiny_bundle, RETAIN))
    expected_specific = {f for f in set().union(*concept_fires) if sum(f in s for s in concept_fires) >= 0.6 * len(TARGET)} - retain_fires
    assert expected_specific - set(plain.feature_ids), "some specific feature ranks below the top-N"
    assert set(specific.feature_ids) == set(plain.feature_ids) | expected_specific
    for feature in specific.features:
        if feature.id in expected_specific:
            assert feature.retain_fire_rate == 0.0 and feature.mean_activation > 0
    off = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=top_n, specific_share=0.0)
    assert off.feature_ids == plain.feature_ids, "specific_share=0 is the paper's selection"
    with pytest.raises(ItdError, match="specific_share"):
        select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, specific_share=1.5)
