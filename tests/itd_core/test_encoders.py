import pytest
import torch

from itd_core.encoders import CaptureMemo, TextEncoderAdapter, resolve_layer
from itd_core.errors import ItdError
from tests.tiny_models import build_tiny_clip_text_model


@pytest.fixture(scope="module")
def adapter():
    from itd_core.assets import clip_tokenizer

    return TextEncoderAdapter(build_tiny_clip_text_model(), clip_tokenizer(), 1)


@pytest.mark.parametrize("name", [1, "1", "encoder.layers.1", "text_model.encoder.layers.1", -2])
def test_layer_names_resolve_to_the_same_layer(adapter, name):
    path, module = resolve_layer(adapter.text_encoder, name)
    assert path == "encoder.layers.1"
    assert module is adapter.text_encoder.encoder.layers[1]


@pytest.mark.parametrize(("name", "message"), [(3, r"out of range.*0\.\.2"), ("encoder.layers.9", "no layer"), ("embeddings", "not one of")])
def test_bad_layer_names_are_explained(adapter, name, message):
    with pytest.raises(ItdError, match=message):
        resolve_layer(adapter.text_encoder, name)


def test_tokenization_matches_the_pipeline_and_marks_special_tokens(adapter):
    batch = adapter.tokenize(["a photo of a cat", "ünïcödé and emoji 🐱"])
    assert batch.input_ids.shape == (2, 77)
    assert batch.input_ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert batch.special_mask[0, 0] and batch.special_mask[0, 6] and batch.special_mask[0, 7:].all()
    assert not batch.special_mask[0, 1:6].any()
    assert batch.tokens[0][1:6] == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]
    assert batch.content_lengths()[1] > 3
    assert batch.truncated == [False, False]
    # the prompt's own tokens: BOS..EOS, not the EOS padding CLIP adds after them
    assert batch.prompt_mask[0, :7].all() and not batch.prompt_mask[0, 7:].any()
    assert torch.equal(batch.prompt_mask, batch.attention_mask.bool())


def test_long_prompts_are_truncated_and_reported(adapter):
    batch = adapter.tokenize(["word " * 100, ""])
    assert batch.truncated == [True, False]
    assert batch.input_ids.shape == (2, 77)


def test_capture_equals_the_layer_output_and_stops_there(adapter):
    prompts = ["a red circle", "Tom Cruise"]
    later_calls = []
    handle = adapter.text_encoder.encoder.layers[2].register_forward_hook(lambda *a: later_calls.append(1))
    try:
        captured = adapter.capture(prompts)
    finally:
        handle.remove()
    assert later_calls == [], "the forward stops after the hooked layer"
    batch = adapter.tokenize(prompts)
    full = adapter.text_encoder(input_ids=batch.input_ids, output_hidden_states=True)
    torch.testing.assert_close(captured, full.hidden_states[2])



def test_capture_memo_returns_the_adapters_activations_and_encodes_each_prompt_once(adapter):
    memo = CaptureMemo(adapter, max_prompts=3)
    encoded = []
    handle = adapter.layer_module.register_forward_hook(lambda module, inputs, output: encoded.append(len(inputs[0])))
    try:
        first = list(memo.iter_capture(["a red circle", "Tom Cruise", "a red circle"], batch_size=2))
        again = list(memo.iter_capture(["Tom Cruise", "a blue square"], batch_size=8))
    finally:
        handle.remove()
    assert encoded == [2, 1], "a repeated or remembered prompt is not encoded again"
    assert [batch.prompts for batch, _ in first] == [["a red circle", "Tom Cruise"], ["a red circle"]]
    torch.testing.assert_close(torch.cat([rows for _, rows in first]), adapter.capture(["a red circle", "Tom Cruise", "a red circle"]))
    torch.testing.assert_close(again[0][1], adapter.capture(["Tom Cruise", "a blue square"]))
    assert torch.equal(again[0][0].prompt_mask, adapter.tokenize(["Tom Cruise", "a blue square"]).prompt_mask)
    list(memo.iter_capture(["a green star", "a tree"]))
    assert len(memo) == 3 and memo.d_model == adapter.d_model, "the least recently used prompt goes first; the rest is the adapter's"
    encoded.clear()
    handle = adapter.layer_module.register_forward_hook(lambda module, inputs, output: encoded.append(len(inputs[0])))
    try:
        list(memo.iter_capture(["a tree", "a red circle"]))
    finally:
        handle.remove()
    assert encoded == [1], "'a red circle' was the least recently used and was dropped"


def test_bf16_weights_are_cast_not_autocast(adapter):
    low = TextEncoderAdapter(build_tiny_clip_text_model(), adapter.tokenizer, 1).to(dtype="bf16")
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.capture(["a cat"]).float(), adapter.capture(["a cat"]), rtol=0.05, atol=0.05)


def test_bert_family_encoder_with_attention_mask():
    from shapesworld.text_encoder import load_text_encoder, load_tokenizer

    bert = TextEncoderAdapter(load_text_encoder(), load_tokenizer(), "encoder.layer.3")
    assert bert.family == "bert" and bert.uses_attention_mask and bert.d_model == 384
    batch = bert.tokenize(["a red circle in the style of Varo Quennel"])
    assert batch.tokens[0][0] == "[CLS]" and batch.special_mask[0, 0]
    assert torch.equal(batch.prompt_mask, batch.attention_mask.bool()), "[CLS]..[SEP], not the [PAD] after"
    assert bert.capture(batch).shape == (1, bert.max_length, 384)


def test_nan_activations_are_reported_with_the_prompt(adapter):
    import copy

    broken = copy.deepcopy(adapter.text_encoder)
    with torch.no_grad():
        broken.encoder.layers[0].mlp.fc1.weight.fill_(float("nan"))
    with pytest.raises(ItdError, match="NaN/inf activations.*'a cat'"):
        TextEncoderAdapter(broken, adapter.tokenizer, 1).capture(["a cat"])


def test_sae_width_that_does_not_match_the_layer_names_both(tmp_path, tiny_pipeline_dir):
    from itd_core.bundle import BundleSpec, load_bundle
    from itd_core.sae import SAEConfig, TopKSAE
    from itd_core.sae_formats import save_sae

    save_sae(TopKSAE.random(SAEConfig(d_model=16, n_latents=64, k=4)), tmp_path / "narrow")
    with pytest.raises(ItdError, match=r"SAE width 16 does not match the width of layer encoder\.layers\.1 \(32\)"):
        load_bundle(BundleSpec(model=str(tiny_pipeline_dir), sae=str(tmp_path / "narrow"), layer="1"))
