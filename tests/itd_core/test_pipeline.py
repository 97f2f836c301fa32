import pytest
import torch

from itd_core.concept import select_concept
from itd_core.erasure_config import ConceptEntry, FeatureEntry
from itd_core.pipeline import GenerationCache, GenerationSettings, apply_erasure, erasure, generate_images, generate_side_by_side

TARGET = ["A portrait of Tom Cruise", "Tom Cruise in an official photo"]
RETAIN = ["A portrait of Brad Pitt", "a cat on a mat", "a house by a lake"]
POOL = RETAIN + ["a bowl of fruit", "a red car on a road", "Emma Stone in an official photo", "a dog in a park", "snowy mountains"]
SETTINGS = GenerationSettings(steps=2, size=32, guidance=5.0)


@pytest.fixture(scope="module")
def setup(tiny_bundle):
    """(config, non_targets): one concept whose threshold the target prompt passes and two other prompts do not."""
    selection = select_concept(tiny_bundle.adapter, tiny_bundle.sae, "Tom Cruise", TARGET, RETAIN, top_n=16)
    config = tiny_bundle.new_erasure_config()
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
