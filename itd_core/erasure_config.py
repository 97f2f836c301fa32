"""The erasure config: a versioned JSON document that says what to erase and how.

Schema (version 1)::

    {
      "schema_version": 1,
      "tool": "itd-explorer", "tool_version": "0.1.0", "created_at": "2026-11-28T10:00:00Z",
      "model": {"id_or_path": "CompVis/stable-diffusion-v1-4", "layer": "encoder.layers.8"},
      "sae": {"format": "itd", "path": "...", "subfolder": null, "sha256": "<weights fingerprint>",
              "n_latents": 524288, "d_model": 768, "k": 64},
      "score_positions": "all", "edit_positions": "all", "edit_output": "reconstruction",
      "edit_negative_prompt": true, "prompt_folding": "none",
      "concepts": [{"name": "Tom Cruise", "kind": "person",
                    "features": [{"id": 40213, "strength": -8.0, "label": "Cruise surname"}],
                    "threshold": 0.021,
                    "calibration": {"rule": "paper", "sets": ["target.csv", "retain.csv"],
                                    "tpr": 1.0, "fpr": 0.004, "n_target": 5, "n_retain": 500},
                    "prompts": ["A portrait of Tom Cruise", "..."], "notes": ""}]
    }

``sae.sha256`` is :func:`itd_core.sae_formats.weights_fingerprint`: a sha256 of the weights in a
canonical layout, the same whichever SAE file format holds them. Loading checks every field
and names the bad one; saving is atomic.

The method switches (``score_positions``, ``edit_positions``, ``edit_output``, ``edit_negative_prompt``,
``prompt_folding``) are optional: a file without them gets the paper's method (:data:`PAPER_METHOD`),
so configs written before they existed load and behave as they did. New configs start from
:data:`RECOMMENDED_METHOD`, the settings the red-team benchmark supports (README, "Benchmarks").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from itd_core import __version__
from itd_core.atomic import atomic_write_text
from itd_core.calibration import CalibrationRule, Rates, rates, threshold_for
from itd_core.deactivation import ConceptFeatures, Deactivator, EditOutput, EditPositions, ScorePositions
from itd_core.defaults import PAPER_STRENGTH
from itd_core.errors import ItdError
from itd_core.prompt_folding import PromptFolding, fold_concept_prompt
from itd_core.prompts import MAX_PROMPT_CHARS, MAX_PROMPTS
from itd_core.sae import TopKSAE
from itd_core.sae_formats import weights_fingerprint

SCHEMA_VERSION = 1
MAX_CONFIG_BYTES = 64 * 2**20  # a config of every feature of a 524k-latent SAE with labels is well under this
_MAX_DEPTH = 8  # the schema's deepest value is concepts.N.features.N.id
SAEFormat = Literal["itd", "saelens", "native"]
ConceptKind = Literal["person", "artist", "unsafe", "other"]

# The paper's method, and what new configs get (chosen by the red-team benchmark; see README).
PAPER_METHOD = {"score_positions": "all", "edit_positions": "all", "edit_output": "reconstruction", "edit_negative_prompt": True,
                "prompt_folding": "none"}
RECOMMENDED_METHOD = {"score_positions": "peak", "edit_positions": "all", "edit_output": "residual", "edit_negative_prompt": False,
                      "prompt_folding": "fold_parts"}
METHOD_PRESETS = {"paper": PAPER_METHOD, "recommended": RECOMMENDED_METHOD}
# Default strength of a concept's features under the residual edit, by kind (measured on ShapesWorld: README,
# "Erasure methods"); the paper's reconstruction edit uses -8 for every kind.
RESIDUAL_STRENGTHS: dict[str, float] = {"person": -1.0, "artist": -1.0, "unsafe": -3.0, "other": -2.0}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN/Infinity in JSON would switch erasure off silently


class FeatureEntry(_Strict):
    id: int = Field(ge=0)
    strength: float = PAPER_STRENGTH
    label: str = ""


class CalibrationInfo(_Strict):
    rule: CalibrationRule
    target_fpr: float | None = None
    sets: list[str] = Field(default_factory=list, description="prompt sets used (paths or names)")
    tpr: float | None = None
    fpr: float | None = None
    n_target: int = 0
    n_retain: int = 0


class ConceptEntry(_Strict):
    name: str = Field(min_length=1)
    kind: ConceptKind | None = Field(default=None, description="what the concept is: red-team phrasings and image judges depend on it")
    features: list[FeatureEntry] = Field(min_length=1)
    threshold: float | None = None
    calibration: CalibrationInfo | None = None
    prompts: list[Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]] = Field(
        default_factory=list, max_length=MAX_PROMPTS, description="the concept prompts the features were selected from")
    notes: str = ""

    @field_validator("features")
    @classmethod
    def _unique_ids(cls, features: list[FeatureEntry]) -> list[FeatureEntry]:
        seen: set[int] = set()
        for feature in features:  # one pass: a config of 100k features is checked in milliseconds
            if feature.id in seen:
                raise ValueError(f"feature id {feature.id} listed twice")
            seen.add(feature.id)
        return features

    def to_concept_features(self) -> ConceptFeatures:
        return ConceptFeatures(self.name, tuple(f.id for f in self.features), tuple(f.strength for f in self.features), self.threshold)

    def calibrate(self, target_scores: Sequence[float], negative_scores: Sequence[float], *, rule: CalibrationRule,
                  target_fpr: float | None = None, hard_negative_scores: Sequence[float] = (), sets: Sequence[str] = ()) -> Rates:
        """Set the threshold by ``rule`` from this concept's scores, and record how it was set and the rates it gives
        (the false-positive rate over the negatives and hard negatives together)."""
        self.threshold = threshold_for(rule, target_scores, negative_scores, target_fpr, hard_negative_scores)
        measured = rates(self.threshold, target_scores, [*negative_scores, *hard_negative_scores])
        self.calibration = CalibrationInfo(rule=rule, target_fpr=target_fpr if rule != "paper" else None, sets=list(sets),
                                           tpr=measured.tpr, fpr=measured.fpr, n_target=measured.n_target, n_retain=measured.n_retain)
        return measured


class ModelRef(_Strict):
    id_or_path: str
    layer: str


class SAERef(_Strict):
    format: SAEFormat
    path: str
    subfolder: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    n_latents: int = Field(gt=0)
    d_model: int = Field(gt=0)
    k: int = Field(gt=0)


class ErasureConfig(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    tool: str = "itd-explorer"
    tool_version: str = __version__
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    model: ModelRef
    sae: SAERef
    score_positions: ScorePositions = Field(
        default="all", description="positions the classifier score averages over: 'all' padded positions "
                                   "(the paper's), or the 'prompt' tokens only; thresholds are calibrated per mode")
    edit_positions: EditPositions = Field(
        default="all", description="positions an edited prompt gets replaced at: 'all' (the paper's) or only where a "
                                   "triggered concept's feature fires ('concept'), so the rest of the prompt is kept")
    edit_output: EditOutput = Field(
        default="reconstruction", description="what an edited position becomes: the SAE's 'reconstruction' with the concept's "
                                              "features scaled (the paper's), or the layer's own output plus the change of those "
                                              "features ('residual'), which keeps what the SAE does not reconstruct")
    edit_negative_prompt: bool = Field(
        default=True, description="whether the negative/unconditional prompt of classifier-free guidance may be edited "
                                  "(the paper's hook edits every text-encoder call)")
    prompt_folding: PromptFolding = Field(
        default="none", description="'fold': also score the prompt with confusables, invisible characters, leetspeak and "
                                    "near-miss spellings of the concepts' names folded (itd_core.prompt_folding), and edit "
                                    "the folded prompt when only it triggers; 'fold_parts': also complete a lone "
                                    "first name or surname (or one beside the other's initial) to the full name, and never "
                                    "erase a concept from a prompt that names someone else sharing a word of its name")
    concepts: list[ConceptEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_concepts(self) -> "ErasureConfig":
        names = [c.name for c in self.concepts]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"concept name {name!r} used twice")
        for i, concept in enumerate(self.concepts):
            for j, feature in enumerate(concept.features):
                if feature.id >= self.sae.n_latents:
                    raise ValueError(f"concepts.{i}.features.{j}.id: feature id {feature.id} out of range for an SAE with {self.sae.n_latents} latents")
        return self

    # -- files -----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "ErasureConfig":
        path = Path(path)
        if not path.is_file():
            raise ItdError(f"erasure config not found: {path}")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ItdError(f"{path} is {size / 2**20:.1f} MiB; the limit for an erasure config is {MAX_CONFIG_BYTES // 2**20} MiB")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ItdError(f"{path} is not valid JSON: {error}") from None
        except RecursionError:
            raise ItdError(f"{path} is nested too deeply to be an erasure config") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data, *, source: str = "erasure config") -> "ErasureConfig":
        if not isinstance(data, dict):
            raise ItdError(f"{source}: expected a JSON object at the top level")
        if "schema_version" not in data:
            raise ItdError(f"{source}: missing key 'schema_version' (this tool reads version {SCHEMA_VERSION})")
        if data["schema_version"] != SCHEMA_VERSION:
            raise ItdError(f"{source}: unknown schema_version {data['schema_version']!r} (this tool reads version {SCHEMA_VERSION})")
        _check_plain_data(data, source)
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ItdError(f"{source}: {describe_validation_error(error)}") from None

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json())

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    def content_hash(self) -> str:
        """Hash of what changes generations (model, layer, SAE, method switches, features, thresholds), not of metadata.
        Method switches at the paper's values are left out, so hashes of configs from before they existed stay the same."""
        essence = {
            "model": self.model.model_dump(), "sae": self.sae.sha256, "score_positions": self.score_positions,
            "concepts": [{"features": [(f.id, f.strength) for f in c.features], "threshold": c.threshold} for c in self.concepts],
        }
        essence |= {key: getattr(self, key) for key, paper in PAPER_METHOD.items() if key != "score_positions" and getattr(self, key) != paper}
        return hashlib.sha256(json.dumps(essence, sort_keys=True).encode()).hexdigest()[:16]

    # -- use with an SAE ---------------------------------------------------------
    def check_sae(self, sae: TopKSAE) -> None:
        """Raise if this config was made for another SAE."""
        if (sae.n_latents, sae.d_model, sae.k) != (self.sae.n_latents, self.sae.d_model, self.sae.k):
            raise ItdError(
                f"this erasure config is for an SAE with {self.sae.n_latents} latents, d_model {self.sae.d_model}, k {self.sae.k}; "
                f"the loaded SAE has {sae.n_latents}, {sae.d_model}, {sae.k}")
        if sae.fingerprint is None:  # an SAE built in memory: compute it, so the check cannot be skipped
            sae.fingerprint = weights_fingerprint(sae)
        if sae.fingerprint != self.sae.sha256:
            raise ItdError(f"SAE fingerprint mismatch: the config expects sae.sha256={self.sae.sha256[:12]}…, "
                           f"the loaded SAE has {sae.fingerprint[:12]}… (a different or retrained SAE)")

    def deactivator(self, sae: TopKSAE, *, edit_strength: float | None = None) -> Deactivator:
        """The engine's classifier and edit for this config (``edit_strength``: see :class:`Deactivator`)."""
        self.check_sae(sae)
        if not self.concepts:
            raise ItdError("the erasure config has no concepts")
        return Deactivator(sae, [c.to_concept_features() for c in self.concepts], self.score_positions, self.edit_positions,
                           edit_output=self.edit_output, prompt_folding=self.prompt_folding, edit_strength=edit_strength)

    def selection_prompts(self, prompts: Sequence[str], concept: str) -> list[str]:
        """``prompts`` as this config's classifier reads them when they trigger (folded by ``prompt_folding`` with the config's
        concept names and ``concept``): the spelling to select ``concept``'s features from, so that attack spellings which the
        fold writes as the name ("M. Castellane", "Slka Dumnore") add the name's features rather than their own."""
        names = [c.name for c in self.concepts if c.name != concept] + [concept]
        return [fold_concept_prompt(prompt, names, self.prompt_folding) for prompt in prompts]

    @property
    def method(self) -> dict:
        """The method switches, as in :data:`PAPER_METHOD`."""
        return {key: getattr(self, key) for key in PAPER_METHOD}

    def method_name(self) -> str:
        """'paper', 'recommended' or 'custom'."""
        return next((name for name, preset in METHOD_PRESETS.items() if preset == self.method), "custom")

    def default_strength(self, kind: str | None = None) -> float:
        """The strength new features get in this config: the paper's -8 for its reconstruction edit, else
        :data:`RESIDUAL_STRENGTHS` for the concept's kind (``None``: a concept of kind 'other')."""
        if self.edit_output == "reconstruction":
            return PAPER_STRENGTH
        return RESIDUAL_STRENGTHS[kind or "other"]

    def concept(self, name: str) -> ConceptEntry:
        for concept in self.concepts:
            if concept.name == name:
                return concept
        raise ItdError(f"no concept {name!r} in this config (concepts: {', '.join(c.name for c in self.concepts) or 'none'})")

    def upsert(self, concept: ConceptEntry) -> None:
        """Add a concept, or replace the one of the same name."""
        self.concepts = [c for c in self.concepts if c.name != concept.name] + [concept]
        self.model_validate(self.model_dump())


def _check_plain_data(data, source: str) -> None:
    """Refuse what the schema cannot name well: nesting deeper than a config has, and text that is not valid
    Unicode (a lone surrogate from a JSON escape would only fail later, when the config is written)."""
    stack = [(data, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ItdError(f"{source}: nested deeper than an erasure config ({_MAX_DEPTH} levels) at '{where}'")
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise ItdError(f"{source}: '{where}' holds a lone surrogate (invalid Unicode)") from None
        elif isinstance(node, dict):
            stack += [(value, f"{where}.{key}" if where else str(key), depth + 1) for key, value in node.items()]
        elif isinstance(node, list):
            stack += [(value, f"{where}.{i}", depth + 1) for i, value in enumerate(node)]


def describe_validation_error(error: ValidationError) -> str:
    """Name the first bad field: 'concepts.0.features.2.id: Input should be ...'."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"missing key '{location}'"
    if first["type"] == "extra_forbidden":
        return f"unknown key '{location}'"
    return f"{location}: {message}" if location else message
