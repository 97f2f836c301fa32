"""app_support: the UI-free logic behind the app's pages (no Streamlit here)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from app_support import calibration, concepts, exporting, inspection, preview, prompt_sets, settings
from app_support import sets as set_ops
from app_support.runtime import bundle_lock
from itd_core.erasure_config import ErasureConfig
from itd_core.errors import ItdError
from shapesworld import world

CRUISE = ["A portrait of Tom Cruise", "Tom Cruise in an official photo", "Tom Cruise at a public event"]
RETAIN = ["a red circle", "a dog in a park", "a blue square"]


# --------------------------------------------------------------------------- settings

def test_default_spec_is_the_demo_and_env_overrides_it():
    assert settings.default_spec({}).model == "demo"
    spec = settings.default_spec({"ITD_APP_MODEL": "/m", "ITD_APP_SAE": "/s", "ITD_APP_LAYER": "1", "ITD_APP_DTYPE": "bf16"})
    assert (spec.model, spec.sae, spec.layer, spec.dtype) == ("/m", "/s", "1", "bf16")
    with pytest.raises(ItdError, match="sae_format"):
        settings.default_spec({"ITD_APP_SAE_FORMAT": "pickle"})


def test_spec_from_form_checks_input():
    with pytest.raises(ItdError, match="give a model"):
        settings.spec_from_form(" ", "", "", "auto", "", "cpu", "fp32")
    with pytest.raises(ItdError, match="an SAE is needed"):
        settings.spec_from_form("/some/folder", " ", "", "auto", "", "cpu", "fp32")
    spec = settings.spec_from_form(" demo ", "", "", "auto", " ", "", "fp32")
    assert spec.provider is not None and spec.provider.name == "demo" and spec.layer is None and spec.device == "cpu"
    assert not spec.bf16_screen and settings.spec_from_form("demo", "", "", "auto", "", "", "fp32", True).bf16_screen
    with pytest.raises(ItdError, match="choose the dtype fp32, not bf16"):
        settings.spec_from_form("demo", "", "", "auto", "", "", "bf16", True)


def test_sets_folder_is_per_sae(tmp_path):
    folder = settings.sets_folder("ab" * 32, {"ITD_SETS_DIR": str(tmp_path)})
    assert folder == tmp_path / ("ab" * 8)
    assert settings.sets_folder("cd" * 32, {"ITD_CACHE_DIR": str(tmp_path)}) == tmp_path / "sets" / ("cd" * 8)


def test_bundle_lock_is_one_per_bundle():
    class Bundle:
        pass

    a, b = Bundle(), Bundle()
    assert bundle_lock(a) is bundle_lock(a)
    assert bundle_lock(a) is not bundle_lock(b)


# --------------------------------------------------------------------------- inspection

def test_inspection_matches_the_sae_codes(tiny_bundle):
    result = inspection.inspect_prompts(tiny_bundle.adapter, tiny_bundle.sae, ["a red circle", "a dog"])
    first = result[0]
    assert [inspection.display_token(t) for t in first.tokens] == ["a", "red", "circle", "<|endoftext|>"]
    assert first.positions == [1, 2, 3, 4] and first.special == [False, False, False, True]
    activations = tiny_bundle.adapter.capture(["a red circle"])
    code = tiny_bundle.sae.encode(activations[:, 1:5])
    np.testing.assert_array_equal(first.indices, code.indices[0].numpy())
    features = first.top_features(5)
    matrix = first.matrix(features)
    assert matrix.shape == (5, 4)
    peaks = first.peaks()
    assert np.allclose(matrix.max(1), [peaks[f] for f in features])
    assert sorted(peaks.values(), reverse=True)[:5] == [peaks[f] for f in features]
    assert len(set(first.token_labels())) == 4
    padded = inspection.inspect_prompts(tiny_bundle.adapter, tiny_bundle.sae, ["a red circle"], include_padding=True)[0]
    assert len(padded.tokens) == tiny_bundle.adapter.max_length - 1


def test_inspection_rejects_empty_prompts(tiny_bundle):
    with pytest.raises(ItdError, match="prompt 2 is empty"):
        inspection.inspect_prompts(tiny_bundle.adapter, tiny_bundle.sae, ["a cat", "  "])
    with pytest.raises(ItdError, match="at least one"):
        inspection.inspect_prompts(tiny_bundle.adapter, tiny_bundle.sae, [])


def test_compare_splits_top_n_sets(tiny_bundle):
    a, b = inspection.inspect_prompts(tiny_bundle.adapter, tiny_bundle.sae, ["a red circle", "a red square"])
    result = inspection.compare(a, b, top_n=6)
    top_a, top_b = set(a.top_features(6)), set(b.top_features(6))
    assert {f for f, _, _ in result.shared} == top_a & top_b
    assert {f for f, _, _ in result.only_a} == top_a - top_b
    assert {f for f, _, _ in result.only_b} == top_b - top_a
    assert 0 <= result.jaccard <= 1
    assert inspection.compare(a, a, 6).jaccard == 1.0


# --------------------------------------------------------------------------- sets

@pytest.fixture()
def store(tmp_path, tiny_bundle):
    return set_ops.SetStore(tmp_path / "sets", tiny_bundle.new_erasure_config)


def test_set_changes_are_saved_and_undone(store):
    name = store.ensure()
    editor = set_ops.SetEditor(store, {})
    editor.change(name, lambda c: set_ops.add_features(c, "cruise", [3, 5, 3], strength=-4, labels={5: "Cruise"}, prompts=CRUISE))
    on_disk = ErasureConfig.load(store.path(name))
    assert [(f.id, f.strength, f.label) for f in on_disk.concepts[0].features] == [(3, -4, ""), (5, -4, "Cruise")]
    editor.change(name, lambda c: set_ops.set_threshold(c, "cruise", 0.5))
    editor.change(name, lambda c: set_ops.add_features(c, "cruise", [7]))
    assert store.load(name).concept("cruise").threshold is None, "new features clear the threshold"
    editor.change(name, lambda c: set_ops.remove_features(c, "cruise", [3]))
    assert [f.id for f in store.load(name).concepts[0].features] == [5, 7]
    editor.undo(name)
    assert [f.id for f in store.load(name).concepts[0].features] == [3, 5, 7]
    editor.undo(name)
    assert store.load(name).concept("cruise").threshold == 0.5
    editor.undo(name)
    assert store.load(name).concept("cruise").threshold is None
    assert [f.id for f in store.load(name).concepts[0].features] == [3, 5]
    editor.undo(name)
    assert store.load(name).concepts == []
    assert not editor.can_undo(name)
    with pytest.raises(ItdError, match="nothing to undo"):
        editor.undo(name)


def test_no_op_changes_leave_no_history(store):
    name = store.ensure()
    editor = set_ops.SetEditor(store, {})
    editor.change(name, lambda c: c)
    assert not editor.can_undo(name)


def test_removing_the_last_feature_removes_the_concept(store):
    name = store.ensure()
    editor = set_ops.SetEditor(store, {})
    editor.change(name, lambda c: set_ops.add_features(c, "x", [1]))
    editor.change(name, lambda c: set_ops.remove_features(c, "x", [1]))
    assert store.load(name).concepts == []


def test_feature_rows_from_the_table_editor(store):
    name = store.ensure()
    editor = set_ops.SetEditor(store, {})
    editor.change(name, lambda c: set_ops.set_threshold(set_ops.add_features(c, "x", [1, 2, 3]), "x", 0.1))
    editor.change(name, lambda c: set_ops.apply_feature_rows(c, "x", [
        {"id": 1, "strength": -8, "label": " one ", "remove": False},
        {"id": 2, "strength": -8, "label": "", "remove": True},
        {"id": 3, "strength": -8, "label": "three"},
    ]))
    concept = store.load(name).concept("x")
    assert [(f.id, f.label) for f in concept.features] == [(1, "one"), (3, "three")]
    assert concept.threshold is None
    editor.change(name, lambda c: set_ops.set_threshold(c, "x", 0.2))
    editor.change(name, lambda c: set_ops.set_label(c, 3, "trois"))
    assert store.load(name).concept("x").threshold == 0.2, "labels do not change scores"
    editor.change(name, lambda c: set_ops.set_strength(c, "x", -2.0))
    assert {f.strength for f in store.load(name).concept("x").features} == {-2.0}
    assert store.load(name).concept("x").threshold is None


def test_bad_changes_are_refused_and_leave_the_file(store):
    name = store.ensure()
    before = store.path(name).read_text()
    with pytest.raises(ItdError, match="out of range"):
        store.update(name, lambda c: set_ops.add_features(c, "x", [10_000]))
    with pytest.raises(ItdError, match="no concept"):
        store.update(name, lambda c: set_ops.remove_concept(c, "nope"))
    with pytest.raises(ItdError, match="name"):
        store.update(name, lambda c: set_ops.add_features(c, "  ", [1]))
    assert store.path(name).read_text() == before


def test_several_named_sets(store):
    store.ensure()
    store.create("celebrities")
    with pytest.raises(ItdError, match="exists"):
        store.create("celebrities")
    for bad in ("", "../x", ".hidden", "a/b", "x" * 65):
        with pytest.raises(ItdError, match="bad set name"):
            store.create(bad)
    store.rename("celebrities", "people")
    assert store.names() == ["default", "people"]
    trash = store.delete("people")
    assert trash.is_file() and store.names() == ["default"]


def test_two_sessions_never_lose_each_others_changes(store):
    """Concurrent read-modify-writes of one set (two browser sessions): every change lands, the file stays valid."""
    name = store.ensure()
    errors = []

    def session(offset: int) -> None:
        editor = set_ops.SetEditor(store, {})
        try:
            for i in range(15):
                editor.change(name, lambda c, f=offset + i: set_ops.add_features(c, f"concept {offset}", [f]))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=session, args=(offset,)) for offset in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    config = ErasureConfig.load(store.path(name))
    assert sorted(f.id for c in config.concepts for f in c.features) == [*range(15), *range(100, 115)]
    assert not list(store.folder.glob("*.tmp")), "no temp files left behind"


def test_labels_summary_and_description(store):
    name = store.ensure()
    before = store.load(name)
    _, after = store.update(name, lambda c: set_ops.add_features(c, "x", [1, 2], labels={2: "two"}))
    assert set_ops.labels(after) == {2: "two"}
    assert set_ops.concepts_of(after, 1) == ["x"]
    assert set_ops.summary(after)[0]["features"] == 2
    assert "added concept 'x'" in set_ops.describe_change(before, after)


# --------------------------------------------------------------------------- concepts and prompt sets

def test_concept_prompts():
    assert concepts.concept_prompts("name or word", " Tom   Cruise ")[0] == "A portrait of Tom Cruise"
    assert concepts.concept_prompts("prompts", "a\n\n b ") == ["a", "b"]
    with pytest.raises(ItdError):
        concepts.concept_prompts("name or word", " ")
    with pytest.raises(ItdError):
        concepts.concept_prompts("prompts", "\n")
    assert concepts.default_name("prompts", "\nfirst prompt\nsecond") == "first prompt"


def test_a_presets_name_is_the_default_only_for_its_own_prompts():
    """Issue #15: the name follows the prompts searched, so a preset's name cannot outlive its prompts."""
    presets = {"Ilsa Marvaine": ("A portrait of Ilsa Marvaine", "Ilsa Marvaine on stage")}
    assert concepts.default_name("prompts", "A portrait of Ilsa Marvaine\n Ilsa Marvaine on stage\n", presets) == "Ilsa Marvaine"
    assert concepts.default_name("prompts", "A portrait of Ilsa Marvaine", presets) == "A portrait of Ilsa Marvaine"
    assert concepts.default_name("name or word", " Doran  Velt ", presets) == "Doran Velt"


def test_shipped_prompt_sets_are_offered():
    sets = prompt_sets.available_prompt_sets()
    assert all(s.prompts for s in sets.values())
    assert prompt_sets.combine(sets, [], "x\ny\nx") == ["x", "y"]
    if any("celebrity_remain" in n for n in sets):
        assert "celebrity_remain" in prompt_sets.default_retain(sets)[0]
        presets = prompt_sets.concept_presets()
        assert all(len(p) >= 1 for p in presets.values())


def test_demo_retain_default_covers_objects_outside_people_and_the_other_concepts():
    from shapesworld.demo import CONCEPT_SETS, GENERAL_SET, PROVIDER

    sets = prompt_sets.available_prompt_sets(PROVIDER.world)
    chosen = prompt_sets.default_retain(sets, PROVIDER.world)
    assert chosen == ["ShapesWorld: object prompts (retain)", "ShapesWorld: people outside the world (retain)", CONCEPT_SETS, GENERAL_SET]
    assert len(sets[GENERAL_SET].prompts) == 400, "ordinary prompts on the retain side"
    artist = prompt_sets.concept_presets(PROVIDER.world)["Ilsa Marvaine"]
    retain = prompt_sets.retain_without(prompt_sets.combine(sets, chosen), list(artist))
    assert "A portrait of Harriet Colbane" in retain
    assert not set(artist) & set(retain), "the concept's own prompts leave the retain side"
    others = [n for n in world.ARTISTS if n != "Ilsa Marvaine"]
    assert all(any(name in p for p in retain) for name in others), "every other artist's prompts stay on the retain side"


def test_corpus_choices():
    from shapesworld.demo import PROVIDER

    choices, default = prompt_sets.corpus_choices()
    assert set(default) <= set(choices) and PROVIDER.world.index_corpus_name not in choices
    assert prompt_sets.corpus_prompts(prompt_sets.NO_WORLD, [], "a\nb\na") == ["a", "b"]
    choices, default = prompt_sets.corpus_choices(PROVIDER.world)
    assert default == [PROVIDER.world.index_corpus_name] == choices[:1]
    assert len(prompt_sets.corpus_prompts(PROVIDER.world, default)) > 1000


# --------------------------------------------------------------------------- calibration

def _calibrated_config(bundle):
    from itd_core.concept import select_concept

    config = bundle.new_erasure_config(method="paper")  # scored below on raw captures, which the paper's score needs no mask for
    selection = select_concept(bundle.adapter, bundle.sae, "cruise", CRUISE, RETAIN, top_n=8)
    return set_ops.add_features(config, "cruise", selection.feature_ids, prompts=CRUISE)


def test_scores_thresholds_and_the_live_box(tiny_bundle):
    config = _calibrated_config(tiny_bundle)
    deactivator = calibration.scoring_deactivator(config, tiny_bundle.sae)
    target = calibration.score_prompts(tiny_bundle.adapter, deactivator, CRUISE)[:, 0]
    retain = calibration.score_prompts(tiny_bundle.adapter, deactivator, RETAIN)[:, 0]
    np.testing.assert_allclose(target, deactivator.scores(tiny_bundle.adapter.capture(CRUISE))[:, 0].numpy(), rtol=1e-6)
    scores = calibration.ConceptScores("cruise", target, retain)
    threshold = calibration.choose_threshold(scores, "paper")
    assert threshold == pytest.approx(0.99 * target.min())
    measured = calibration.report(scores, threshold)
    assert measured.tpr == 1.0 and measured.n_retain == 3
    assert calibration.report(scores, calibration.choose_threshold(scores, "fpr", target_fpr=0.0)).fpr_retain == 0.0
    assert calibration.choose_threshold(scores, "manual", manual=0.25) == 0.25
    with pytest.raises(ItdError):
        calibration.choose_threshold(scores, "manual")
    assert 0.0 <= scores.auc() <= 1.0

    config = set_ops.set_threshold(config, "cruise", threshold, measured.calibration_info("paper", ["typed"]))
    verdict = calibration.classify(tiny_bundle.adapter, tiny_bundle.sae, config, CRUISE[0])
    assert verdict.edited and verdict.triggered == ["cruise"]
    assert verdict.rows[0]["score"] == pytest.approx(target[0], rel=1e-5)
    with pytest.raises(ItdError, match="type a prompt"):
        calibration.classify(tiny_bundle.adapter, tiny_bundle.sae, config, " ")
    assert calibration.features_hash(config) == calibration.features_hash(set_ops.set_threshold(config, "cruise", 1.0))
    before = calibration.features_hash(config)
    switched = set_ops.set_score_positions(config, "prompt")
    assert switched.score_positions == "prompt" and calibration.features_hash(switched) != before
    assert switched.concept("cruise").threshold is None, "thresholds do not carry over to another score"
    with pytest.raises(ItdError, match="one of all, prompt, peak"):
        set_ops.set_score_positions(config, "tokens")


def test_scoring_needs_concepts(tiny_bundle):
    with pytest.raises(ItdError, match="no concepts"):
        calibration.scoring_deactivator(tiny_bundle.new_erasure_config(), tiny_bundle.sae)


# --------------------------------------------------------------------------- preview

def test_seeds_and_grid():
    assert preview.parse_seeds("0, 1, 5-7, 1") == [0, 1, 5, 6, 7]
    for bad in ("", "a", "-1", "3-1", "0-99"):
        with pytest.raises(ItdError):
            preview.parse_seeds(bad)
    assert preview.grid(["a", " ", "b"], [0, 1]) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    with pytest.raises(ItdError):
        preview.grid([" "], [0])
    with pytest.raises(ItdError, match="at most"):
        preview.grid(["p"] * 40, [0])
    assert preview.cpu_default_size(64) == 64 and preview.cpu_default_size(512) == 256
    assert preview.generation_model_id("m", "model default") == "m" != preview.generation_model_id("m", "DDIM")


def test_native_size(tiny_pipeline_dir, tmp_path):
    assert preview.native_size(tiny_pipeline_dir) == 32
    assert preview.native_size(tmp_path) is None


def test_scheduler_swap_is_restored(tiny_pipeline_dir):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir)
    original = pipe.scheduler
    with preview.scheduler(pipe, "Euler"):
        assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler is original
    with pytest.raises(ItdError, match="unknown scheduler"):
        with preview.scheduler(pipe, "nope"):
            pass


# --------------------------------------------------------------------------- export / import

def test_export_and_import_round_trip(tiny_bundle, tmp_path):
    config = set_ops.add_features(tiny_bundle.new_erasure_config(), "cruise", [4, 9], labels={4: "Cruise"})
    lists = exporting.feature_lists(config, "default")
    assert lists["lists"][0]["features"][0] == {"modelId": config.model.id_or_path, "layer": config.model.layer, "index": 4,
                                                "description": "Cruise", "strength": config.default_strength()}
    assert config.default_strength() == -2.0, "a recommended config's strength for a concept of no kind"
    snippet = exporting.python_snippet(config, "default.json")
    compile(snippet, "snippet", "exec")
    assert "apply_erasure(pipe, config)" in snippet

    report = exporting.read_import(config.to_json().encode(), tiny_bundle)
    assert report.matches and report.rows()[0]["features"] == 2
    other = json.loads(config.to_json())
    other["sae"]["sha256"] = "0" * 64
    mismatch = exporting.read_import(json.dumps(other).encode(), tiny_bundle)
    assert not mismatch.matches and "fingerprint" in mismatch.problems[0]
    with pytest.raises(ItdError, match="not a JSON"):
        exporting.read_import(b"\xff not json", tiny_bundle)
    with pytest.raises(ItdError, match="schema_version"):
        exporting.read_import(b"{}", tiny_bundle)
    assert exporting.suggest_set_name("my set (1).json", ["my set _1"]) == "my set _1 2"
    assert exporting.suggest_set_name("...json", []) == "imported"


def test_feature_lists_import_back_as_the_same_concepts(tiny_bundle):
    """Issue #15: everything the app exports, it imports; feature lists give the concepts, features, strengths and labels."""
    config = set_ops.add_features(tiny_bundle.new_erasure_config(), "cruise", [4, 9], strength=-3, labels={4: "Cruise"})
    config = set_ops.add_features(config, "circles", [7], strength=-1.5, labels={7: "round"})
    config.concepts[1].notes = "round things"
    lists = json.dumps(exporting.feature_lists(config, "default")).encode()
    report = exporting.read_import(lists, tiny_bundle, source="default-features.json")
    assert report.matches and "no thresholds" in report.note

    def features(c):
        return [(concept.name, concept.notes, [(f.id, f.strength, f.label) for f in concept.features]) for concept in c.concepts]

    assert features(report.config) == features(config) == [("cruise", "", [(4, -3, "Cruise"), (9, -3, "")]),
                                                            ("circles", "round things", [(7, -1.5, "round")])]
    adopted = exporting.adopt(report.config, tiny_bundle.new_erasure_config())
    assert features(adopted) == features(config) and adopted.sae == config.sae and adopted.model == config.model
    assert exporting.read_import(config.to_json().encode(), tiny_bundle).note == "", "a config carries everything"


def test_feature_lists_are_checked_like_a_config(tiny_bundle):
    config = set_ops.add_features(tiny_bundle.new_erasure_config(), "cruise", [4, 9])
    lists = exporting.feature_lists(config, "default")

    def read(document):
        return exporting.read_import(json.dumps(document).encode(), tiny_bundle, source="lists.json")

    assert "fingerprint" in read(lists | {"sae_sha256": "0" * 64}).problems[0]
    assert "layer" in read(lists | {"layer": "encoder.layers.0"}).problems[0]
    with pytest.raises(ItdError, match="missing key.*'sae_sha256'"):
        read({k: v for k, v in lists.items() if k != "sae_sha256"})
    with pytest.raises(ItdError, match="format_version"):
        read(lists | {"format_version": 2})
    broken = json.loads(json.dumps(lists))
    broken["lists"][0]["features"][1]["index"] = "nine"
    with pytest.raises(ItdError, match=r"lists.json: concepts.0.features.1.id"):
        read(broken)
    broken["lists"][0]["features"] = "4, 9"
    with pytest.raises(ItdError, match=r"concepts.0.features"):
        read(broken)
    with pytest.raises(ItdError, match="neither an erasure config .* nor a set's feature lists.*itd index import-list"):
        read({"format": "neuronpedia-list", "name": "a feature index list", "features": [{"index": "4"}]})
    with pytest.raises(ItdError, match="neither"):
        read([1, 2])


def test_only_hub_ids_and_folders_inside_the_roots_are_readable(tmp_path):
    environ = {"ITD_APP_ROOTS": str(tmp_path)}
    (tmp_path / "sd").mkdir()
    settings.check_readable(str(tmp_path / "sd"), "model", environ)
    settings.check_readable(str(tmp_path / "not-yet"), "model", environ)  # inside: its own 'not found' comes later
    settings.check_readable("CompVis/stable-diffusion-v1-4", "model", environ)
    for outside in ["/etc", "/etc/passwd", str(tmp_path / ".." / "x"), "../../etc", "~root"]:
        with pytest.raises(ItdError, match="app's folders") as refused:
            settings.check_readable(outside, "model", environ)
        assert outside not in str(refused.value)
    assert settings.allowed_roots({})[0] == settings.PROJECT_ROOT.resolve()
