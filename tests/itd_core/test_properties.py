"""Property-based tests (hypothesis): hostile prompts and erasure configs give a result or a clear ItdError,
never a traceback of another kind, and never a non-finite number."""

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from itd_core.deactivation import ConceptFeatures, Deactivator
from itd_core.erasure_config import ErasureConfig
from itd_core.errors import ItdError
from itd_core.prompt_folding import fold_concept_prompt, fold_names, fold_prompt
from itd_core.prompts import check_prompt
from itd_core.sae import SAEConfig, TopKSAE

NAMES = ["Mira Castellane", "Doran Velt", "unsafe"]
# Any code point, surrogates included: what a Python caller can pass.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)


@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples on every run: CI stays reproducible
@given(texts)
@example("00AA")  # leetspeak read in one pass was not idempotent: "00AA" -> "0oAA" -> "ooAA"
@example("ἠ")  # an accented confusable: the accent must go before the look-alike map ("ἠ" -> "η" -> "n")
def test_checking_and_folding_a_prompt_never_raises_anything_but_an_itd_error(text):
    try:
        checked = check_prompt(text)
    except ItdError:
        return
    folded = fold_concept_prompt(checked, NAMES, "fold_parts")
    assert isinstance(folded, str)
    assert fold_prompt(fold_prompt(checked)) == fold_prompt(checked)
    assert fold_names(folded, NAMES, complete_parts=True) == folded, "folding twice changes nothing more"


@pytest.fixture(scope="module")
def sae():
    return TopKSAE.random(SAEConfig(d_model=16, n_latents=64, k=4), seed=0)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strengths=st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=6), threshold=st.floats(0, 10),
       scale=st.floats(1e-3, 1e3), edit_output=st.sampled_from(["reconstruction", "residual"]))
def test_finite_configs_give_finite_scores_and_activations(sae, strengths, threshold, scale, edit_output):
    concept = ConceptFeatures("c", tuple(range(len(strengths))), tuple(strengths), threshold)
    activations = scale * torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 6, dtype=torch.bool)
    result = Deactivator(sae, [concept], "peak", edit_output=edit_output).apply(activations, prompt_mask=mask)
    assert torch.isfinite(result.scores).all() and torch.isfinite(result.activations).all()


def _config_json() -> dict:
    return {"schema_version": 1, "model": {"id_or_path": "demo", "layer": "encoder.layer.3"},
            "sae": {"format": "native", "path": "demo", "sha256": "0" * 64, "n_latents": 64, "d_model": 16, "k": 4},
            "concepts": [{"name": "c", "features": [{"id": 1, "strength": -8.0}], "threshold": 0.5}]}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
                           max_leaves=10)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(path=st.sampled_from([("concepts", 0, "threshold"), ("concepts", 0, "features", 0, "strength"), ("concepts", 0, "features", 0, "id"),
                             ("concepts", 0, "name"), ("concepts", 0, "notes"), ("score_positions",), ("sae", "k"), ("model",)]),
       value=json_values)
def test_a_mutated_config_loads_with_finite_numbers_or_is_an_itd_error(path, value):
    data = _config_json()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        config = ErasureConfig.from_dict(json.loads(json.dumps(data)))
    except ItdError:
        return
    for concept in config.concepts:
        assert concept.threshold is None or math.isfinite(concept.threshold)
        assert all(math.isfinite(f.strength) for f in concept.features)
    json.loads(config.to_json(), parse_constant=lambda constant: pytest.fail(f"{constant} in the written config"))
