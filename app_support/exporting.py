"""Export / import: the erasure config, feature lists, a Python snippet, and reading an uploaded config.

* The erasure config is the core's schema (:mod:`itd_core.erasure_config`), read by ``itd classify``,
  ``itd calibrate``, ``itd generate --erasure`` and :func:`itd_core.pipeline.apply_erasure`.
* Feature lists are Neuronpedia-style lists (one per concept: feature ``index`` + ``description``),
  with the model, layer and SAE fingerprint they refer to.
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


def feature_lists(config: ErasureConfig, set_name: str) -> dict:
    return {
        "format": FEATURE_LISTS_FORMAT, "format_version": 1, "set": set_name,
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
    """Parse an uploaded erasure config and check it against the loaded bundle (problems listed, not raised)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ItdError(f"{source} is not a JSON erasure config: {error}") from None
    config = ErasureConfig.from_dict(document, source=source)
    problems = []
    try:
        bundle.check_config(config)
    except ItdError as error:
        problems.append(str(error))
    return ImportReport(config, problems)


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
