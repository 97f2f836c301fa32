"""The erasure benchmark on a tiny subset of the demo (few prompts, 2 denoising steps)."""

import pytest

from shapesworld import erasure_benchmark, world


def test_blacklist_and_misspellings():
    name = world.IDENTITIES[0]
    assert erasure_benchmark.blacklist(f"A portrait of {name.upper()} at dusk", [name]) == "A portrait of at dusk"
    variants = erasure_benchmark.misspellings(name)
    assert len(variants) == 2 and all(v != name and v.split()[0] == name.split()[0] for v in variants)
    assert erasure_benchmark.blacklist(f"A portrait of {variants[0]}", [name]).endswith(variants[0]), "misspellings evade the blacklist"


def test_benchmark_runs_on_a_tiny_subset():
    from itd_core.bundle import load_bundle

    try:
        bundle = load_bundle("demo")
        bundle.pipeline
    except Exception as error:  # the pipeline's trained weights are a separate asset
        pytest.skip(f"demo pipeline not available: {error}")
    erased = [world.IDENTITIES[0]]
    outcome = erasure_benchmark.run(bundle, erased, seeds=[0], n_objects=4, n_retained=1, steps=2, batch=32)
    results = {r.method: r for r in outcome["results"]}
    assert set(results) == set(erasure_benchmark.METHODS)
    assert results["none"].identical == 1.0
    assert results["itd"].identical == 1.0, "ItD leaves every non-target image bit-identical"
    assert results["itd"].edited_share["target"] == 1.0 and results["itd"].edited_share["object"] == 0.0
    assert results["steering"].edited_share["object"] == 1.0
    assert results["blacklist"].identical == 1.0
    table = erasure_benchmark.markdown_table("tiny", outcome)
    assert table.count("\n| ") == 5
