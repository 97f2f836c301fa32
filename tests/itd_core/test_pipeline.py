import pytest
import torch

from itd_core.concept import select_concept
from itd_core.erasure_config import ConceptEntry, FeatureEntry
from itd_core.pipeline import GenerationCache, GenerationSettings, apply_erasure, erasure, generate_images, generate_side_by_side, pair_caption, side_by_side_image

TARGET = ["A portrait of Tom Cruise", "Tom Cruise in an official photo"]
RETAIN = ["A portrait of Brad Pitt", "a cat on a mat", "a house by a lake"]
POOL = RETAIN + ["a bowl of fruit", "a red car on a road", "Emma Stone in an official photo", "a dog in a park", "snowy mountains"]
SETTINGS = GenerationSettings(steps=2, size=32, guidance=5.0)


@pytest.fixture(scope="module")
def setup(tiny_bundle):
    """(config, non_targets): one concept whose threshold the target prompt passes and two other prompts do not."""
    selection = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16)
    config = tiny_bundle.new_erasure_config(method="paper")
    entry = ConceptEntry(name="Tom Cruise", features=[FeatureEntry(id=f) for f in selection.feature_ids], prompts=TARGET)
    config.upsert(entry)
    scores = config.deactivator(tiny_bundle.sae).scores(tiny_bundle.adapter.capture([TARGET[0]] + POOL))[:, 0]
    # The tiny SAE is random, so its scores carry little meaning: the threshold goes between the target
    # prompt and the two lowest-scoring other prompts (tests/shapesworld checks real separation on the demo).
    lowest = scores[1:].argsort()[:2]
    assert scores[0] > scores[1:][lowest].max()
    entry.threshold = float(scores[0] + scores[1:][lowest].max()) / 2
    return config, [POOL[i] for i in lowest.tolist()]


@pytest.fixture(scope="module")
def config(setup):
    return setup[0]


@pytest.fixture(scope="module")
def non_targets(setup):
    return setup[1]


def _images(pipe, prompts):
    return [image.tobytes() for image in generate_images(pipe, prompts, list(range(len(prompts))), SETTINGS)]


def test_plain_pipe_call_erases_targets_and_leaves_others_bit_identical(tiny_bundle, config, non_targets):
    pipe = tiny_bundle.pipeline
    prompts = [TARGET[0], non_targets[0]]
    before = _images(pipe, prompts)
    hook = apply_erasure(pipe, config, tiny_bundle.sae)
    try:
        during = _images(pipe, prompts)
        assert hook.calls[0].edited == [True, False]
    finally:
        hook.remove()
    after = _images(pipe, prompts)
    assert during[0] != before[0], "the target prompt's image changes"
    assert during[1] == before[1], "the other prompt's image is bit-identical"
    assert after == before, "remove() restores the pipeline"


def test_the_bf16_screen_in_the_pipeline_takes_the_fp32_decisions(tiny_bundle, config, non_targets, monkeypatch):
    from itd_core import sae as sae_module
    from itd_core.errors import ItdError

    monkeypatch.setattr(sae_module, "SCREEN_CANDIDATES", 64)  # below the tiny SAE's 256 latents, so the screen runs
    pipe = tiny_bundle.pipeline
    sae = tiny_bundle.sae.copy_as(torch.float32)
    with erasure(pipe, config, sae, bf16_screen=True) as hook:
        embeds, _ = pipe.encode_prompt([TARGET[0], non_targets[0]], "cpu", 1, False)
    assert hook.calls[-1].edited == [True, False] and sae._screen is not None
    plain, _ = pipe.encode_prompt([non_targets[0]], "cpu", 1, False)
    assert torch.equal(embeds[1], plain[0]), "the other prompt passes bit-exactly"
    with pytest.raises(ItdError, match="fp32 SAE"):
        apply_erasure(pipe, config, tiny_bundle.sae.copy_as(torch.bfloat16), bf16_screen=True)


def test_context_manager_and_prompt_embeds_path(tiny_bundle, config):
    pipe = tiny_bundle.pipeline
    with erasure(pipe, config, tiny_bundle.sae) as hook:
        embeds, _ = pipe.encode_prompt(TARGET[:1], "cpu", 1, False)
    plain, _ = pipe.encode_prompt(TARGET[:1], "cpu", 1, False)
    assert hook.calls[-1].edited == [True]
    assert not torch.equal(embeds, plain)


def test_prompt_positions_mode_scores_in_the_pipeline_as_in_calibration(tiny_bundle, config, non_targets):
    prompt_mode = config.model_copy(update={"score_positions": "prompt"}, deep=True)
    prompts = [TARGET[0], non_targets[0]]
    expected = prompt_mode.deactivator(tiny_bundle.sae).score_prompts(tiny_bundle.adapter, prompts)[:, 0]
    paper = config.deactivator(tiny_bundle.sae).score_prompts(tiny_bundle.adapter, prompts)[:, 0]
    assert not torch.allclose(expected, paper), "the padding after EOS no longer counts"
    prompt_mode.concepts[0].threshold = float(expected.min())  # both trigger: both are edited
    pipe = tiny_bundle.pipeline
    with erasure(pipe, prompt_mode, tiny_bundle.sae) as hook:
        pipe.encode_prompt(prompts, "cpu", 1, False)
    torch.testing.assert_close(torch.tensor(hook.calls[-1].scores)[:, 0], expected)
    assert hook.calls[-1].edited == [True, True]
    assert prompt_mode.content_hash() != config.content_hash()


def test_side_by_side_uses_the_same_latents_and_caches(tiny_bundle, config, non_targets, tmp_path):
    cache = GenerationCache(tmp_path)
    args = (tiny_bundle.pipeline, config, tiny_bundle.sae, [TARGET[0], non_targets[1]], [7, 8], SETTINGS)
    steps = []
    first = generate_side_by_side(*args, cache=cache, progress=lambda done, total: steps.append((done, total)))
    assert [p.edited for p in first] == [True, False]
    assert not first[0].identical and first[1].identical
    assert first[0].triggered == ["Tom Cruise"] and first[0].scores["Tom Cruise"] >= config.concepts[0].threshold
    assert steps[-1] == (4, 4)
    second = generate_side_by_side(*args, cache=cache)
    assert all(p.from_cache for p in second)
    assert [p.erased.tobytes() for p in second] == [p.erased.tobytes() for p in first]
    assert pair_caption(first[0]).startswith(f"{TARGET[0]!r} · seed 7 · edited: Tom Cruise (score ")
    assert pair_caption(first[1]).startswith(f"{non_targets[1]!r} · seed 8 · untouched (highest score: Tom Cruise ")
    width, height = first[0].original.size
    assert side_by_side_image(first, scale=2, captions=False).size == (4 * width, 4 * height)
    captioned = side_by_side_image(first, scale=2)
    assert captioned.size[0] == 4 * width and captioned.size[1] > 4 * height + 2 * 14, "a header and a caption under each row"


def test_negative_prompt_is_scored_but_never_edited_when_the_config_says_so(tiny_bundle, config):
    pipe = tiny_bundle.pipeline
    kept = config.model_copy(update={"edit_negative_prompt": False}, deep=True)
    # The target prompt as the negative prompt: the paper's hook edits it, the recommended one passes it through.
    with erasure(pipe, config, tiny_bundle.sae) as hook:
        _, paper_negative = pipe.encode_prompt([RETAIN[1]], "cpu", 1, True, negative_prompt=[TARGET[0]])
    assert [c.negative for c in hook.calls] == [False, False] and hook.calls[1].edited == [True]
    with erasure(pipe, kept, tiny_bundle.sae) as hook:
        _, kept_negative = pipe.encode_prompt([RETAIN[1]], "cpu", 1, True, negative_prompt=[TARGET[0]])
        assert "encode_prompt" in vars(pipe)
    assert [c.negative for c in hook.calls] == [False, True]
    assert hook.calls[1].triggered == [[True]] and hook.calls[1].edited == [False], "scored, not edited"
    _, plain_negative = pipe.encode_prompt([RETAIN[1]], "cpu", 1, True, negative_prompt=[TARGET[0]])
    assert torch.equal(kept_negative, plain_negative) and not torch.equal(paper_negative, plain_negative)
    assert "encode_prompt" not in vars(pipe), "remove() restores the pipeline's own method"
    with erasure(pipe, kept, tiny_bundle.sae) as hook:  # given prompt embeddings, the one encoder call is the negative prompt's
        pipe.encode_prompt(None, "cpu", 1, True, negative_prompt=[TARGET[0]], prompt_embeds=plain_negative)
    assert [c.negative for c in hook.calls] == [True] and hook.calls[0].edited == [False]


def test_folded_spelling_triggers_and_is_the_one_edited(tiny_bundle, config, non_targets):
    pipe = tiny_bundle.pipeline
    folding = config.model_copy(update={"prompt_folding": "fold"}, deep=True)
    disguised = TARGET[0].replace("o", "о").replace("a", "а")  # Cyrillic look-alikes
    deactivator = folding.deactivator(tiny_bundle.sae)
    as_written = deactivator.score_prompts_as_written(tiny_bundle.adapter, [disguised])[0, 0]
    assert deactivator.score_prompts(tiny_bundle.adapter, [disguised])[0, 0] >= folding.concepts[0].threshold > as_written
    with erasure(pipe, folding, tiny_bundle.sae) as hook:
        disguised_embeds, _ = pipe.encode_prompt([disguised, non_targets[0]], "cpu", 1, False)
    assert hook.calls[-1].folded == [True, False] and hook.calls[-1].edited == [True, False]
    with erasure(pipe, config, tiny_bundle.sae):
        target_embeds, _ = pipe.encode_prompt([TARGET[0]], "cpu", 1, False)
    plain, _ = pipe.encode_prompt([non_targets[0]], "cpu", 1, False)
    torch.testing.assert_close(disguised_embeds[:1], target_embeds)
    assert torch.equal(disguised_embeds[1:], plain), "a prompt that folding leaves alone passes bit-exactly"


@pytest.mark.parametrize("threshold, edited", [
    (1e-9, [False, True, True, True]),  # every score passes: only the veto keeps someone else unedited
    (1e9, [False, True, True, False]),  # no score passes: only the full name (a title and the surname complete it) triggers
])
def test_name_rules_override_the_classifier(tiny_bundle, config, threshold, edited):
    pipe = tiny_bundle.pipeline
    parts = config.model_copy(update={"prompt_folding": "fold_parts"}, deep=True)
    parts.concepts[0].threshold = threshold
    prompts = ["A portrait of Yorwyn Cruise", "A portrait of tom cruise !!!", "A portrait of Mrs Cruise", "A photo of a cruise ship"]
    deactivator = parts.deactivator(tiny_bundle.sae)
    named, vetoed = deactivator.name_rules([deactivator.folded(p) for p in prompts])
    assert named[:, 0].tolist() == [False, True, True, False] and vetoed[:, 0].tolist() == [True, False, False, False]
    scores = deactivator.score_prompts(tiny_bundle.adapter, prompts)[:, 0]
    own = deactivator.score_prompts(tiny_bundle.adapter, prompts, name_rules=False)[:, 0]
    assert scores[0] == 0 < own[0] and scores[1] >= threshold and scores[2] >= threshold
    assert scores[3] == own[3], "a prompt neither rule decides keeps the classifier's own score"
    with erasure(pipe, parts, tiny_bundle.sae) as hook:
        erased, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    assert hook.calls[-1].edited == edited and [row[0] for row in hook.calls[-1].triggered] == edited
    plain, _ = pipe.encode_prompt(prompts[:1], "cpu", 1, False)
    assert torch.equal(erased[:1], plain), "the vetoed prompt passes bit-exactly"
    with erasure(pipe, parts.model_copy(update={"prompt_folding": "fold"}, deep=True), tiny_bundle.sae) as hook:
        pipe.encode_prompt(prompts, "cpu", 1, False)
    assert hook.calls[-1].edited == [threshold < 1] * 4, "without fold_parts the classifier alone decides"


def test_concept_positions_edit_keeps_the_other_tokens(tiny_bundle, config):
    local = config.model_copy(update={"edit_positions": "concept"}, deep=True)
    batch = tiny_bundle.adapter.tokenize([TARGET[0]])
    activations = tiny_bundle.adapter.capture(batch)
    everywhere = config.deactivator(tiny_bundle.sae).apply(activations)
    only_concept = local.deactivator(tiny_bundle.sae).apply(activations)
    assert only_concept.edited.tolist() == [True]
    changed = (only_concept.activations != activations).any(-1)[0]
    assert 0 < int(changed.sum()) < int((everywhere.activations != activations).any(-1)[0].sum())
    kept = ~changed
    assert torch.equal(only_concept.activations[0, kept], activations[0, kept])
    torch.testing.assert_close(only_concept.activations[0, changed], everywhere.activations[0, changed])


def test_residual_edit_changes_only_the_concepts_tokens_through_the_pipeline(tiny_bundle, config):
    residual = config.model_copy(update={"edit_output": "residual"}, deep=True)
    pipe = tiny_bundle.pipeline
    batch = tiny_bundle.adapter.tokenize([TARGET[0]])
    activations = tiny_bundle.adapter.capture(batch)
    edited = residual.deactivator(tiny_bundle.sae).apply(activations)
    changed = (edited.activations != activations).any(-1)[0]
    assert edited.edited.tolist() == [True] and changed.any() and not changed[0]
    assert not changed[1:].all(), "positions where no concept feature fires keep the layer's own output"
    non_target = "a photo of a quiet harbour"
    with erasure(pipe, residual, tiny_bundle.sae) as hook:
        embeds, _ = pipe.encode_prompt([TARGET[0], non_target], "cpu", 1, False)
    plain, _ = pipe.encode_prompt([TARGET[0], non_target], "cpu", 1, False)
    assert hook.prompt_calls[-1].edited == [True, False]
    assert not torch.equal(embeds[0], plain[0]) and torch.equal(embeds[1], plain[1])


def test_the_cache_never_serves_images_of_other_weights(tiny_bundle, config, tmp_path):
    import copy

    from itd_core.pipeline import pipeline_fingerprint

    cache = GenerationCache(tmp_path)
    args = (config, tiny_bundle.sae, [TARGET[0]], [7], SETTINGS)
    first = generate_side_by_side(tiny_bundle.pipeline, *args, cache=cache, model_id="same-name")
    retrained = copy.deepcopy(tiny_bundle.pipeline)
    vars(retrained).pop("_itd_weights_fingerprint", None)  # the copy's weights are about to change
    with torch.no_grad():
        next(retrained.unet.parameters()).add_(0.5)
    assert pipeline_fingerprint(retrained) != pipeline_fingerprint(tiny_bundle.pipeline)
    second = generate_side_by_side(retrained, *args, cache=cache, model_id="same-name")
    assert not second[0].from_cache and second[0].original.tobytes() != first[0].original.tobytes()
    assert generate_side_by_side(tiny_bundle.pipeline, *args, cache=cache, model_id="same-name")[0].from_cache
