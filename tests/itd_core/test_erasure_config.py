import json

import pytest

from itd_core.erasure_config import PAPER_METHOD, RECOMMENDED_METHOD, RESIDUAL_STRENGTHS, ConceptEntry, ErasureConfig, FeatureEntry, ModelRef, SAERef
from itd_core.errors import ItdError
from itd_core.sae import SAEConfig, TopKSAE
from itd_core.sae_formats import weights_fingerprint


@pytest.fixture()
def sae():
    sae = TopKSAE.random(SAEConfig(d_model=8, n_latents=64, k=4), seed=0)
    sae.fingerprint = weights_fingerprint(sae)
    return sae


def _config(sae):
    return ErasureConfig(
        model=ModelRef(id_or_path="demo", layer="encoder.layer.3"),
        sae=SAERef(format="native", path="demo", sha256=sae.fingerprint, n_latents=64, d_model=8, k=4),
        concepts=[ConceptEntry(name="Tom", features=[FeatureEntry(id=3, label="tom"), FeatureEntry(id=9, strength=-4)], threshold=0.5)],
    )


def test_round_trip_and_atomic_save(tmp_path, sae):
    path = _config(sae).save(tmp_path / "erasure.json")
    loaded = ErasureConfig.load(path)
    assert loaded == _config(sae).model_copy(update={"created_at": loaded.created_at})
    assert loaded.concepts[0].features[1].strength == -4
    assert [p.name for p in tmp_path.iterdir()] == ["erasure.json"], "no temp file left behind"
    deactivator = loaded.deactivator(sae)
    assert deactivator.concepts[0].feature_ids == (3, 9) and deactivator.score_positions == "all"
    prompt_mode = _config(sae).model_copy(update={"score_positions": "prompt"})
    assert ErasureConfig.load(prompt_mode.save(tmp_path / "prompt.json")).deactivator(sae).score_positions == "prompt"


def _write(tmp_path, data):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, default=str))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=7), "unknown schema_version 7"),
        (lambda d: d.pop("schema_version"), "missing key 'schema_version'"),
        (lambda d: d.pop("sae"), "missing key 'sae'"),
        (lambda d: d["concepts"][0]["features"][0].update(id=64), r"concepts\.0\.features\.0\.id: feature id 64 out of range"),
        (lambda d: d["concepts"][0]["features"][0].update(id=-1), r"concepts\.0\.features\.0\.id"),
        (lambda d: d["concepts"][0].update(colour="red"), r"unknown key 'concepts\.0\.colour'"),
        (lambda d: d["sae"].update(sha256="xyz"), r"sae\.sha256"),
        (lambda d: d.update(score_positions="tokens"), r"score_positions: Input should be 'all', 'prompt' or 'peak'"),
    ],
)
def test_bad_configs_name_the_bad_field(tmp_path, sae, mutate, message):
    data = json.loads(_config(sae).to_json())
    mutate(data)
    with pytest.raises(ItdError, match=message):
        ErasureConfig.load(_write(tmp_path, data))


def test_fingerprint_mismatch_is_refused(sae):
    other = TopKSAE.random(sae.config, seed=1)
    other.fingerprint = weights_fingerprint(other)
    with pytest.raises(ItdError, match="fingerprint mismatch"):
        _config(sae).deactivator(other)


def test_not_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(ItdError, match="not valid JSON"):
        ErasureConfig.load(path)


def test_content_hash_ignores_metadata(sae):
    first, second = _config(sae), _config(sae)
    second.concepts[0].notes = "changed"
    assert first.content_hash() == second.content_hash()
    second.concepts[0].threshold = 0.7
    assert first.content_hash() != second.content_hash()


def test_a_config_without_method_fields_loads_as_the_papers_method_with_its_old_hash(tmp_path, sae):
    old = json.loads(_config(sae).to_json())
    for key in ("edit_positions", "edit_output", "edit_negative_prompt", "prompt_folding", "score_positions"):
        old.pop(key)
    old["concepts"][0].pop("kind")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = ErasureConfig.load(path)
    assert loaded.method == PAPER_METHOD and loaded.method_name() == "paper"
    assert loaded.content_hash() == _config(sae).content_hash(), "cached generations of old configs stay valid"
    deactivator = loaded.deactivator(sae)
    assert (deactivator.score_positions, deactivator.edit_positions, deactivator.edit_output, deactivator.fold_prompts) == ("all", "all", "reconstruction", False)
    recommended = loaded.model_copy(update=RECOMMENDED_METHOD)
    assert recommended.method_name() == "recommended" and recommended.content_hash() != loaded.content_hash()
    assert ErasureConfig.load(recommended.save(tmp_path / "new.json")).method == RECOMMENDED_METHOD
    assert loaded.model_copy(update={"edit_positions": "concept"}).method_name() == "custom"
    assert recommended.deactivator(sae).edit_output == "residual"


def test_default_strength_follows_the_edit_and_the_concepts_kind(sae):
    paper = _config(sae)
    assert paper.default_strength("person") == paper.default_strength("unsafe") == -8.0
    recommended = paper.model_copy(update=RECOMMENDED_METHOD)
    assert recommended.default_strength("person") == RESIDUAL_STRENGTHS["person"]
    assert recommended.default_strength("unsafe") == RESIDUAL_STRENGTHS["unsafe"]
    assert recommended.default_strength() == RESIDUAL_STRENGTHS["other"]
    assert all(-8.0 < strength < 0 for strength in RESIDUAL_STRENGTHS.values()), "milder than the paper's, still a deactivation"


def test_calibrate_records_the_rule_and_holds_the_rate_on_hard_negatives_apart(sae):
    concept = _config(sae).concepts[0]
    retain = [0.1] * 98 + [0.9, 1.0]  # 2% of 100 easy negatives
    hard = [0.2, 0.3, 0.8]  # few hard negatives: pooled with the easy ones they would not count
    measured = concept.calibrate([0.5, 0.95, 1.2], retain, rule="phrasings", target_fpr=0.02, hard_negative_scores=hard, sets=["a", "b"])
    assert concept.threshold > 0.8, "no hard negative triggers at a 2% rate on the hard negatives alone"
    assert concept.calibration.rule == "phrasings" and concept.calibration.target_fpr == 0.02 and concept.calibration.sets == ["a", "b"]
    assert measured.tpr == pytest.approx(2 / 3) and measured.n_retain == 103
    concept.calibrate([0.5, 0.95, 1.2], retain, rule="paper")
    assert concept.threshold == pytest.approx(0.99 * 0.5) and concept.calibration.target_fpr is None


def test_a_config_with_100k_features_is_checked_in_one_pass(sae):
    features = [FeatureEntry(id=i) for i in range(100_000)]
    assert len(ConceptEntry(name="many", features=features).features) == 100_000
    with pytest.raises(ValueError, match="feature id 5 listed twice"):
        ConceptEntry(name="many", features=[*features, FeatureEntry(id=5)])


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["concepts"][0].update(notes="\ud800"), "'concepts.0.notes' holds a lone surrogate"),
    (lambda d: d["concepts"][0].update(notes=[[[[[[[[["deep"]]]]]]]]]), "nested deeper"),
    (lambda d: d["concepts"][0].update(prompts=["x" * 5000]), "concepts.0.prompts.0"),
])
def test_hostile_values_are_refused_with_the_field_named(tmp_path, sae, mutate, message):
    data = json.loads(_config(sae).to_json())
    mutate(data)
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ItdError, match=message):
        ErasureConfig.load(path)


def test_json_nested_thousands_deep_is_an_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ItdError, match="nested too deeply"):
        ErasureConfig.load(path)


def test_an_sae_without_a_fingerprint_is_fingerprinted_not_waved_through(sae):
    other = TopKSAE.random(SAEConfig(d_model=8, n_latents=64, k=4), seed=123)
    other.fingerprint = None  # built in memory, never saved or loaded
    with pytest.raises(ItdError, match="fingerprint mismatch"):
        _config(sae).deactivator(other)
    same = TopKSAE.random(SAEConfig(d_model=8, n_latents=64, k=4), seed=0)
    same.load_state_dict(sae.state_dict())
    same.fingerprint = None
    assert _config(sae).deactivator(same).concepts[0].name == "Tom"


def test_selection_prompts_are_the_spellings_the_classifier_reads(sae):
    prompts = ["a photo of M. Castellane", "Slka Dunmore at a concert", "Tom Sawyer's raft", "a red circle"]
    paper = _config(sae)
    assert paper.selection_prompts(prompts, "Mira Castellane") == prompts, "the paper's method folds nothing"
    recommended = paper.model_copy(update=RECOMMENDED_METHOD)
    recommended.concepts.append(ConceptEntry(name="Selka Dunmore", features=[FeatureEntry(id=5)]))
    assert recommended.selection_prompts(prompts, "Mira Castellane") == [
        "a photo of Mira Castellane", "Selka Dunmore at a concert", "Tom Sawyer's raft", "a red circle"]
