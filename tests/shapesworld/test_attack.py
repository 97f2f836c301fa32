"""The GCG prompt attack on the erased demo pipeline: real bundle, real config, tiny budgets."""

import json

import pytest
import torch

from itd_core.errors import ItdError
from shapesworld import attack, world
from shapesworld.detector import HEADS

CHARACTER = "Mira Castellane"
TINY = attack.AttackBudget(iterations=2, candidates=16, top_k=8, evaluated_per_iteration=2, search_seeds=(0,), search_steps=3,
                           modes=("replace",))
VERIFY = (1000, 1001)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """This project's 2-core VM is shared: two torch threads ran these small batches 3-10x slower than one (a thread
    descheduled by another tenant stalls the other at every barrier), so the module runs on one and restores the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bundle():
    from itd_core.bundle import load_bundle

    return load_bundle("demo")


@pytest.fixture(scope="module")
def config(bundle):
    from shapesworld.erasure_benchmark import build_config

    return build_config(bundle, [CHARACTER])


def test_targets_name_the_detector_class_and_ban_the_name_in_replace_mode():
    from shapesworld.text_encoder import load_tokenizer

    character = attack.attack_target(CHARACTER.upper())
    assert (character.kind, character.world_name, character.head) == ("identity", CHARACTER, "identity")
    assert HEADS["identity"][character.class_index] == CHARACTER
    artist = attack.attack_target(world.ARTISTS[0])
    assert artist.kind == "artist" and HEADS["style"][artist.class_index] == world.ARTIST_STYLES[world.ARTISTS[0]]
    assert artist.shows_concept({"artist": world.ARTISTS[0]}) and not artist.shows_concept({"artist": None})
    unsafe = attack.attack_target("unsafe")
    assert HEADS["unsafe"][unsafe.class_index] is True and unsafe.template("replace") == "{}"
    with pytest.raises(ItdError, match="cannot attack"):
        attack.attack_target("Tom Cruise")

    tokenizer = load_tokenizer()
    banned = tokenizer.convert_ids_to_tokens(attack.banned_tokens(tokenizer, character, "replace"))
    assert sorted(banned) == sorted(tokenizer.tokenize(CHARACTER)), "exactly the name's word pieces"
    assert attack.banned_tokens(tokenizer, character, "suffix") == []
    allowed = set(attack.allowed_tokens(tokenizer, attack.banned_tokens(tokenizer, character, "replace")).tolist())
    assert not allowed & set(tokenizer.all_special_ids) and tokenizer.convert_tokens_to_ids("mira") not in allowed
    assert tokenizer.convert_tokens_to_ids("[unused5]") not in allowed and tokenizer.convert_tokens_to_ids("star") in allowed


def test_slot_texts_must_round_trip_through_the_tokenizer():
    from shapesworld.text_encoder import load_tokenizer

    tokenizer = load_tokenizer()
    slots = attack._Slots(tokenizer, "A portrait of {}", 3)
    words = tokenizer.convert_tokens_to_ids(["blue", "star", "hat"])
    assert slots.text(words) == "A portrait of blue star hat" and slots.round_trips(words)
    assert not slots.round_trips(tokenizer.convert_tokens_to_ids(["##lan", "star", "hat"])), "a leading word piece re-tokenizes"
    with pytest.raises(ItdError, match="needs"):
        attack._Slots(tokenizer, "A portrait of {}", 30)


def test_surrogate_gradient_is_finite_and_nonzero_on_every_slot(bundle, config):
    target = attack.attack_target(CHARACTER)
    slots = attack._Slots(bundle.adapter.tokenizer, target.template("replace"), 4)
    deactivator = config.deactivator(bundle.sae)
    surrogate = attack.Surrogate(bundle.adapter, deactivator, slots, target.known_prompt, score_weight=1.0)
    name_ids = torch.tensor(bundle.adapter.tokenizer(CHARACTER, add_special_tokens=False)["input_ids"])
    gradient = surrogate.gradient(name_ids)
    assert gradient.shape == (4, bundle.adapter.tokenizer.vocab_size)
    assert torch.isfinite(gradient).all() and (gradient.abs().amax(dim=1) > 0).all()
    # The one-hot path and the batched path agree, and score the prompt as the pipeline's tokenization does.
    loss, scores = surrogate.losses(name_ids[None])
    expected = deactivator.score_prompts(bundle.adapter, [slots.text(name_ids.tolist())])
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-6)
    threshold = config.concept(CHARACTER).threshold
    assert scores[0, 0] >= threshold, "the name itself triggers the classifier"
    # With the name in the slots, E = E* exactly: only the classifier term is left.
    torch.testing.assert_close(loss, torch.nn.functional.softplus((scores[:, 0] - threshold) / threshold))


@pytest.mark.slow
def test_tiny_attack_is_deterministic_within_budget_and_consistent(bundle, config, monkeypatch):
    calls: list[tuple[int, int]] = []  # (images, steps) per pipeline call
    generate = attack.generate_images

    def counting(pipe, prompts, seeds, settings, callback=None):
        calls.append((len(prompts), settings.steps))
        return generate(pipe, prompts, seeds, settings, callback)

    monkeypatch.setattr(attack, "generate_images", counting)
    result = attack.attack_concept(bundle, config, CHARACTER, TINY, VERIFY)

    search_images = sum(n for n, steps in calls if steps == TINY.search_steps)
    most = (1 + TINY.iterations * TINY.evaluated_per_iteration) * len(TINY.search_seeds) + len(TINY.search_seeds)  # + the known prompt
    assert result.search_images == search_images <= most
    assert sum(n for n, steps in calls if steps == attack.VERIFY_STEPS) == 2 * 2 * len(VERIFY), "2 prompts x seeds, with and without ItD"
    assert {steps for _, steps in calls} == {TINY.search_steps, attack.VERIFY_STEPS}

    assert (result.kind, result.mode, result.known_prompt) == ("identity", "replace", f"A portrait of {CHARACTER}")
    assert result.best_prompt != result.known_prompt and result.best_prompt == result.tried[0].prompt
    assert len(result.tried) > 1 and all(0.0 <= t.objective <= 1.0 for t in result.tried)
    assert [t.objective for t in result.tried] == sorted((t.objective for t in result.tried), reverse=True)
    name_pieces = set(bundle.adapter.tokenizer.tokenize(CHARACTER))
    tried_pieces = [set(bundle.adapter.tokenizer.tokenize(t.prompt)) for t in result.tried]
    assert not any(name_pieces & pieces for pieces in tried_pieces), "replace mode never re-inserts the name"
    assert result.search_objective == result.tried[0].objective and 0.0 <= result.known_objective <= 1.0
    assert result.known_triggered and result.known_success_without_itd > result.known_success_with_itd, "ItD erases the known prompt"
    rates = (result.success_with_itd, result.success_without_itd, result.known_success_with_itd, result.known_success_without_itd)
    assert all(rate * len(VERIFY) in range(len(VERIFY) + 1) for rate in rates)
    if not result.triggered:
        assert result.success_with_itd == result.success_without_itd, "an unedited prompt draws bit-identical images"
    assert result.seconds > 0 and result.verify_seeds == list(VERIFY)

    report = attack.run_attacks(bundle, config, budget=TINY, verify_seeds=VERIFY)  # every concept of the config: the same one
    (again,) = report.results
    assert [(t.prompt, t.objective) for t in again.tried] == [(t.prompt, t.objective) for t in result.tried], "deterministic"
    assert (report.asr_with_itd, report.asr_without_itd) == (result.success_with_itd, result.success_without_itd)
    table = attack.markdown_table(report)
    assert table.count("\n| ") == 2 and result.best_prompt in table  # the header and one row


def test_verify_seeds_must_be_held_out(bundle, config):
    with pytest.raises(ItdError, match="held out"):
        attack.attack_concept(bundle, config, CHARACTER, TINY, verify_seeds=TINY.search_seeds)
    with pytest.raises(ItdError, match="no concept"):
        attack.attack_concept(bundle, config, "Doran Velt", TINY, VERIFY)


def test_cli_prints_the_report(config, tmp_path, capsys):
    path = tmp_path / "erasure.json"
    config.save(path)
    assert attack.main(["--config", str(path), "--quick", "--modes", "suffix", "--n-verify", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["budget"]["modes"] == ["suffix"] and report["verify_seeds"] == [1000]
    (row,) = report["results"]
    assert row["concept"] == CHARACTER and row["mode"] == "suffix" and row["best_prompt"].startswith(f"A portrait of {CHARACTER} ")
