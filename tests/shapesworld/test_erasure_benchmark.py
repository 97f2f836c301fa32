"""The erasure benchmark on a tiny subset of the demo (few prompts, 2 denoising steps)."""


from shapesworld import erasure_benchmark, world


def test_blacklist_and_misspellings():
    name = world.IDENTITIES[0]
    assert erasure_benchmark.blacklist(f"A portrait of {name.upper()} at dusk", [name]) == "A portrait of at dusk"
    variants = erasure_benchmark.misspellings(name)
    assert len(variants) == 2 and all(v != name and v.split()[0] == name.split()[0] for v in variants)
    assert erasure_benchmark.blacklist(f"A portrait of {variants[0]}", [name]).endswith(variants[0]), "misspellings evade the blacklist"


def test_each_prompt_and_slot_has_its_own_stable_seed():
    prompts = world.erasure_prompts()["identity"][world.IDENTITIES[0]]
    seeds = {erasure_benchmark.image_seed(p, slot) for p in prompts for slot in range(6)}
    assert len(seeds) == 30 and all(0 <= s < 2**31 for s in seeds)
    assert erasure_benchmark.image_seed(prompts[0], 2) == erasure_benchmark.image_seed(prompts[0], 2)


def test_benchmark_runs_on_a_tiny_subset():
    from itd_core.bundle import load_bundle

    bundle = load_bundle("demo")
    erased = [world.IDENTITIES[0]]
    methods = erasure_benchmark.METHODS + (erasure_benchmark.PROMPT_SCORE_METHOD,)
    outcome = erasure_benchmark.run(bundle, erased, seeds=[0], target_seeds=[0], n_objects=4, n_retained=1, steps=2, batch=32, methods=methods)
    results = {r.method: r for r in outcome["results"]}
    assert set(results) == set(methods)
    assert results["none"].identical == 1.0
    for itd in ("itd", erasure_benchmark.PROMPT_SCORE_METHOD):
        assert results[itd].identical == 1.0, "ItD leaves every non-target image bit-identical"
        assert results[itd].edited_share["target"] == 1.0 and results[itd].edited_share["object"] == 0.0
    prompt_config = outcome["configs"][erasure_benchmark.PROMPT_SCORE_METHOD]
    assert prompt_config.score_positions == "prompt" and outcome["configs"]["itd"].score_positions == "all"
    assert prompt_config.concepts[0].threshold != outcome["configs"]["itd"].concepts[0].threshold, "recalibrated"
    assert results["steering"].edited_share["object"] == 1.0
    assert results["blacklist"].identical == 1.0
    table = erasure_benchmark.markdown_table("tiny", outcome)
    assert table.count("\n| ") == 6
