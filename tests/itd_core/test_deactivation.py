import pytest
import torch

from bench.reference_itd import reference_erasure
from itd_core.deactivation import PEAK_TOKENS, ConceptFeatures, Deactivator
from itd_core.errors import ItdError
from itd_core.sae import SAEConfig, TopKSAE


@pytest.fixture(scope="module")
def sae():
    return TopKSAE.random(SAEConfig(d_model=24, n_latents=300, k=6), seed=3)


@pytest.fixture(scope="module")
def activations():
    return torch.randn(7, 10, 24, generator=torch.Generator().manual_seed(1))


def _active_features(sae, activations, prompt, count):
    return sae.encode(activations[prompt, 1:]).indices.flatten().unique()[:count].tolist()


def _concepts(sae, activations, thresholds=(None, None)):
    first = _active_features(sae, activations, 0, 20)
    second = _active_features(sae, activations, 1, 12) + first[:3]  # overlaps the first concept
    return [
        ConceptFeatures.uniform("first", first, -8.0, thresholds[0]),
        ConceptFeatures("second", tuple(second), tuple([-3.0] * len(second)), thresholds[1]),
    ]


def test_scores_equal_the_dense_reference(sae, activations):
    concepts = _concepts(sae, activations)
    scores = Deactivator(sae, concepts).scores(activations)
    _, reference, _ = reference_erasure(sae, activations, concepts)
    assert scores.shape == (7, 2)
    torch.testing.assert_close(scores, reference, rtol=1e-5, atol=1e-6)


def test_only_prompts_over_threshold_are_edited_and_the_rest_pass_bit_exactly(sae, activations):
    scores = Deactivator(sae, _concepts(sae, activations)).scores(activations)
    concepts = _concepts(sae, activations, thresholds=(0.99 * float(scores[0, 0]), 0.99 * float(scores[1, 1])))
    result = Deactivator(sae, concepts).apply(activations)
    expected_triggered = scores >= torch.tensor([c.threshold for c in concepts])
    assert torch.equal(result.triggered, expected_triggered)
    assert result.edited[0] and result.edited[1]
    for b in range(7):
        if result.edited[b]:
            assert not torch.equal(result.activations[b], activations[b])
            assert torch.equal(result.activations[b, 0], activations[b, 0]), "BOS is never edited"
        else:
            assert torch.equal(result.activations[b], activations[b])
    reference_output, _, reference_triggered = reference_erasure(sae, activations, concepts)
    assert torch.equal(reference_triggered, result.triggered)
    torch.testing.assert_close(result.activations, reference_output, rtol=1e-5, atol=1e-5)


def test_edit_of_a_prompt_that_triggers_one_concept_uses_only_that_concept(sae, activations):
    scores = Deactivator(sae, _concepts(sae, activations)).scores(activations)
    both = _concepts(sae, activations, thresholds=(0.99 * float(scores[0, 0]), float("inf")))
    alone = [both[0]]
    combined = Deactivator(sae, both).apply(activations[:1])
    single = Deactivator(sae, alone).apply(activations[:1])
    assert combined.triggered.tolist() == [[True, False]]
    torch.testing.assert_close(combined.activations, single.activations)


def test_ungated_steering_edits_every_prompt(sae, activations):
    result = Deactivator(sae, _concepts(sae, activations)).apply(activations, gate=False)
    assert result.edited.all()


def test_uncalibrated_concept_cannot_gate(sae, activations):
    with pytest.raises(ItdError, match="no threshold"):
        Deactivator(sae, _concepts(sae, activations)).apply(activations)


def test_feature_out_of_range_is_named(sae):
    with pytest.raises(ItdError, match="feature id 300 out of range"):
        Deactivator(sae, [ConceptFeatures.uniform("x", [1, 300])])


def test_width_mismatch_is_explained(sae):
    with pytest.raises(ItdError, match="width 24"):
        Deactivator(sae, [ConceptFeatures.uniform("x", [1])]).scores(torch.zeros(1, 4, 16))


def test_bf16_sae_gives_close_scores(sae, activations):
    concepts = _concepts(sae, activations)
    full = Deactivator(sae, concepts).scores(activations)
    half = TopKSAE(sae.config, dtype=torch.bfloat16)
    half.load_state_dict(sae.state_dict())
    low = Deactivator(half, concepts).scores(activations)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, full, rtol=0.1, atol=0.05)


@pytest.fixture(scope="module")
def prompt_mask():
    mask = torch.zeros(7, 10, dtype=torch.bool)
    for b, length in enumerate([10, 3, 5, 2, 8, 6, 4]):  # BOS + tokens + EOS, then padding
        mask[b, :length] = True
    return mask


def _per_position_scores(sae, activations, concepts) -> torch.Tensor:
    """The paper's score of each single position: ``[B, C, positions 1..T-1]`` (BOS + one position each)."""
    return torch.stack([reference_erasure(sae, activations[:, t:t + 2], concepts)[1] for t in range(activations.shape[1] - 1)], dim=-1)


def test_prompt_positions_score_averages_only_over_the_prompt_tokens(sae, activations, prompt_mask):
    concepts = _concepts(sae, activations)
    mask = prompt_mask
    per_position = _per_position_scores(sae, activations, concepts)
    expected = (per_position * mask[:, None, 1:]).sum(-1) / mask[:, 1:].sum(-1, keepdim=True)
    scores = Deactivator(sae, concepts, score_positions="prompt").scores(activations, mask)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    # the paper's mode ignores the mask; the prompt mode needs it
    all_positions = Deactivator(sae, concepts)
    torch.testing.assert_close(all_positions.scores(activations, mask), all_positions.scores(activations))
    with pytest.raises(ItdError, match="prompt_mask"):
        Deactivator(sae, concepts, score_positions="prompt").scores(activations)
    with pytest.raises(ItdError, match="score_positions"):
        Deactivator(sae, concepts, score_positions="tokens")


def test_peak_score_averages_the_highest_scoring_prompt_tokens(sae, activations, prompt_mask):
    concepts = _concepts(sae, activations)
    mask = prompt_mask
    per_position = _per_position_scores(sae, activations, concepts)
    expected = torch.zeros(7, 2)
    for b in range(7):
        own = per_position[b][:, mask[b, 1:]]  # [C, the prompt's own positions]
        expected[b] = own.topk(min(PEAK_TOKENS, own.shape[1]), dim=-1).values.mean(-1)
    scores = Deactivator(sae, concepts, score_positions="peak").scores(activations, mask)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    padded = activations.clone()
    padded[3, 2:] = torch.randn(8, 24)  # what follows a 1-token prompt's EOS does not count
    torch.testing.assert_close(Deactivator(sae, concepts, score_positions="peak").scores(padded, mask)[3], scores[3])


def test_residual_edit_adds_only_the_change_of_the_triggered_concepts_features(sae, activations):
    scores = Deactivator(sae, _concepts(sae, activations)).scores(activations)
    concepts = _concepts(sae, activations, thresholds=(0.99 * float(scores[0, 0]), float("inf")))
    result = Deactivator(sae, concepts, edit_output="residual").apply(activations)
    first = concepts[0]
    strength = dict(zip(first.feature_ids, first.strengths))
    code = sae.encode(activations[:, 1:])
    for b in range(7):
        expected = activations[b].clone()
        if result.edited[b]:
            for t in range(activations.shape[1] - 1):  # x_t + (s - 1) z_f d_f for the triggered concept's features
                for f, z in zip(code.indices[b, t].tolist(), code.values[b, t].tolist()):
                    if f in strength:
                        expected[t + 1] += (strength[f] - 1.0) * z * sae.W_dec[f]
        torch.testing.assert_close(result.activations[b], expected, rtol=1e-5, atol=1e-5)
    assert result.edited.tolist()[0] and not result.triggered[:, 1].any()


def test_residual_edit_leaves_positions_without_concept_features_bit_exact(sae, activations):
    concepts = [c.with_threshold(0.0) for c in _concepts(sae, activations)]
    result = Deactivator(sae, concepts[:1], edit_output="residual").apply(activations)
    code = sae.encode(activations[:, 1:])
    fires = torch.isin(code.indices, torch.tensor(concepts[0].feature_ids)).any(-1)  # [B, T-1]
    assert result.edited.all() and fires.any() and not fires.all()
    tail = result.activations[:, 1:]
    assert torch.equal(tail[~fires], activations[:, 1:][~fires]), "the layer's own values where no concept feature fires"
    assert not torch.equal(tail[fires], activations[:, 1:][fires])
    assert torch.equal(result.activations[:, 0], activations[:, 0])


def test_unknown_edit_output_is_named(sae, activations):
    with pytest.raises(ItdError, match="edit_output"):
        Deactivator(sae, _concepts(sae, activations), edit_output="steer")


@pytest.mark.parametrize("edit_output", ["reconstruction", "residual"])
def test_an_edited_prompt_where_no_concept_feature_fires(sae, activations, edit_output):
    silent = sorted(set(range(300)) - set(sae.encode(activations[:, 1:]).indices.flatten().tolist()))[:3]
    result = Deactivator(sae, [ConceptFeatures.uniform("silent", silent, -8.0, 0.0)], edit_output=edit_output).apply(activations)
    assert result.edited.all()
    if edit_output == "residual":
        assert torch.equal(result.activations, activations), "nothing of the concept to change"


def test_the_public_code_path_takes_the_engines_decisions_and_edits(sae, activations):
    from bench.reference_itd import public_erasure

    scores = Deactivator(sae, _concepts(sae, activations)).scores(activations)
    concepts = _concepts(sae, activations, thresholds=(0.99 * float(scores[0, 0]), 0.99 * float(scores[1, 1])))
    output, public_scores, triggered = public_erasure(sae, activations, concepts)
    result = Deactivator(sae, concepts).apply(activations)
    torch.testing.assert_close(public_scores, result.scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(triggered, result.triggered)
    torch.testing.assert_close(output, result.activations, rtol=1e-5, atol=1e-5)


def test_an_edit_strength_changes_the_edit_and_never_the_decisions(sae, activations):
    """A preview strength (the app's Preview, ``itd generate --edit-strength``) needs no recalibration: the scores
    and so the decisions are those of the config's strengths; only the edit uses the override."""
    scores = Deactivator(sae, _concepts(sae, activations)).scores(activations)
    concepts = _concepts(sae, activations, thresholds=(0.99 * float(scores[0, 0]), float("inf")))
    own = Deactivator(sae, concepts, edit_output="residual").apply(activations)
    milder = Deactivator(sae, concepts, edit_output="residual", edit_strength=-1.0).apply(activations)
    torch.testing.assert_close(milder.scores, own.scores, rtol=0, atol=0)
    assert milder.triggered.tolist() == own.triggered.tolist()
    assert not milder.triggered[:, 1].any()
    code = sae.encode(activations[:, 1:])
    for b in range(len(activations)):  # x_t + (S - 1) z_f d_f over the triggered (first) concept's features
        expected = activations[b].clone()
        if milder.edited[b]:
            for t in range(activations.shape[1] - 1):
                for f, z in zip(code.indices[b, t].tolist(), code.values[b, t].tolist()):
                    if f in concepts[0].feature_ids:
                        expected[t + 1] += (-1.0 - 1.0) * z * sae.W_dec[f]
        torch.testing.assert_close(milder.activations[b], expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(milder.activations, own.activations)
    with pytest.raises(ItdError, match="edit_strength"):
        Deactivator(sae, concepts, edit_strength=float("nan"))



def test_a_bf16_screened_sae_scores_and_edits_as_fp32(sae, activations, monkeypatch):
    """TopKSAE.screen_in_bf16: the same latents as the fp32 encode, so the same decisions and (to fp32 rounding) edits."""
    from itd_core import sae as sae_module

    monkeypatch.setattr(sae_module, "SCREEN_CANDIDATES", 64)  # below the fixture's 300 latents, so the screen runs
    concepts = _concepts(sae, activations)
    plain = Deactivator(sae, concepts).scores(activations)
    calibrated = [c.with_threshold(float(plain[:, i].median())) for i, c in enumerate(concepts)]
    expected = Deactivator(sae, calibrated).apply(activations)
    screened_sae = sae.copy_as(torch.float32).screen_in_bf16()
    result = Deactivator(screened_sae, calibrated).apply(activations)
    assert torch.equal(result.triggered, expected.triggered)
    torch.testing.assert_close(result.scores, expected.scores, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result.activations, expected.activations, rtol=1e-5, atol=1e-5)
