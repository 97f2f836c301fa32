"""Automatic feature labels: from the top tokens of any SAE, and from the world's attributes on the demo."""

from __future__ import annotations

import json

import pytest
import torch

from feature_index.auto_labels import AUTO_LABELS_FILE, MIN_WORD_SHARE, attribute_labels, display_label, labels_key, load_labels, save_labels, token_labels
from feature_index.tokens import normalize_token


def test_token_labels_name_the_words_the_top_examples_peak_on(built_index):
    stats = built_index.corpus_stats
    labels = token_labels(stats)
    assert labels, "some feature of the tiny SAE has top examples that agree on a word"
    for feature, label in labels.items():
        examples = built_index.top_examples(feature, stats.top_k)
        assert examples
        if label.source == "tokens":
            words = set(label.text.split(", "))
            on_label = 0
            for e in examples:  # the whole word the peak token belongs to, read off the example's display pieces
                peak_word = normalize_token(e.token)
                on_label += any(peak_word and (peak_word in w or w == "end of prompt" and e.is_special) for w in words)
            assert label.precision >= MIN_WORD_SHARE
            assert on_label >= 1
        else:
            assert label.source == "context" and label.text.startswith('after "')


def test_attribute_labels_match_a_brute_force_count(tiny_bundle):
    """Precision and recall of the chosen attribute, against a per-prompt loop written independently."""
    adapter, sae = tiny_bundle.adapter, tiny_bundle.sae
    prompts = ["a red car", "a red house", "a red dog on the grass", "a blue car", "a blue sky", "a blue house by a lake",
               "a green tree", "a red apple", "a blue bird", "a red sofa in a room", "a green field", "a blue door"]
    attributes = [{f"colour: {p.split()[1]}"} for p in prompts]
    labels = attribute_labels(adapter, sae, prompts, attributes, batch_size=5)
    fired: list[set[int]] = []
    with torch.no_grad():
        for prompt in prompts:
            batch = adapter.tokenize([prompt])
            n = int(batch.prompt_mask[0].sum())
            code = sae.encode(adapter.capture(batch)[0, 1:n].float())
            fired.append({int(i) for i, v in zip(code.indices.flatten().tolist(), code.values.flatten().tolist()) if v > 0})
    assert labels
    for feature, label in labels.items():
        attribute = label.text
        fires = [feature in f for f in fired]
        has = [attribute in a for a in attributes]
        both = sum(f and h for f, h in zip(fires, has))
        assert label.precision == pytest.approx(both / sum(fires), abs=1e-4)
        assert label.recall == pytest.approx(both / sum(has), abs=1e-4)


def test_labels_are_kept_in_the_folder_and_a_damaged_file_is_recomputed(tmp_path, built_index):
    labels = token_labels(built_index.corpus_stats)
    key = labels_key("f" * 64, "stats-a", ["a prompt"])
    save_labels(tmp_path, key, labels)
    assert load_labels(tmp_path, key) == labels
    assert load_labels(tmp_path, labels_key("f" * 64, "stats-b", ["a prompt"])) is None, "other statistics: recompute"
    (tmp_path / AUTO_LABELS_FILE).write_text('{"key": "' + key + '", "labels": [{"feature": "x"}')
    assert load_labels(tmp_path, key) is None


def test_a_hand_label_overrides_the_automatic_one(built_index):
    auto = built_index.auto_labels()
    feature = next(iter(auto))
    assert built_index.display_labels([feature]) == {feature: f"{auto[feature].text} (auto)"}
    built_index.labels.set(feature, "my own name")
    try:
        assert built_index.display_labels([feature]) == {feature: "my own name"}
        assert display_label(feature, {}, auto).endswith("(auto)")
    finally:
        built_index.labels.delete(feature)


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory):
    from feature_index import FeatureIndex
    from itd_core.bundle import load_bundle

    bundle = load_bundle("demo")
    index = FeatureIndex.open(bundle, tmp_path_factory.mktemp("demo") / "index")
    index.build(bundle.world.index_corpus(), feature_map="none")
    return index


def test_demo_features_are_labelled_with_the_world_attribute_they_predict(demo_index):
    labels = demo_index.auto_labels()
    kinds = {label.text.split(":")[0] for label in labels.values() if label.source == "attributes"}
    assert {"character", "artist", "shape", "colour", "unsafe"} <= kinds
    stored = json.loads((demo_index.folder / AUTO_LABELS_FILE).read_text())
    assert len(stored["labels"]) == len(labels)

    # A feature labelled with a character fires on a portrait of that character, far less on another's.
    adapter, sae = demo_index.bundle.adapter, demo_index.bundle.sae
    best = max((label for label in labels.values() if label.text == "character: Mira Castellane"), key=lambda label: label.precision + label.recall)
    assert best.precision >= 0.9 and best.recall >= 0.5
    peaks = {}
    with torch.no_grad():
        for prompt in ("A portrait of Mira Castellane", "A portrait of Doran Velt"):
            code = sae.encode(adapter.capture([prompt])[0, 1:].float())
            peaks[prompt] = float((code.values * (code.indices == best.feature)).sum(-1).max())
    assert peaks["A portrait of Mira Castellane"] > 0 and peaks["A portrait of Doran Velt"] == 0


def test_searching_water_finds_the_watercolour_features(demo_index):
    hits = demo_index.search_text("water", limit=10)
    assert hits and all("watercolour" in (hit.label or "") for hit in hits[:3])
    assert hits[0].matched[0] in ("auto label", "label")
