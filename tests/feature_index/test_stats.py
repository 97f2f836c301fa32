"""Corpus statistics against a brute-force computation, on CLIP (padding kept) and masked BERT (padding skipped)."""

from __future__ import annotations

import numpy as np
import pytest

from feature_index.stats import CorpusStats, build_statistics, hist_edges
from itd_core.errors import ItdError
from tests.feature_index.brute_force import brute_force_stats, encoder_blocks
from tests.feature_index.conftest import CORPUS

K = 4


def _check_against_brute_force(stats: CorpusStats, expected: dict) -> None:
    a = stats.arrays
    assert stats.n_tokens == expected["n_tokens"]
    np.testing.assert_array_equal(a["fire_count"], expected["fire_count"])
    np.testing.assert_array_equal(a["prompt_count"], expected["prompt_count"])
    np.testing.assert_allclose(a["act_max"], expected["act_max"], rtol=1e-6)
    np.testing.assert_allclose(a["act_sum"], expected["act_sum"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a["hist"], expected["hist"])
    assert int(a["hist"].sum()) == int(expected["fire_count"].sum())
    for f, top in enumerate(expected["top"]):
        got = [(float(v), int(p), int(pos)) for v, p, pos in zip(a["top_values"][f], a["top_prompt"][f], a["top_position"][f]) if p >= 0]
        assert [(p, pos) for _, p, pos in got] == [(p, pos) for _, p, pos in top], f"feature {f}"
        np.testing.assert_allclose([v for v, _, _ in got], [v for v, _, _ in top], rtol=1e-6)


def test_clip_statistics_equal_brute_force(tiny_bundle, tmp_path):
    adapter, sae = tiny_bundle.adapter, tiny_bundle.sae
    prompts = CORPUS[:12] + [""]  # "" tokenises to nothing: skipped and counted
    report = build_statistics(adapter, sae, "fp-test", prompts, tmp_path, top_k=K, batch_size=5)
    assert report.n_empty_prompts == 1 and report.warnings
    stats = CorpusStats.open(report.folder, "fp-test", sae.n_latents)
    expected = brute_force_stats(sae, encoder_blocks(adapter, prompts, 5, skip={12}), len(prompts), K, hist_edges())
    assert stats.n_tokens == 12 * (adapter.max_length - 1), "CLIP: every position but BOS, padding included"
    _check_against_brute_force(stats, expected)
    # duplicates: prompts 1 and 4 are equal, so wherever both are top examples the earlier comes first
    top = stats.arrays["top_prompt"]
    for row in top:
        listed = [int(p) for p in row if p >= 0]
        if 1 in listed and 4 in listed:
            assert listed.index(1) < listed.index(4)


def test_masked_encoder_statistics_skip_padding(tmp_path):
    from tests.itd_core.conftest import build_tiny_bert_adapter
    from tests.tiny_models import build_tiny_sae

    adapter = build_tiny_bert_adapter()
    sae = build_tiny_sae(n_latents=64, k=4)
    prompts = CORPUS[:8]
    report = build_statistics(adapter, sae, "fp-bert", prompts, tmp_path, top_k=K, batch_size=3)
    stats = CorpusStats.open(report.folder, "fp-bert", sae.n_latents)
    lengths = adapter.tokenize(prompts).attention_mask.sum(1)
    assert stats.n_tokens == int((lengths - 1).sum()), "BERT with a mask: attended positions but CLS only"
    _check_against_brute_force(stats, brute_force_stats(sae, encoder_blocks(adapter, prompts, 3), len(prompts), K, hist_edges()))
    for f in range(sae.n_latents):
        for example in stats.examples(f, K):
            assert example.position < len(example.pieces), "no padding position among the examples"

    # from an activation cache, which keeps the padding positions: they are dropped here too
    from itd_core.activation_cache import build_activation_cache

    cache = build_activation_cache(adapter, prompts, tmp_path / "cache", progress=False)
    from_cache = build_statistics(adapter, sae, "fp-bert", prompts, tmp_path / "from-cache", top_k=K, activation_cache=cache)
    cached_stats = CorpusStats.open(from_cache.folder, "fp-bert", sae.n_latents)
    assert cached_stats.n_tokens == stats.n_tokens
    blocks = []
    for shard in cache.iter_shards():
        attended = shard.position.long() < lengths[shard.prompt_index.long()]
        blocks.append((shard.activations.float()[attended], shard.prompt_index.long()[attended], shard.position.long()[attended]))
    _check_against_brute_force(cached_stats, brute_force_stats(sae, blocks, len(prompts), K, hist_edges()))


def test_interrupted_build_resumes_to_the_same_result(tiny_bundle, tmp_path):
    adapter, sae = tiny_bundle.adapter, tiny_bundle.sae
    prompts = CORPUS[:10]
    with pytest.raises(ItdError, match="resume"):
        build_statistics(adapter, sae, "fp", prompts, tmp_path / "a", top_k=K, batch_size=3, stop_after_prompts=4)
    resumed = build_statistics(adapter, sae, "fp", prompts, tmp_path / "a", top_k=K, batch_size=3)
    assert resumed.resumed_from == 6 and not resumed.reused  # stops at the first batch boundary past 4 prompts
    fresh = build_statistics(adapter, sae, "fp", prompts, tmp_path / "b", top_k=K, batch_size=3)
    a = CorpusStats.open(resumed.folder, "fp", sae.n_latents).arrays
    b = CorpusStats.open(fresh.folder, "fp", sae.n_latents).arrays
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=name)
    again = build_statistics(adapter, sae, "fp", prompts, tmp_path / "a", top_k=K, batch_size=3)
    assert again.reused, "same SAE and corpus: nothing is recomputed"
    other_corpus = build_statistics(adapter, sae, "fp", prompts[:-1], tmp_path / "a", top_k=K, batch_size=3)
    assert not other_corpus.reused and other_corpus.folder != again.folder


def test_statistics_from_the_activation_cache(tiny_bundle, tmp_path):
    from itd_core.activation_cache import build_activation_cache

    adapter, sae = tiny_bundle.adapter, tiny_bundle.sae
    prompts = CORPUS[:9]
    cache = build_activation_cache(adapter, prompts, tmp_path / "cache", shard_tokens=300, progress=False)  # several shards
    assert len(cache.shards) > 1
    report = build_statistics(adapter, sae, "fp", prompts, tmp_path / "stats", top_k=K, activation_cache=cache, batch_size=2)
    stats = CorpusStats.open(report.folder, "fp", sae.n_latents)
    assert stats.manifest["source"].startswith("activation-cache:")
    blocks = [(s.activations.float(), s.prompt_index.long(), s.position.long()) for s in cache.iter_shards()]
    _check_against_brute_force(stats, brute_force_stats(sae, blocks, len(prompts), K, hist_edges()))
    with pytest.raises(ItdError, match="other prompts"):
        build_statistics(adapter, sae, "fp", prompts[:5], tmp_path / "stats", activation_cache=cache)
