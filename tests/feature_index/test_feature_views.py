"""The per-feature views of a built index: statistics with examples in context, and text search."""

from __future__ import annotations

import pytest

from itd_core.errors import ItdError
from tests.feature_index.conftest import CORPUS


def test_examples_carry_context_and_special_flags(built_index):
    stats = built_index.corpus_stats
    seen_special = seen_word = False
    for f in range(built_index.n_features):
        for example in built_index.top_examples(f, 5):
            assert example.prompt == CORPUS[example.prompt_index]
            assert example.pieces[example.peak].strip().lower() in (example.token.removesuffix("</w>").lower(), example.token.lower())
            seen_special |= example.is_special
            seen_word |= not example.is_special and example.left != ""
        report = built_index.stats(f)
        assert report.fire_count == int(stats.arrays["fire_count"][f])
        assert sum(report.histogram_counts) == report.fire_count
        if report.fire_count:
            assert report.max_activation >= report.mean_activation > 0
    assert seen_special and seen_word, "CLIP padding/EOS examples are flagged special; word examples have context"


def test_text_search_over_labels_and_top_tokens(built_index):
    stats = built_index.corpus_stats
    table = stats.top_token_table.to_pandas()
    words = table[~table["word"].str.startswith("<")]
    feature, word = int(words.iloc[0]["feature"]), str(words.iloc[0]["word"])
    hits = built_index.search_text(word.upper(), limit=500)
    assert feature in [h.feature for h in hits] and all("tokens" in h.matched for h in hits)

    built_index.labels.set(11, "Picasso guitars")
    try:
        hits = built_index.search_text("picasso")
        assert hits[0].feature == 11 and "label" in hits[0].matched and hits[0].label == "Picasso guitars"
        assert built_index.search_text("Picasso guitars")[0].score >= 3.0, "exact label match scores highest"
    finally:
        built_index.labels.delete(11)
    assert built_index.search_text("zzzqqq") == []
    with pytest.raises(ItdError, match="empty"):
        built_index.search_text("   ")


def test_prompts_the_tokenizer_reads_alike_show_once_among_the_top_examples(tiny_bundle, tmp_path):
    from feature_index import FeatureIndex

    corpus = ["A red circle on a table", "a red circle on a table", "A RED CIRCLE ON A TABLE", "a blue star", "two green hearts"]
    index = FeatureIndex.open(tiny_bundle, tmp_path / "index")
    index.build(corpus, top_k=5, batch_size=8)
    repeated = 0
    for feature in range(index.n_features):
        shown = [(tuple(e.pieces), e.peak) for e in index.top_examples(feature, 5)]
        assert len(shown) == len(set(shown)), f"feature {feature} shows one example twice"
        repeated += sum(e.prompt_index < 3 for e in index.top_examples(feature, 5)) == 1
    assert repeated, "features that fire on the three spellings show one of them"
