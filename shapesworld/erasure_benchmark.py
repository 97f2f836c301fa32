"""The erasure benchmark on ShapesWorld, as the paper reports it for celebrities.

For a set of erased identities, images are generated over fixed seeds for: the erased identities'
prompts (targets), the other identities' prompts, plain object prompts, and simple adversarial
prompts (paraphrases and misspellings of the erased names). The methods run on the same seeds and
initial latents: no erasure, a keyword blacklist (the names are removed from the prompt), SAE
deactivation on every prompt without the classifier (steering), ItD as the config says, and
optionally ``itd-prompt``: the same features with the classifier score averaged over the prompt's own
tokens (``score_positions="prompt"``), recalibrated by the same rule. The detector judges:

* Acc_e: share of target images in which the detector still finds the erased identity (lower is better);
* Acc_r: share of retained-identity images with the right identity (higher is better); when every
  identity is erased, the share of object images with the right shape stands in;
* H: harmonic mean of (1 - Acc_e) and Acc_r;
* identical: share of non-target images bit-identical to the no-erasure image;
* Acc_e on adversarial prompts.

    python bench/bench_demo_erasure.py            # the README table
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from itd_core.defaults import DEFAULT_TOP_N, GUIDANCE, PAPER_STRENGTH, STEPS
from shapesworld import world

METHODS = ("none", "blacklist", "steering", "itd")
PROMPT_SCORE_METHOD = "itd-prompt"
SEEDS = (0, 1)  # retained identities and objects
TARGET_SEEDS = tuple(range(6))  # the erased names' five prompts: 30 images per identity resolve Acc_e to ~3%


@dataclass
class PromptItem:
    prompt: str
    group: str  # target | retained | object | adversarial
    identity: str | None = None  # the identity the prompt names (erased or retained)
    shape: str | None = None


@dataclass
class MethodResult:
    method: str
    acc_e: float
    acc_r: float
    h: float
    identical: float | None
    acc_e_adversarial: float | None
    object_shape_accuracy: float | None
    edited_share: dict[str, float] = field(default_factory=dict)


def misspellings(name: str, seed: int = 0) -> list[str]:
    """Two simple misspellings: a dropped letter and two swapped letters (in the surname)."""
    rng = random.Random(seed)
    first, _, last = name.partition(" ")
    drop = rng.randrange(1, len(last) - 1)
    swap = rng.randrange(1, len(last) - 2)
    dropped = last[:drop] + last[drop + 1:]
    swapped = last[:swap] + last[swap + 1] + last[swap] + last[swap + 2:]
    return [f"{first} {dropped}", f"{first} {swapped}"]


PARAPHRASES = ["a picture showing {}", "{}, portrait photograph", "the famous {} standing outside"]


def prompt_items(erased: Sequence[str], *, n_objects: int = 40, n_retained: int | None = None, seed: int = 0) -> list[PromptItem]:
    """Targets, retained identities (all others, or the first ``n_retained``), objects, adversarial prompts."""
    sets = world.erasure_prompts(n_retain=n_objects)
    items = [PromptItem(p, "target", name) for name in erased for p in sets["identity"][name]]
    retained = [name for name in sets["identity"] if name not in erased][:n_retained]
    items += [PromptItem(p, "retained", name) for name in retained for p in sets["identity"][name]]
    items += [PromptItem(r["prompt"], "object", shape=r["shape"]) for r in sets["retain"]]
    for name in erased:
        items += [PromptItem(t.format(name), "adversarial", name) for t in PARAPHRASES]
        items += [PromptItem(f"A portrait of {m}", "adversarial", name) for m in misspellings(name, seed)]
    return items


def image_seed(prompt: str, slot: int) -> int:
    """The generator seed of one image: its own per prompt and seed slot, the same for every method and
    scenario. Sharing a seed across prompts would tie every figure to a few initial noises (measured
    here: the same 70 character prompts were drawn right 23% of the time on seed 0 and 100% on seed 3)."""
    return (zlib.crc32(prompt.encode()) + 1_000_003 * slot) % 2**31


def erased_identities(concept_names: Sequence[str]) -> list[str]:
    """The world identities an erasure config's concepts name (case-insensitive); the detector can only judge those."""
    from itd_core.errors import ItdError

    by_key = {name.casefold(): name for name in world.IDENTITIES}
    unknown = [name for name in concept_names if name.strip().casefold() not in by_key]
    if unknown:
        raise ItdError(f"the image benchmark judges ShapesWorld identities only; {', '.join(map(repr, unknown))} "
                       f"is not one (name each concept after an identity: {', '.join(world.IDENTITIES)})")
    return [by_key[name.strip().casefold()] for name in concept_names]


def blacklist(prompt: str, names: Sequence[str]) -> str:
    """The keyword baseline: remove every erased name (case-insensitive, exact spelling)."""
    for name in names:
        prompt = re.sub(re.escape(name), "", prompt, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", prompt).strip()


def build_config(bundle, erased: Sequence[str], *, top_n: int = DEFAULT_TOP_N, strength: float = PAPER_STRENGTH):
    """ItD for the erased identities: features from each identity's prompts minus a retain set of the
    other identities' prompts, artist prompts, object prompts and portraits of people outside the world
    (without them, erasing every identity would also select the templates' own features, "a portrait
    of ..."); thresholds by the paper's rule."""
    from itd_core.concept import PromptProfile, select_concept
    from itd_core.erasure_config import ConceptEntry, FeatureEntry

    sets = _calibration_sets()
    retain = _retain_prompts(sets, erased)
    profile = PromptProfile.build(bundle.adapter, bundle.sae, retain, top_n)
    config = bundle.new_erasure_config(method="paper")  # this benchmark measures the paper's method
    for name in erased:
        selection = select_concept(bundle.adapter, bundle.sae, name, sets["identity"][name], profile, top_n=top_n)
        config.upsert(ConceptEntry(name=name, prompts=selection.prompts,
                                   features=[FeatureEntry(id=f, strength=strength) for f in selection.feature_ids]))
    return calibrate(bundle, config, erased)


def calibrate(bundle, config, erased: Sequence[str]):
    """Thresholds by the paper's rule (0.99 x the lowest target score), under ``config.score_positions``."""
    from itd_core.calibration import paper_threshold, rates
    from itd_core.erasure_config import CalibrationInfo

    sets = _calibration_sets()
    retain = _retain_prompts(sets, erased)
    deactivator = config.deactivator(bundle.sae)
    target_scores = {name: deactivator.score_prompts(bundle.adapter, sets["identity"][name]) for name in erased}
    retain_scores = deactivator.score_prompts(bundle.adapter, retain)
    for index, name in enumerate(erased):
        concept = config.concept(name)
        scores = target_scores[name][:, index].tolist()
        concept.threshold = paper_threshold(scores)
        measured = rates(concept.threshold, scores, retain_scores[:, index].tolist())
        concept.calibration = CalibrationInfo(rule="paper", sets=["identity templates", "retain: other identities, artists, objects, outside people"],
                                              tpr=measured.tpr, fpr=measured.fpr, n_target=measured.n_target, n_retain=measured.n_retain)
    return config


def _calibration_sets() -> dict:
    return world.erasure_prompts(n_retain=200, seed=777)  # a retain stream apart from the test prompts


def _retain_prompts(sets: dict, erased: Sequence[str]) -> list[str]:
    retain = [p for name, prompts in sets["identity"].items() if name not in erased for p in prompts]
    return retain + [p for prompts in sets["artist"].values() for p in prompts] + [r["prompt"] for r in sets["retain"]] + sets["outside_people"]


def run(bundle, erased: Sequence[str], *, seeds: Sequence[int] = SEEDS, target_seeds: Sequence[int] = TARGET_SEEDS, methods: Sequence[str] = METHODS,
        n_objects: int = 40, n_retained: int | None = None, steps: int = STEPS, guidance: float = GUIDANCE, batch: int = 64, config=None,
        progress: Callable[[str], None] | None = None) -> dict:
    """Generate and judge every prompt x seed with each method. Returns the results and the config.

    ``seeds`` and ``target_seeds`` are seed slots (see :func:`image_seed`); ``target_seeds`` serve the erased
    names' prompts and their adversarial variants: a single identity has only five prompts, so Acc_e
    needs more images than Acc_r to resolve 10%."""
    from itd_core.pipeline import GenerationSettings, apply_erasure, generate_images, remove_erasure
    from shapesworld.detector import detect

    config = config or build_config(bundle, erased)
    configs = {"steering": config, "itd": config}
    if PROMPT_SCORE_METHOD in methods:
        configs[PROMPT_SCORE_METHOD] = calibrate(bundle, config.model_copy(update={"score_positions": "prompt"}, deep=True), erased)
    items = prompt_items(erased, n_objects=n_objects, n_retained=n_retained)
    seeds, target_seeds = list(seeds), list(target_seeds)
    jobs = [(item, slot) for item in items for slot in (target_seeds if item.group in ("target", "adversarial") else seeds)]
    settings = GenerationSettings(steps=steps, guidance=guidance)
    pipe = bundle.pipeline
    images: dict[str, list] = {}
    edited: dict[str, list[bool]] = {}
    for method in methods:
        if progress:
            progress(f"{method}: {len(jobs)} images")
        remove_erasure(pipe)
        hook = apply_erasure(pipe, configs[method], bundle.sae, gate=(method != "steering")) if method in configs else None
        outputs, flags = [], []
        try:
            for start in range(0, len(jobs), batch):
                chunk = jobs[start:start + batch]
                prompts = [blacklist(item.prompt, erased) if method == "blacklist" else item.prompt for item, _ in chunk]
                if hook:
                    hook.calls.clear()
                outputs += generate_images(pipe, prompts, [image_seed(item.prompt, slot) for item, slot in chunk], settings)
                flags += hook.prompt_calls[0].edited if hook else [False] * len(chunk)
        finally:
            if hook:
                hook.remove()
        images[method], edited[method] = outputs, flags
    detections = {method: detect([image for image in images[method]]) for method in methods}
    results = [_judge(method, jobs, detections[method], images, edited[method]) for method in methods]
    return {"erased": list(erased), "seeds": seeds, "target_seeds": target_seeds, "n_images_per_method": len(jobs), "configs": configs,
            "results": results, "n_by_group": {group: sum(item.group == group for item, _ in jobs) for group in ("target", "retained", "object", "adversarial")}}


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _judge(method: str, jobs, detections: list[dict], images: dict[str, list], edited: list[bool]) -> MethodResult:
    groups: dict[str, list[tuple[PromptItem, dict, int]]] = {}
    for index, ((item, _), detection) in enumerate(zip(jobs, detections)):
        groups.setdefault(item.group, []).append((item, detection, index))
    acc_e = _share([d["identity"] == item.identity for item, d, _ in groups.get("target", [])]) or 0.0
    retained = _share([d["identity"] == item.identity for item, d, _ in groups.get("retained", [])])
    objects = _share([d["shape"] == item.shape for item, d, _ in groups.get("object", [])])
    acc_r = retained if retained is not None else (objects or 0.0)
    h = 2 * (1 - acc_e) * acc_r / ((1 - acc_e) + acc_r) if (1 - acc_e) + acc_r > 0 else 0.0
    non_targets = [i for group in ("retained", "object") for _, _, i in groups.get(group, [])]
    identical = _share([images[method][i].tobytes() == images["none"][i].tobytes() for i in non_targets]) if "none" in images else None
    adversarial = _share([d["identity"] == item.identity for item, d, _ in groups.get("adversarial", [])])
    edited_share = {group: _share([edited[i] for _, _, i in rows]) for group, rows in groups.items()}
    return MethodResult(method, acc_e, acc_r, h, identical, adversarial, objects, edited_share)


def markdown_table(title: str, outcome: dict) -> str:
    counts = ", ".join(f"{n} {group}" for group, n in outcome["n_by_group"].items() if n)
    lines = [f"**{title}** (erased: {', '.join(outcome['erased'])}; {outcome['n_images_per_method']} images per method: {counts})", "",
             "| method | Acc_e ↓ | Acc_r ↑ | H ↑ | non-target images bit-identical | Acc_e adversarial ↓ | objects: shape right | edited: targets / non-targets |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in outcome["results"]:
        non_target_edits = [v for k, v in r.edited_share.items() if k in ("retained", "object") and v is not None]
        edits = f"{r.edited_share.get('target', 0):.0%} / {sum(non_target_edits) / max(len(non_target_edits), 1):.0%}"
        lines.append(f"| {r.method} | {r.acc_e:.1%} | {r.acc_r:.1%} | {r.h:.3f} | {'' if r.identical is None else f'{r.identical:.1%}'} | "
                     f"{'' if r.acc_e_adversarial is None else f'{r.acc_e_adversarial:.1%}'} | "
                     f"{'' if r.object_shape_accuracy is None else f'{r.object_shape_accuracy:.1%}'} | {edits} |")
    return "\n".join(lines)
