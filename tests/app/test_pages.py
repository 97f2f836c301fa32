"""AppTest checks of every page's logic, on the tiny bundle (one browser session each, no browser)."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest

from itd_core.erasure_config import ErasureConfig

CRUISE = "A portrait of Tom Cruise\nTom Cruise in an official photo\nTom Cruise at a public event"
RETAIN = "a red circle\na dog in a park\na blue square"


def problems(at) -> list[str]:
    """Stack traces and error boxes on the page (what a user must never see unasked)."""
    return [e.value for e in at.exception] + [e.value for e in at.error]


def go(at, page: str):
    return at.switch_page(f"views/{page}.py").run()


def set_file(app_env):
    files = list((app_env / "sets").glob("*/default.json"))
    assert len(files) == 1
    return ErasureConfig.load(files[0])


def search_and_add(at):
    """Concept search for 'Tom Cruise' against a typed retain set, then 'Add all'."""
    go(at, "concept_search")
    at.radio(key="w.itd.concept.kind").set_value("prompts").run()
    at.text_area(key="w.itd.concept.text").input(CRUISE).run()
    at.text_input(key="w.itd.concept.name").input("Tom Cruise").run()
    at.multiselect(key="w.itd.concept.retain_sets").set_value([]).run()
    at.text_area(key="w.itd.concept.retain_typed").input(RETAIN).run()
    at.button(key="concept.search").click().run()
    assert not problems(at)
    at.button(key="concept.add_all").click().run()
    assert not problems(at)


def calibrate(at):
    go(at, "calibration")
    at.multiselect(key="w.itd.calib.retain_sets").set_value([]).run()
    at.text_area(key="w.itd.calib.retain_typed").input(RETAIN).run()
    at.button(key="calib.score").click().run()
    assert not problems(at)
    at.button(key="calib.save").click().run()
    assert not problems(at)


# --------------------------------------------------------------------------- frame

def test_every_page_renders_without_errors(app):
    assert not problems(app)
    assert any("fingerprint" in c.value for c in app.sidebar.caption)
    for page in ("token_inspector", "feature_dashboard", "concept_search", "deactivation_set", "calibration", "preview",
                 "feature_map", "export_import"):
        go(app, page)
        assert not problems(app), page
        assert app.title, page


@pytest.mark.parametrize("form", ["sb", "home"])
def test_a_wrong_path_is_a_message_not_a_trace(app, tmp_path, form, monkeypatch):
    """The Model & SAE form is in the sidebar on every page, and on the Model & SAE page."""
    monkeypatch.setenv("ITD_APP_ROOTS", os.pathsep.join([str(tmp_path), os.environ["ITD_APP_SAE"]]))  # the typed folder and the test SAE
    app.text_input(key=f"w.{form}.model").input(str(tmp_path / "missing"))
    app.button(key=f"FormSubmitter:bundle.{form}-Load").click().run()
    assert not app.exception
    assert any("not found" in e.value for e in app.error)
    assert any("Not loaded" in e.value for e in app.sidebar.error)
    go(app, "token_inspector")
    assert not app.exception and any("No model loaded" in e.value for e in app.error)
    assert app.text_input(key="w.sb.model").value == str(tmp_path / "missing"), "both forms show what was applied"
    app.text_input(key="w.sb.sae").input("")
    app.button(key="FormSubmitter:bundle.sb-Load").click().run()
    assert any("an SAE is needed" in e.value for e in app.sidebar.error)


def test_the_bf16_screen_is_a_form_option_for_fp32_weights(app, monkeypatch):
    monkeypatch.setenv("ITD_APP_ROOTS", os.pathsep.join([os.environ["ITD_APP_MODEL"], os.environ["ITD_APP_SAE"]]))  # the test's bundle
    app.selectbox(key="w.sb.dtype").select("bf16")
    app.checkbox(key="w.sb.bf16_screen").check()
    app.button(key="FormSubmitter:bundle.sb-Load").click().run()
    assert not app.exception and any("choose the dtype fp32, not bf16" in e.value for e in app.sidebar.error)
    app.selectbox(key="w.sb.dtype").select("fp32")
    app.checkbox(key="w.sb.bf16_screen").check()
    app.button(key="FormSubmitter:bundle.sb-Load").click().run()
    assert not app.exception and not app.sidebar.error, [e.value for e in app.sidebar.error]
    assert app.checkbox(key="w.sb.bf16_screen").value and app.checkbox(key="w.home.bf16_screen").value, "both forms show it applied"


def test_folders_outside_the_apps_roots_are_refused_without_saying_anything_about_them(app, tmp_path, monkeypatch):
    monkeypatch.setenv("ITD_APP_ROOTS", str(tmp_path / "allowed"))
    messages = []
    for typed in ["/etc", "/nonexistent/folder", str(tmp_path / "allowed" / ".." / "elsewhere")]:
        app.text_input(key="w.sb.model").input(typed)
        app.text_input(key="w.sb.sae").input(typed)
        app.button(key="FormSubmitter:bundle.sb-Load").click().run()
        assert not app.exception
        messages.append([e.value for e in app.sidebar.error if "app's folders" in e.value])
    assert messages[0] and messages[0] == messages[1] == messages[2], "the same words whether the path exists or not"
    assert "/etc" not in messages[0][0] and "not found" not in messages[0][0]


def test_the_demo_is_the_default(monkeypatch, app_env):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP, demo_ready

    monkeypatch.delenv("ITD_APP_MODEL")
    monkeypatch.delenv("ITD_APP_SAE")
    monkeypatch.delenv("ITD_APP_LAYER")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert at.sidebar.text_input(key="w.sb.model").value == "demo"
    if demo_ready(generation=False):
        assert not at.error and any("ShapesWorld demo" in s.value for s in at.sidebar.success)
        # The demo's feature index was built on this first open (#15: a ready dashboard), automatic labels included.
        from feature_index import FeatureIndex
        from itd_core.bundle import load_bundle

        index = FeatureIndex.open(load_bundle("demo"), next((app_env / "index").iterdir()))
        assert index.has_stats and any(label.text.startswith("character: ") for label in index.auto_labels().values())
    else:  # until the demo's assets are all there, their absence is a message on the page
        assert any("ShapesWorld" in e.value for e in at.error)


@pytest.mark.parametrize("sae_format", ["itd", "saelens"])
def test_itd_and_saelens_saes_load_the_same(app_env, monkeypatch, tmp_path, sae_format):
    """The sidebar takes the paper's ItD format and SAELens folders; the fingerprint does not depend on the format."""
    from streamlit.testing.v1 import AppTest

    from itd_core.sae_formats import save_sae
    from tests.app.conftest import APP
    from tests.tiny_models import build_tiny_sae

    folder = save_sae(build_tiny_sae(), tmp_path / sae_format, format=sae_format)
    native = AppTest.from_file(APP, default_timeout=120).run()
    monkeypatch.setenv("ITD_APP_SAE", str(folder))
    monkeypatch.setenv("ITD_APP_SAE_FORMAT", sae_format)
    converted = AppTest.from_file(APP, default_timeout=120).run()
    assert not problems(converted)
    fingerprint = [c.value for c in native.sidebar.caption if "fingerprint" in c.value]
    assert fingerprint and fingerprint == [c.value.replace(f"({sae_format})", "(native)") for c in converted.sidebar.caption if "fingerprint" in c.value]


# --------------------------------------------------------------------------- token inspector

def test_token_inspector_heatmap_pick_and_compare(app):
    go(app, "token_inspector")
    app.text_area(key="w.itd.inspect.prompts").input("a red circle\na red square").run()
    assert not problems(app)
    assert len(app.get("plotly_chart")) == 2, "one heatmap per prompt"
    tokens = app.dataframe[0].value
    assert list(tokens["token"]) == ["a", "red", "circle", "<|endoftext|>"]
    assert [m.label for m in app.metric] == ["Shared", "Only in A", "Only in B", "Jaccard"]
    picked = app.selectbox(key="w.inspect.pick").value
    app.button(key="inspect.open").click().run()
    assert app.title[0].value == "Feature dashboard"
    assert app.number_input(key="w.itd.feature").value == picked


def test_token_inspector_empty_prompt(app):
    go(app, "token_inspector")
    app.text_area(key="w.itd.inspect.prompts").input("   ").run()
    assert not app.exception and any("at least one prompt" in w.value for w in app.warning)


def test_inspector_prompts_survive_a_page_switch(app):
    go(app, "token_inspector")
    app.text_area(key="w.itd.inspect.prompts").input("a green star").run()
    go(app, "preview")
    go(app, "token_inspector")
    assert app.text_area(key="w.itd.inspect.prompts").value == "a green star"


# --------------------------------------------------------------------------- concept search and the set

def test_concept_search_adds_features_and_undo_removes_them(app, app_env):
    search_and_add(app)
    concept = set_file(app_env).concept("Tom Cruise")
    assert len(concept.features) >= 1 and concept.prompts == CRUISE.splitlines()
    assert any("added concept" in t.value for t in app.toast)
    go(app, "deactivation_set")
    assert app.dataframe[0].value["concept"].tolist() == ["Tom Cruise"]
    app.button(key="set.undo").click().run()
    assert set_file(app_env).concepts == []
    assert not problems(app)


def test_a_search_is_filed_under_its_own_name_not_the_previous_ones(app, app_env):
    """Issue #15: a preset, then a typed name in 'name or word' mode: the title, the 'Add to concept' box and
    the prompts all follow the latest search, and 'Add all' files the features under the typed name."""
    go(app, "concept_search")
    preset = app.selectbox(key="w.concept.preset").value
    app.button(key="concept.use_preset").click().run()
    app.multiselect(key="w.itd.concept.retain_sets").set_value([]).run()
    app.text_area(key="w.itd.concept.retain_typed").input(RETAIN).run()
    app.button(key="concept.search").click().run()
    assert app.subheader[0].value == f"Features for {preset!r}" and app.text_input(key="w.concept.target").value == preset
    app.session_state["concept.table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}  # a row picked in this result
    app.run()
    assert app.button(key="concept.add_selected").label == "Add the 1 selected"

    app.radio(key="w.itd.concept.kind").set_value("name or word").run()
    app.text_input(key="w.itd.concept.text").input("Doran Velt").run()
    app.button(key="concept.search").click().run()
    assert not problems(app)
    assert app.subheader[0].value == "Features for 'Doran Velt'"
    assert app.text_input(key="w.concept.target").value == "Doran Velt"
    assert app.button(key="concept.add_selected").label == "Add the 0 selected", "rows picked in the previous result"
    assert all("Doran Velt" in prompt for prompt in json.loads(app.json[0].value))
    app.button(key="concept.add_all").click().run()
    assert [c.name for c in set_file(app_env).concepts] == ["Doran Velt"]


def test_concept_search_bad_input(app):
    go(app, "concept_search")
    app.text_input(key="w.itd.concept.text").input("  ").run()
    app.button(key="concept.search").click().run()
    assert not app.exception and any("type a concept" in e.value for e in app.error)
    app.text_input(key="w.itd.concept.text").input("Tom Cruise").run()
    app.multiselect(key="w.itd.concept.retain_sets").set_value([]).run()
    app.button(key="concept.search").click().run()
    assert any("retain set is empty" in e.value for e in app.error)


def test_deactivation_set_edits_and_named_sets(app, app_env):
    go(app, "deactivation_set")
    app.text_input(key="w.set.add_concept").input("shapes").run()
    app.text_input(key="w.set.add_ids").input("3, 7, 11").run()
    app.button(key="set.add").click().run()
    assert [f.id for f in set_file(app_env).concept("shapes").features] == [3, 7, 11]
    assert app.text_input(key="w.set.add_ids").value == "", "the ids box empties once its features are added"
    app.multiselect(key=next(m.key for m in app.multiselect if m.key.startswith("w.set.drop.0"))).set_value([7]).run()
    app.button(key="set.remove.0").click().run()
    assert [f.id for f in set_file(app_env).concept("shapes").features] == [3, 11]
    notes_key = next(t.key for t in app.text_area if t.key.startswith("w.set.notes.0"))
    app.text_area(key=notes_key).input("round things").run()  # saved without a button
    assert set_file(app_env).concept("shapes").notes == "round things"

    app.text_input(key="w.set.add_ids").input("3, x").run()
    app.button(key="set.add").click().run()
    assert any("whole numbers" in e.value for e in app.error) and not app.exception
    app.text_input(key="w.set.add_ids").input("99999").run()
    app.button(key="set.add").click().run()
    assert any("out of range" in e.value for e in app.error)
    assert app.text_input(key="w.set.add_ids").value == "99999", "a refused input stays to be corrected"

    app.text_input(key="w.set.new_name").input("second").run()
    app.button(key="set.create").click().run()
    assert app.session_state["itd.set"] == "second"
    assert not app.exception


def test_switching_sets(app):
    go(app, "deactivation_set")
    app.text_input(key="w.set.new_name").input("second").run()
    app.button(key="set.create").click().run()
    assert app.sidebar.selectbox(key="w.sb.set").value == "second"
    assert app.selectbox(key="w.set.current").options == ["default", "second"]
    app.selectbox(key="w.set.current").set_value("default").run()
    assert app.session_state["itd.set"] == "default" and not app.exception
    go(app, "calibration")
    assert any("'default'" in i.value for i in app.info)
    app.sidebar.selectbox(key="w.sb.set").set_value("second").run()
    assert app.session_state["itd.set"] == "second"
    assert any("'second'" in i.value for i in app.info)


def test_two_sessions_keep_separate_state(app_env):
    """Two browser sessions: own current set, own undo history, one shared file per set that both update."""
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    one = AppTest.from_file(APP, default_timeout=120).run()
    two = AppTest.from_file(APP, default_timeout=120).run()
    for session, ids in ((one, "1, 2"), (two, "5")):
        go(session, "deactivation_set")
        session.text_input(key="w.set.add_concept").input("shared").run()
        session.text_input(key="w.set.add_ids").input(ids).run()
        session.button(key="set.add").click().run()
    assert [f.id for f in set_file(app_env).concept("shared").features] == [1, 2, 5], "both changes kept"
    two.text_input(key="w.set.new_name").input("mine").run()
    two.button(key="set.create").click().run()
    go(one, "deactivation_set")
    assert one.session_state["itd.set"] == "default" and two.session_state["itd.set"] == "mine"
    assert one.button(key="set.undo").label.endswith("(1)")


# --------------------------------------------------------------------------- calibration and preview

def test_calibration_saves_a_threshold_and_the_live_box_classifies(app, app_env):
    search_and_add(app)
    calibrate(app)
    concept = set_file(app_env).concept("Tom Cruise")
    assert concept.threshold is not None and concept.calibration.rule == "paper" and concept.calibration.tpr == 1.0
    assert len(app.get("plotly_chart")) == 2, "histogram and ROC"
    app.text_input(key="w.itd.calib.live").input("A portrait of Tom Cruise").run()
    assert any("edited" in e.value for e in app.error), "the live box says 'edited' for a target"
    app.radio(key="w.itd.calib.rule").set_value("manual").run()
    app.number_input(key="w.calib.manual.Tom Cruise").set_value(1e9).run()
    app.button(key="calib.save").click().run()
    assert set_file(app_env).concept("Tom Cruise").threshold == 1e9
    app.text_input(key="w.itd.calib.live").input("A portrait of Brad Pitt").run()
    assert any("untouched" in s.value for s in app.success)
    app.text_input(key="w.itd.calib.live").input("A portrait of Tom Cruise").run()
    assert any("edited" in e.value for e in app.error), "the full name triggers whatever the threshold (fold_parts' name rule)"
    # another score: the saved thresholds are cleared, the set says so
    app.radio(key="w.calib.positions.default.peak").set_value("prompt").run()  # new sets start with the recommended method
    assert not problems(app)
    stored = set_file(app_env)
    assert stored.score_positions == "prompt" and stored.concept("Tom Cruise").threshold is None


def test_calibration_without_concepts(app):
    go(app, "calibration")
    assert any("no concepts" in i.value for i in app.info) and not problems(app)


def test_preview_needs_thresholds_then_generates_and_caches(app):
    search_and_add(app)
    go(app, "preview")
    app.slider(key="w.itd.preview.steps").set_value(2).run()
    app.button(key="preview.generate").click().run()
    assert any("calibrate first" in e.value for e in app.error) and not app.exception
    calibrate(app)
    go(app, "preview")
    app.text_area(key="w.itd.preview.prompts").input("A portrait of Tom Cruise\na red circle").run()
    app.slider(key="w.itd.preview.steps").set_value(2).run()
    app.button(key="preview.generate").click().run()
    assert not app.exception
    assert len(app.get("image")) == 4, "two prompts x (original, erased)"
    assert [p.value for p in app.get("progress")][-1] == 100
    assert any("edited" in e.value for e in app.error)
    app.button(key="preview.generate").click().run()
    assert any("from cache" in c.value for c in app.caption)


# --------------------------------------------------------------------------- export / import

def test_export_offers_the_config_and_import_checks_it(app, app_env):
    search_and_add(app)
    go(app, "export_import")
    assert not app.exception
    assert any("Not calibrated yet" in w.value for w in app.warning)
    config = set_file(app_env)
    uploader = app.get("file_uploader")[0]
    uploader.upload("theirs.json", config.to_json().encode(), "application/json").run()
    assert any("matches" in s.value for s in app.success)
    app.button(key="import.go").click().run()
    assert sorted(p.stem for p in (app_env / "sets").glob("*/*.json")) == ["default", "theirs"]
    assert app.session_state["itd.set"] == "theirs"

    other = json.loads(config.to_json())
    other["sae"]["sha256"] = "1" * 64
    go(app, "export_import")
    app.get("file_uploader")[0].set_value(("other.json", json.dumps(other).encode(), "application/json")).run()
    assert any("does not match" in e.value for e in app.error) and not app.exception
    app.get("file_uploader")[0].set_value(("bad.json", b"not json", "application/json")).run()
    assert any("not a JSON erasure config" in e.value for e in app.error) and not app.exception


def test_the_feature_lists_export_imports_back_as_a_set(app, app_env):
    """Issue #15: the page imports what it exports, the feature lists included."""
    from app_support.exporting import feature_lists

    search_and_add(app)
    go(app, "export_import")
    config = set_file(app_env)
    lists = json.dumps(feature_lists(config, "default")).encode()
    app.get("file_uploader")[0].upload("default-features.json", lists, "application/json").run()
    assert not problems(app)
    assert any("no thresholds" in i.value for i in app.info) and any("matches" in s.value for s in app.success)
    app.button(key="import.go").click().run()
    assert app.session_state["itd.set"] == "default-features"
    imported = ErasureConfig.load(next((app_env / "sets").glob("*/default-features.json")))
    assert imported.concept("Tom Cruise").features == config.concept("Tom Cruise").features


# --------------------------------------------------------------------------- feature index pages

@pytest.mark.slow
def test_feature_dashboard_and_map_before_and_after_the_index_build(app):
    go(app, "feature_dashboard")
    assert any("not built yet" in w.value for w in app.warning) and not app.exception
    app.text_area(key="w.dash.typed").input("a portrait of tom cruise\na red circle\na dog in a park\na cat on a sofa\na blue square").run()
    app.multiselect(key="w.dash.corpus").set_value([]).run()
    app.button(key="dash.build").click().run()
    assert not problems(app)
    assert [m.label for m in app.metric][:2] == ["Frequency (tokens)", "Prompts where it fires"]
    app.number_input(key="w.itd.feature").set_value(300).run()
    assert any("There is no feature 300" in e.value for e in app.error) and not app.exception
    app.number_input(key="w.itd.feature").set_value(5).run()
    app.text_input(key="w.dash.label.5").input("five").run()
    app.button(key="dash.save_label").click().run()
    assert app.subheader[0].value == "#5 five"
    app.text_input(key="w.itd.dash.prompt").input("a red circle").run()
    assert not problems(app)
    app.selectbox(key="w.dash.concept").set_value("(new concept)").run()
    app.text_input(key="w.dash.new_concept").input("fives").run()
    app.button(key="dash.add").click().run()
    assert any("added concept 'fives'" in t.value for t in app.toast)

    app.text_input(key="w.dash.search").input("five").run()
    assert app.button(key="dash.hit.5") and not problems(app)

    go(app, "feature_map")
    assert not problems(app)
    assert len(app.get("plotly_chart")) == 1
    for mode in ("frequency", "feature list", "concept activation"):
        app.radio(key="w.itd.map.mode").set_value(mode).run()
        assert not problems(app), mode
    app.radio(key="w.itd.map.mode").set_value("frequency").run()
    colours = json.loads(app.get("plotly_chart")[0].proto.spec)["data"][0]["marker"]["color"]
    values = np.frombuffer(base64.b64decode(colours["bdata"]), dtype=colours["dtype"]) if isinstance(colours, dict) else np.asarray(colours)
    assert len(values) > 1 and (np.diff(values) >= 0).all(), "the highest values are drawn last, on top"

    from app_support.index_access import open_index
    from app_support.settings import default_spec
    from itd_core.bundle import load_bundle

    open_index(load_bundle(default_spec())).index.lists.add("round things", [3, 5])  # as `itd index` or another session would
    go(app, "export_import")
    assert app.selectbox(key="w.export.list").value == "round things" and not problems(app)
