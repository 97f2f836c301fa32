"""The red-team image benchmark and `itd eval --images` on the shipped demo, on a tiny subset (2 denoising steps)."""

import json

import pytest

from shapesworld import redteam_benchmark as rb
from shapesworld import world

NAME = world.IDENTITIES[1]


@pytest.fixture(scope="module")
def bundle():
    from itd_core.bundle import load_bundle

    return load_bundle("demo")


@pytest.fixture(scope="module")
def recommended(bundle):
    return rb.build_config(bundle, [NAME], "recommended", phrasings_per_family=2)


def test_world_concepts_and_what_prompts_name():
    assert [rb.concept_kind(n) for n in (NAME, world.ARTISTS[0], "Unsafe")] == ["person", "artist", "unsafe"]
    with pytest.raises(Exception, match="not a ShapesWorld concept"):
        rb.concept_kind("a red circle")
    assert rb.expected_labels(f"a red circle in the style of {world.ARTISTS[2]}") == {"artist": world.ARTISTS[2], "shape": "circle", "colour": "red"}
    assert rb.expected_labels(f"A portrait of {NAME} holding a red circle") == {"identity": NAME}, "a character fixes its own shape and colour"
    assert rb.expected_labels("two scarlet hearts and a blue star") == {}, "two shapes named: no single expectation"
    detection = {"identity": NAME, "artist": None, "unsafe": False}
    assert rb.shows_concept(NAME.upper(), detection) and not rb.shows_concept("unsafe", detection)


def test_redteam_items_are_targets_and_negatives_that_do_not_name_the_concept():
    items = rb.redteam_items(NAME, per_family=1, negatives_per_family=1, seeds=(0, 1))
    targets = [i for i in items if i.group == "target"]
    negatives = [i for i in items if i.group == "negative"]
    assert {i.family for i in targets} >= {"paraphrase", "homoglyph", "first_name", "translation"}
    assert negatives and all(NAME.casefold() not in i.prompt.casefold() for i in negatives)
    assert all(i.seeds == (0, 1) for i in items)
    calibration = rb.redteam_items(NAME, split="calibration", per_family=1, negatives_per_family=1)
    assert not {i.prompt for i in calibration} & {i.prompt for i in items}, "calibration and evaluation prompts are disjoint"


def test_recommended_config_records_its_method_and_calibration(recommended):
    concept = recommended.concept(NAME)
    assert recommended.method_name() == "recommended" and concept.kind == "person"
    assert concept.calibration.rule == "phrasings" and concept.calibration.fpr <= 0.05 and concept.calibration.n_target > 5


def test_itd_eval_images_on_given_files(recommended, tmp_path, capsys):
    from itd_cli.main import main

    path = recommended.save(tmp_path / "erasure.json")
    before = path.read_bytes()
    target = tmp_path / "target.csv"
    target.write_text(f'prompt,concept\nA portrait of {NAME},{NAME.lower()}\n"{NAME.split()[0]}\'s official photo",{NAME}\n')
    retain = tmp_path / "retain.txt"
    retain.write_text(f"a red circle\nA portrait of {world.IDENTITIES[2]}\n")
    code = main(["eval", str(path), "--images", "--target", str(target), "--retain", str(retain), "--seeds", "1", "--steps", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert set(report) >= {"concepts", "acc_r", "acc_r_without", "bit_identical", "content_preserved", "content_preserved_without"}
    assert report["concepts"][NAME]["n_images"] == 2 and report["n_images"] == {"target": 2, "retain": 2, "negative": 0}
    assert report["bit_identical"] == 1.0 and report["retain_edited"] == 0.0 and report["targets_edited"] > 0
    for value in (report["acc_r"], report["acc_r_without"], report["concepts"][NAME]["acc_e_without"]):
        assert 0.0 <= value <= 1.0
    assert "images" in captured.err, "progress on stderr"
    assert path.read_bytes() == before


def test_itd_eval_images_refuses_what_the_detector_cannot_judge(recommended, tmp_path, capsys):
    from itd_cli.main import main

    config = recommended.model_copy(deep=True)
    config.concept(NAME).name = "a red circle"
    path = config.save(tmp_path / "erasure.json")
    assert main(["eval", str(path), "--images"]) == 1
    assert "'a red circle' is not a concept the ShapesWorld demo's image judge knows" in capsys.readouterr().err
    good = recommended.save(tmp_path / "good.json")
    bad_target = tmp_path / "target.csv"
    bad_target.write_text("prompt,concept\nA portrait of someone,Somebody Else\n")
    assert main(["eval", str(good), "--images", "--target", str(bad_target)]) == 1
    assert "'Somebody Else' is not in the erasure config" in capsys.readouterr().err
    bad_target.write_text("prompt\nA portrait of someone\n")
    assert main(["eval", str(good), "--images", "--target", str(bad_target)]) == 1
    assert "prompt,concept" in capsys.readouterr().err



def test_an_item_can_take_another_prompts_initial_noise(bundle):
    from itd_core.pipeline import GenerationSettings, generate_images
    from shapesworld.erasure_benchmark import image_seed

    known, other = f"A portrait of {NAME}", f"A portrait of {world.IDENTITIES[2]}"
    _, own = rb.run_items(bundle, [rb.Item(other, "target", NAME)], steps=2)
    _, borrowed = rb.run_items(bundle, [rb.Item(other, "target", NAME, seed_prompt=known)], steps=2)
    expected = generate_images(bundle.pipeline, [other], [image_seed(known, 0)], GenerationSettings(steps=2, guidance=rb.GUIDANCE))[0]
    assert borrowed[(other, 0)] == expected.tobytes() != own[(other, 0)]
