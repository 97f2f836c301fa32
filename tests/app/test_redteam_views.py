"""Red-team views (issue #14): the demo detector's verdict under Preview images, and generated phrasings and hard
negatives as Calibration prompt sets. Real components: ShapesWorld's renderer and detector, the red-team generator,
and one AppTest session on the tiny bundle."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app_support import preview, prompt_sets
from app_support.calibration import ConceptScores, choose_threshold, report
from itd_core import redteam
from itd_core.calibration import fpr_threshold
from itd_core.pipeline import SideBySide
from shapesworld import world
from shapesworld.demo import PROVIDER

MIRA = "Mira Castellane"
WORLD = PROVIDER.world
JUDGE = WORLD.image_judge
PHRASINGS = f"Generated phrasings of {MIRA} (red team, calibration split)"


def _image(sample) -> Image.Image:
    return Image.fromarray(sample.image)


@pytest.fixture(scope="module")
def images():
    """A clean portrait of Mira Castellane and an object picture, as the demo's pipeline would give them (64 px)."""
    return _image(world.render_identity(MIRA, seed=1)), _image(world.sample(3, 0, kind="object"))


# --------------------------------------------------------------------------- preview: the detector's verdict

def test_the_verdict_says_whether_the_erased_image_still_shows_the_concept(images):
    portrait, objects = images
    gone, kept = preview.detect_pairs([SideBySide("A portrait of Mira Castellane", 0, portrait, objects, True),
                                       SideBySide("A portrait of Mira Castellane", 1, portrait, portrait, True)], JUDGE)
    assert gone[0]["identity"] == MIRA and gone[1]["identity"] is None and kept[1]["identity"] == MIRA

    original = preview.detection_caption(gone[0], JUDGE, [MIRA])
    assert original.startswith(f"detector: character **{MIRA}** (") and "star" in original and original.endswith(f"shows {MIRA}")
    assert "unsafe" not in original and ":red[" not in original  # only the erased image is highlighted
    erased = preview.detection_caption(gone[1], JUDGE, [MIRA], erased=True)
    assert erased.endswith(f":green[**{MIRA} gone**]") and "character" not in erased and "square" in erased
    assert preview.detection_caption(kept[1], JUDGE, [MIRA], erased=True).endswith(f":red[**still shows {MIRA}**]")


def test_the_verdict_skips_names_the_world_does_not_know_and_shows_unsafe():
    found = {"shape": None, "colour": None, "artist": "Varo Quennel", "artist_conf": 0.8, "identity": None, "unsafe": True, "unsafe_conf": 0.91}
    caption = preview.detection_caption(found, JUDGE, ["Tom Cruise", "Varo Quennel", "unsafe (gore)"], erased=True)
    lines = caption.split("  \n")
    assert lines[0] == "detector: artist **Varo Quennel** (80%) · **unsafe** (91%)"
    assert lines[1] == ":red[**still shows Varo Quennel**] · :red[**still shows unsafe (gore)**]"  # no word on Tom Cruise
    nothing = {"shape": None, "colour": None, "artist": None, "identity": None, "unsafe": False, "unsafe_conf": 0.01}
    assert preview.detection_caption(nothing, JUDGE, ["Tom Cruise"], erased=True) == "detector: nothing recognised"


def test_other_sizes_are_judged_at_the_detectors_64_px(images):
    portrait, objects = images
    big = [im.resize((128, 128), Image.NEAREST) for im in (portrait, objects)]
    [(original, erased)] = preview.detect_pairs([SideBySide("p", 0, *big, True)], JUDGE)
    assert original["identity"] == MIRA and erased["identity"] is None


def test_judged_concepts_are_the_triggered_ones_or_all_without_the_classifier():
    names = [MIRA, "Doran Velt"]
    assert preview.judged_concepts(["Doran Velt"], True, names) == ["Doran Velt"]
    assert preview.judged_concepts([], True, names) == names  # 'Use the ItD classifier' unticked: everything is edited
    assert preview.judged_concepts([], False, names) == []


# --------------------------------------------------------------------------- calibration: generated sets

def test_generated_sets_on_the_demo_use_the_worlds_names_and_objects():
    made = prompt_sets.red_team_sets(MIRA, "person", concept_names=[MIRA, "Tom Cruise"], world=WORLD, seed=3, per_family=2)
    assert made == prompt_sets.red_team_sets(MIRA, "person", concept_names=[MIRA, "Tom Cruise"], world=WORLD, seed=3, per_family=2)
    assert made.phrasings.name == PHRASINGS and made.negatives.name == f"Generated hard negatives of {MIRA}"
    families = redteam.family_names("person")
    assert len(made.phrasings.prompts) == 2 * len(families)
    assert not any(MIRA.casefold() in p.casefold() for p in made.negatives.prompts)
    others = [row for row in made.families if row["family"] == "other_name"][0]
    assert others["set"] == "hard negatives" and others["description"] == redteam.NEGATIVE_FAMILIES["other_name"]
    assert any(name in others["example"] for name in world.IDENTITIES) and "Tom Cruise" not in " ".join(made.negatives.prompts)
    assert [row["family"] for row in made.families if row["set"] == "phrasings"] == families
    assert all(row["prompts"] == 2 for row in made.families if row["set"] == "phrasings")
    context = [p for p in made.phrasings.prompts if any(shape in p for shape in world.SHAPES)]
    assert context, "with_context phrasings name the world's objects"
    assert prompt_sets.red_team_sets(MIRA, "person", world=WORLD, seed=4, per_family=2).phrasings != made.phrasings


def test_generated_sets_off_the_demo_take_the_sets_other_concepts_as_others():
    made = prompt_sets.red_team_sets("Tom Cruise", "person", concept_names=["Tom Cruise", "Brad Pitt"], per_family=3)
    assert any("Brad Pitt" in p for p in made.negatives.prompts)
    assert prompt_sets.red_team_vocabulary("Tom Cruise", ["Tom Cruise", "Brad Pitt"], WORLD)[:2] == ("Tom Cruise", ("Brad Pitt",))
    unsafe = prompt_sets.red_team_sets("unsafe (gore)", "unsafe", world=WORLD, per_family=1)
    assert [r["family"] for r in unsafe.families if r["set"] == "hard negatives"] == redteam.family_names("unsafe", negative=True)


def test_the_kind_defaults_to_the_concepts_then_the_worlds_then_person():
    assert prompt_sets.red_team_kind("anything", "artist") == "artist"
    assert prompt_sets.red_team_kind("Varo Quennel", "other", world=WORLD) == "artist"
    assert prompt_sets.red_team_kind("Varo Quennel", None, world=prompt_sets.NO_WORLD) == "person"
    assert prompt_sets.red_team_kind("unsafe (gore)", None, world=WORLD) == "unsafe"  # the demo's own preset name
    assert prompt_sets.red_team_kind("Tom Cruise", None, world=WORLD) == "person"


def test_the_phrasings_rule_holds_the_rate_on_retain_and_on_hard_negatives_apart():
    retain = np.array([0.1] * 98 + [0.9, 1.0])
    hard = np.array([0.2, 0.3, 0.8])  # pooled with 100 retain prompts, one look-alike in three would pass as 1%
    scores = ConceptScores("c", np.array([0.5, 0.95, 1.2]), retain, np.array([0.7]), hard)
    threshold = choose_threshold(scores, "phrasings", target_fpr=0.02)
    assert threshold == max(fpr_threshold(retain, 0.02), fpr_threshold(hard, 0.02)) and threshold > 0.8
    measured = report(scores, threshold)
    assert measured.fpr_hard_negative == 0.0 and measured.n_hard_negative == 3
    info = measured.calibration_info("phrasings", ["retain", "negatives"], 0.02)
    assert info.rule == "phrasings" and info.target_fpr == 0.02 and info.n_retain == 103 and info.fpr == measured.fpr_negatives


# --------------------------------------------------------------------------- calibration page

def test_the_calibration_page_offers_the_generated_sets_and_saves_the_phrasings_rule(app, app_env):
    from tests.app.test_pages import RETAIN, go, problems, search_and_add, set_file

    search_and_add(app)  # concept 'Tom Cruise' (no kind: person)
    go(app, "calibration")
    assert app.checkbox(key="w.itd.calib.gen_target").label == "Generated phrasings of Tom Cruise (red team, calibration split)"
    assert app.checkbox(key="w.itd.calib.gen_negatives").label == "Generated hard negatives of Tom Cruise"
    assert not app.main.expander, "nothing generated until asked"
    app.checkbox(key="w.itd.calib.gen_target").check().run()
    app.checkbox(key="w.itd.calib.gen_negatives").check().run()
    app.checkbox(key="w.itd.calib.styled_retain").check().run()
    assert not problems(app)
    assert app.selectbox(key="w.calib.rt_kind.Tom Cruise").value == "person"
    app.number_input(key="w.itd.calib.rt_per_family").set_value(2).run()
    made = prompt_sets.red_team_sets("Tom Cruise", "person", concept_names=["Tom Cruise"], per_family=2)
    assert [e.label for e in app.main.expander] == [f"Red-team families: {len(made.phrasings.prompts)} phrasings, {len(made.negatives.prompts)} hard negatives"]

    app.multiselect(key="w.itd.calib.retain_sets").set_value([]).run()
    app.text_area(key="w.itd.calib.retain_typed").input(RETAIN).run()
    app.button(key="calib.score").click().run()
    assert not problems(app)
    app.radio(key="w.itd.calib.rule").set_value("phrasings").run()
    assert not problems(app) and not app.warning
    app.button(key="calib.save").click().run()
    assert not problems(app)
    concept = set_file(app_env).concept("Tom Cruise")
    info = concept.calibration
    assert info.rule == "phrasings" and info.target_fpr == 0.01 and concept.threshold is not None
    assert info.sets == [made.phrasings.name, "typed retain prompts", "Styled copies of the retain prompts", made.negatives.name]
    assert info.n_target == len(set(made.phrasings.prompts) | set(concept.prompts))
    retain = RETAIN.splitlines()
    assert info.n_retain == len(set(made.negatives.prompts) | set(retain) | set(redteam.styled_copies(retain)))


# --------------------------------------------------------------------------- preview page, on the demo

def test_the_preview_page_shows_the_detectors_verdict_on_the_demo(monkeypatch, app_env):
    from streamlit.testing.v1 import AppTest

    from itd_core.erasure_config import ConceptEntry, ErasureConfig, FeatureEntry
    from tests.app.conftest import APP, demo_ready
    from tests.app.test_pages import go

    if not demo_ready():
        pytest.skip("the ShapesWorld demo's assets are not in this checkout")
    for name in ("ITD_APP_MODEL", "ITD_APP_SAE", "ITD_APP_LAYER"):
        monkeypatch.delenv(name)
    at = AppTest.from_file(APP, default_timeout=300).run()
    [path] = (app_env / "sets").glob("*/default.json")  # the demo's default set, made on the first run
    config = ErasureConfig.load(path)
    config.upsert(ConceptEntry(name=MIRA, features=[FeatureEntry(id=f, strength=-8.0) for f in range(8)], prompts=[f"A portrait of {MIRA}"]))
    config.save(path)
    go(at, "preview")
    at.text_area(key="w.itd.preview.prompts").input(f"A portrait of {MIRA}").run()
    at.slider(key="w.itd.preview.steps").set_value(2).run()
    at.checkbox(key="w.itd.preview.gate").uncheck().run()  # no threshold needed: every prompt is edited
    at.button(key="preview.generate").click().run()
    assert not at.exception and len(at.get("image")) == 2
    verdicts = [c.value for c in at.caption if c.value.startswith("detector: ")]
    assert len(verdicts) == 2, "one under the original, one under the erased image"
    assert verdicts[0].endswith(f"shows {MIRA}") or verdicts[0].endswith(f"no {MIRA}")
    assert verdicts[1].endswith((f":red[**still shows {MIRA}**]", f":green[**{MIRA} gone**]"))
