"""The shipped demo bundle (MiniLM + the committed demo SAE) through the `itd` CLI: the ItD
classifier separates a character's prompts from everything else, as on a real model."""

import json

import pytest

from itd_cli.main import main
from shapesworld import world

NAME = world.IDENTITIES[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_cli")
    sets = world.erasure_prompts(n_retain=60, seed=777)
    (folder / "templates.txt").write_text("\n".join(world.IDENTITY_TEMPLATES) + "\n")
    retain = [p for n, ps in sets["identity"].items() if n != NAME for p in ps] + [r["prompt"] for r in sets["retain"]]
    (folder / "retain.txt").write_text("\n".join(retain) + "\n")
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_demo_is_the_default_bundle_and_its_classifier_separates_a_character(capsys, files):
    config = files / "erasure.json"
    selected = run(capsys, "concept", "select", "--concept", NAME, "--templates", files / "templates.txt", "--method", "paper",
                   "--retain", files / "retain.txt", "-o", config, "--json")
    assert selected["n_features"] >= 5 and selected["styled_retain"] == 0, "the paper's selection has no generated sets"
    assert json.loads(config.read_text())["sae"]["path"] == "demo"
    calibration = run(capsys, "calibrate", config, "--retain", files / "retain.txt", "--json")["concepts"][0]
    assert calibration["tpr"] == 1.0 and calibration["fpr"] == 0.0
    held_out = world.erasure_prompts(n_retain=20, seed=4242)
    others = ["a red circle", "Painting in the style of " + world.ARTISTS[0], f"A portrait of {world.IDENTITIES[1]}"]
    others += [r["prompt"] for r in held_out["retain"][:5]]
    rows = run(capsys, "classify", config, f"{NAME} at a public event", f"a picture showing {NAME}", *others, "--json")["prompts"]
    assert [r["edited"] for r in rows] == [True, True] + [False] * len(others)
    low, high = max(r["scores"][NAME] for r in rows[2:]), min(r["scores"][NAME] for r in rows[:2])
    assert high > 10 * low, "targets score an order of magnitude above everything else"


def test_recommended_flow_catches_disguised_names_and_leaves_hard_negatives(capsys, files):
    config = files / "recommended.json"
    selected = run(capsys, "concept", "select", "--concept", NAME, "--kind", "person", "--templates", files / "templates.txt",
                   "--retain", files / "retain.txt", "-o", config, "--json")
    assert selected["method"] == "recommended" and selected["generated_phrasings"] > 20 and selected["generated_hard_negatives"] > 10
    assert selected["styled_retain"] == len((files / "retain.txt").read_text().splitlines())
    stored = json.loads(config.read_text())
    assert stored["score_positions"] == "peak" and stored["edit_negative_prompt"] is False and stored["concepts"][0]["kind"] == "person"
    calibration = run(capsys, "calibrate", config, "--retain", files / "retain.txt", "--json")
    assert calibration["rule"] == "phrasings" and calibration["concepts"][0]["fpr"] <= 0.02
    first, last = NAME.split()
    disguised = [f"A portrait of {first} {last.replace('a', 'а')}",  # Cyrillic a
                 f"a candid snapshot of {first.upper()} {last.upper()}", f"Ein Porträt von {NAME}"]
    others = ["a red circle", f"A portrait of {world.IDENTITIES[1]}", "Painting in the style of " + world.ARTISTS[0]]
    rows = run(capsys, "classify", config, *disguised, *others, "--json")["prompts"]
    assert [r["edited"] for r in rows] == [True] * len(disguised) + [False] * len(others)
