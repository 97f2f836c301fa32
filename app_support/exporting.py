"""Export / import: the erasure config, feature lists, a Python snippet, and reading either document back.

* The erasure config is the core's schema (:mod:`itd_core.erasure_config`), read by ``itd classify``,
  ``itd calibrate``, ``itd generate --erasure`` and :func:`itd_core.pipeline.apply_erasure`.
* Feature lists are Neuronpedia-style lists (one per concept: feature ``index`` + ``description``),
  with the model, layer and SAE fingerprint they refer to. They import as a set without thresholds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from itd_core.erasure_config import ErasureConfig
from itd_core.errors import ItdError

FEATURE_LISTS_FORMAT = "itd-explorer-feature-lists"
FEATURE_LISTS_VERSION = 1
LISTS_NOTE = ("Feature lists carry no thresholds, prompts, concept kinds or method switches: the set gets the loaded SAE's "
              "defaults (the recommended method) and the lists' strengths. Calibrate it after importing.")


def feature_lists(config: ErasureConfig, set_name: str) -> dict:
    return {
        "format": FEATURE_LISTS_FORMAT, "format_version": FEATURE_LISTS_VERSION, "set": set_name,
        "model": config.model.id_or_path, "layer": config.model.layer, "sae_sha256": config.sae.sha256,
        "lists": [{
            "name": concept.name, "description": concept.notes,
            "features": [{"modelId": config.model.id_or_path, "layer": config.model.layer, "index": f.id,
                          "description": f.label, "strength": f.strength} for f in concept.features],
        } for concept in config.concepts],
    }


def python_snippet(config: ErasureConfig, filename: str) -> str:
    """Code that applies the downloaded config to a diffusers pipeline."""
    concept = config.concepts[0].name if config.concepts else "the concept"
    if config.model.id_or_path == "demo":
        load = ("from itd_core.bundle import load_bundle\n\n"
                "pipe = load_bundle('demo').pipeline  # the ShapesWorld demo, a diffusers StableDiffusionPipeline")
    else:
        load = ("from diffusers import StableDiffusionPipeline\n\n"
                f"pipe = StableDiffusionPipeline.from_pretrained({config.model.id_or_path!r}, safety_checker=None)")
    prompt = f"A portrait of {concept}"
    return (
        f"{load}\n"
        "from itd_core.erasure_config import ErasureConfig\n"
        "from itd_core.pipeline import apply_erasure\n\n"
        f"config = ErasureConfig.load({filename!r})\n"
        "hook = apply_erasure(pipe, config)  # loads the SAE named in the config\n"
        f"image = pipe(prompt={prompt!r}).images[0]  # erased when the prompt triggers a concept\n"
        "print(hook.calls[-1].edited)  # [True] if it was edited\n"
        "hook.remove()  # back to the original model\n"
    )


@dataclass
class ImportReport:
    config: ErasureConfig
    problems: list[str] = field(default_factory=list)
    note: str = ""  # what the imported document could not carry

    @property
    def matches(self) -> bool:
        return not self.problems

    def rows(self) -> list[dict]:
        return [{
            "concept": c.name, "features": len(c.features),
            "ids": ", ".join(str(f.id) for f in c.features[:12]) + (" …" if len(c.features) > 12 else ""),
            "threshold": c.threshold, "prompts": len(c.prompts),
        } for c in self.config.concepts]


def read_import(data: bytes, bundle, source: str = "uploaded file") -> ImportReport:
    """Parse an uploaded erasure config or feature lists (everything this page exports, it imports) and check it
    against the loaded bundle (problems listed, not raised)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ItdError(f"{source} is not a JSON erasure config or feature lists: {error}") from None
    lists = isinstance(document, dict) and document.get("format") == FEATURE_LISTS_FORMAT
    config = config_from_feature_lists(document, bundle.new_erasure_config(), source) if lists else _read_config(document, source)
    problems = []
    try:
        bundle.check_config(config)
    except ItdError as error:
        problems.append(str(error))
    return ImportReport(config, problems, LISTS_NOTE if lists else "")


def _read_config(document, source: str) -> ErasureConfig:
    if not (isinstance(document, dict) and "schema_version" in document):
        raise ItdError(f"{source} is neither an erasure config (it has no 'schema_version') nor a set's feature lists "
                       f"(format {FEATURE_LISTS_FORMAT!r}); a feature index list goes back with `itd index import-list`")
    return ErasureConfig.from_dict(document, source=source)


def config_from_feature_lists(document: dict, template: ErasureConfig, source: str = "feature lists") -> ErasureConfig:
    """Feature lists (:func:`feature_lists`) as an erasure config: a concept per list (its name; its description as notes),
    a feature per item (``index``; ``description`` as label; ``strength`` kept, else the template's default).
    Model, layer and SAE fingerprint are the document's, so that the bundle's check compares them as for a config;
    the method switches and SAE sizes, which lists do not carry, are the template's. The config's own validation
    names anything malformed."""
    if document.get("format_version") != FEATURE_LISTS_VERSION:
        raise ItdError(f"{source}: unknown feature lists format_version {document.get('format_version')!r} "
                       f"(this tool reads version {FEATURE_LISTS_VERSION})")
    missing = [key for key in ("model", "layer", "sae_sha256", "lists") if key not in document]
    if missing:
        raise ItdError(f"{source}: missing key(s) {', '.join(map(repr, missing))} of feature lists")
    strength = template.default_strength()
    data = template.model_dump(mode="json") | {
        "model": {"id_or_path": document["model"], "layer": document["layer"]},
        "sae": template.sae.model_dump(mode="json") | {"sha256": document["sae_sha256"]},
        "concepts": _each(document["lists"], lambda entry: _concept_of_list(entry, strength)),
    }
    return ErasureConfig.from_dict(data, source=source)


def _concept_of_list(entry, strength: float):
    if not isinstance(entry, dict):
        return entry
    return {"name": entry.get("name"), "notes": entry.get("description") or "",
            "features": _each(entry.get("features"), lambda item: _feature_of_item(item, strength))}


def _feature_of_item(item, strength: float):
    if not isinstance(item, dict):
        return item
    return {"id": item.get("index"), "label": item.get("description") or "", "strength": item.get("strength", strength)}


def _each(values, convert):
    """``convert`` applied to a list's items; anything else is passed on as it is, for the config's validation to name."""
    return [convert(value) for value in values] if isinstance(values, list) else values


def adopt(config: ErasureConfig, template: ErasureConfig) -> ErasureConfig:
    """A matching imported config, re-pointed at the loaded bundle's model and SAE references."""
    return config.model_copy(update={"model": template.model, "sae": template.sae}, deep=True)


def suggest_set_name(filename: str, existing: Iterable[str]) -> str:
    """A valid, unused set name from an uploaded file's name."""
    stem = re.sub(r"[^A-Za-z0-9 _.\-]+", "_", Path(filename).stem).strip(" ._-")[:56] or "imported"
    taken = set(existing)
    name, number = stem, 2
    while name in taken:
        name, number = f"{stem} {number}", number + 1
    return name
