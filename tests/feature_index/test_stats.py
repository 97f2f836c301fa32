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


TWO_PROCESS_SCRIPT = """
import importlib.util, json, sys
from pathlib import Path

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

builders = load("itd_stats_test_conftest", {conftest!r})
tiny = load("itd_stats_test_tiny", {tiny!r})
from accelerate import PartialState
from feature_index.stats import build_statistics

prompts = json.loads(Path({prompts!r}).read_text())
report = build_statistics(builders.build_tiny_clip_adapter(), tiny.build_tiny_sae(n_latents=64, k=4), "fp-ddp", prompts, Path({out!r}),
                          top_k={top_k}, batch_size=3)
rank = PartialState().process_index
Path({out!r}, f"rank{{rank}}.json").write_text(json.dumps({{"n_tokens": report.n_tokens, "folder": report.folder}}))
"""


@pytest.mark.slow
def test_two_processes_give_the_one_process_statistics(tmp_path):
    """``accelerate launch --num_processes 2`` (CPU, gloo): each process takes half the corpus, the main one
    merges; counts, histograms, maxima, top-K examples (ties included: the corpus repeats prompts across the
    halves) and their tokens equal the one-process pass exactly, the float64 sums to the order of additions."""
    import json
    import textwrap
    from pathlib import Path

    import pyarrow.parquet as pq

    from feature_index.stats import FEATURES_FILE, TOP_TOKENS_FILE
    from tests.distributed import launch_two_cpu_processes
    from tests.itd_core.conftest import build_tiny_clip_adapter
    from tests.tiny_models import build_tiny_sae

    prompts = CORPUS[:15] + ["", CORPUS[1], CORPUS[0]]  # an empty prompt; repeats of first-half prompts in the second half
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    script = tmp_path / "stats_ddp.py"
    script.write_text(textwrap.dedent(TWO_PROCESS_SCRIPT.format(
        conftest=str(Path(__file__).parents[1] / "itd_core" / "conftest.py"), tiny=str(Path(__file__).parents[1] / "tiny_models.py"),
        prompts=str(tmp_path / "prompts.json"), out=str(tmp_path / "two"), top_k=K)))
    result = launch_two_cpu_processes(script, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    adapter, sae = build_tiny_clip_adapter(), build_tiny_sae(n_latents=64, k=4)
    one = build_statistics(adapter, sae, "fp-ddp", prompts, tmp_path / "one", top_k=K, batch_size=3)
    reports = [json.loads((tmp_path / "two" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["n_tokens"] for r in reports] == [one.n_tokens] * 2, "every process reports the whole corpus's statistics"
    two_folder = Path(reports[0]["folder"])
    assert two_folder.name == Path(one.folder).name, "the same build key: a 2-process build is the same statistics"
    two_stats, one_stats = CorpusStats.open(two_folder, "fp-ddp", 64), CorpusStats.open(one.folder, "fp-ddp", 64)
    assert two_stats.manifest["processes"] == 2 and two_stats.n_tokens == one_stats.n_tokens
    for name, expected in one_stats.arrays.items():
        if name == "act_sum":
            np.testing.assert_allclose(two_stats.arrays[name], expected, rtol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(two_stats.arrays[name], expected, err_msg=name)
    top = one_stats.arrays["top_prompt"]
    assert any(0 in row and 17 in row for row in top.tolist()), "a tie across the two halves is in some top-K list"
    assert pq.read_table(two_folder / TOP_TOKENS_FILE).equals(pq.read_table(Path(one.folder) / TOP_TOKENS_FILE))
    def files(folder: Path) -> set[str]:
        return {p.name for p in folder.iterdir() if not p.name.startswith(".lock")}

    assert files(two_folder) == files(Path(one.folder)), "no slice or checkpoint files left behind"
    assert (two_folder / FEATURES_FILE).is_file()
