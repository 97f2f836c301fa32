"""ShapesWorld as the default ItD bundle (``--bundle demo``): a :class:`itd_core.providers.BundleProvider`
(registered through the ``itd_explorer.bundles`` entry point in ``pyproject.toml``) with the world's text encoder,
hooked layer, SAE and pipeline, and what the app and the CLI may ask about the world: prompt sets, presets,
the index corpus, attribute prompts for automatic labels, concept vocabulary for the red-team generator, and the
detector as image judge. Nothing is downloaded."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from itd_core.providers import BundleProvider, ConceptVocabulary, ImageJudge, WorldKnowledge
from shapesworld import text_encoder as te
from shapesworld.errors import asset_error

HOOK_LAYER = te.HOOK_LAYER
SAE_DIR = Path(__file__).parent / "assets" / "sae"
TRAIN_SAE_COMMAND = "python -m shapesworld.train_sae"


def load_text_encoder_and_tokenizer():
    return te.load_text_encoder(), te.load_tokenizer()


def sae_folder() -> Path:
    """The demo SAE (native format), checked to exist."""
    for name in ("sae_config.json", "sae.safetensors"):
        if not (SAE_DIR / name).is_file():
            raise asset_error(SAE_DIR / name, TRAIN_SAE_COMMAND, "file not found")
    return SAE_DIR


def load_pipeline(text_encoder=None, tokenizer=None, device: str = "cpu"):
    from shapesworld.pipeline import load_pipeline as load

    return load(device=device, text_encoder=text_encoder, tokenizer=tokenizer)


def index_corpus() -> list[str]:
    """The feature index's corpus on the demo: generated world captions and the world's benchmark prompts
    (about 1.5k prompts: ~10 s to index on 2 cores)."""
    from shapesworld import world

    captions = [sample.caption for sample in world.generate(2000, seed=11)]
    named = [p for prompts in concept_presets().values() for p in prompts]  # characters, artists, then unsafe
    return list(dict.fromkeys(captions + named + [r["prompt"] for r in _benchmark()["retain"]]))


@functools.cache
def attribute_prompts(n: int = 1500, seed: int = 23) -> tuple[tuple[str, ...], tuple[frozenset[str], ...]]:
    """World captions with the attributes each one names (shape, colour, character, artist and style, unsafe), for
    automatic feature labels. Only what the caption says counts: an artist-only caption names no shape.
    Made once per process (~1 s)."""
    from shapesworld import world

    prompts, attributes = [], []
    for sample in world.generate(n, seed=seed):
        labels, mentions = sample.labels, set(sample.labels["mentions"])
        named = set()
        if "identity" in mentions:
            named.add(f"character: {labels['identity']}")
        if "artist" in mentions:  # the artist fixes the style: one attribute, so that either word finds it
            named.add(f"artist: {labels['artist']} ({labels['style']} style)")
        if "shape" in mentions and labels["shape"]:
            named.add(f"shape: {labels['shape']}")
        if "colour" in mentions and labels["colour"]:
            named.add(f"colour: {labels['colour']}")
        if labels["unsafe"]:
            named.add("unsafe")
        prompts.append(sample.caption)
        attributes.append(named)
    return tuple(prompts), tuple(frozenset(a) for a in attributes)


# --------------------------------------------------------------------------- what the app and the CLI may ask

CONCEPT_SETS = "ShapesWorld: identities and artists"
RETAIN_SET = "ShapesWorld: object prompts (retain)"
OUTSIDE_SET = "ShapesWorld: people outside the world (retain)"
GENERAL_SET = "General prompts: COCO captions (400, retain)"
DETECTOR_SIZE = 64  # the detector judges 64 x 64 images


@functools.cache
def _benchmark() -> dict:
    from shapesworld import world

    return world.erasure_prompts()


def prompt_sets() -> dict[str, tuple[str, ...]]:
    """The world's benchmark prompts as named sets: its object prompts and people outside the world (retain sets),
    every character's and artist's templates (a retain set for the other concepts), and ordinary prompts the world
    does not know (without them the unsafe concept keeps generic features: README, red-team benchmark)."""
    from shapesworld.redteam_benchmark import general_retain_prompts

    bench = _benchmark()
    return {
        RETAIN_SET: tuple(row["prompt"] for row in bench["retain"]),
        OUTSIDE_SET: tuple(bench["outside_people"]),
        CONCEPT_SETS: tuple(p for kind in ("identity", "artist") for prompts in bench[kind].values() for p in prompts),
        GENERAL_SET: tuple(general_retain_prompts()),
    }


def concept_presets() -> dict[str, tuple[str, ...]]:
    """Name -> benchmark prompts, for every character and artist, and the unsafe category."""
    bench = _benchmark()
    presets = {name: tuple(prompts) for kind in ("identity", "artist") for name, prompts in bench[kind].items()}
    presets["unsafe (gore)"] = tuple(bench["unsafe"])
    return presets


def _world_concept(name: str) -> str | None:
    """The world's spelling of a concept name, or None; a trailing remark in brackets is dropped ("unsafe (gore)")."""
    from itd_core.errors import ItdError
    from shapesworld import redteam_benchmark as rb

    for candidate in dict.fromkeys([name, re.sub(r"\s*\([^)]*\)\s*$", "", name)]):
        try:
            rb.concept_kind(candidate)
        except ItdError:
            continue
        return rb.world_name(candidate)
    return None


def concept_vocabulary(name: str) -> ConceptVocabulary | None:
    from shapesworld import redteam_benchmark as rb

    spelling = _world_concept(name)
    if spelling is None:
        return None
    return ConceptVocabulary(spelling, rb.concept_kind(spelling), tuple(rb.other_names(spelling)))


def context_phrases() -> tuple[str, ...]:
    from shapesworld import redteam_benchmark as rb

    return tuple(rb.context_phrases())


def detect(images) -> list[dict]:
    """The world's detector on each image (resized to 64 px when generated at another size)."""
    from PIL import Image

    from shapesworld.detector import detect as run

    images = [im if im.size == (DETECTOR_SIZE, DETECTOR_SIZE) else im.resize((DETECTOR_SIZE, DETECTOR_SIZE), Image.BILINEAR) for im in images]
    return run(images) if images else []


def describe(detection: dict) -> list[str]:
    """What the detector found, as short markdown parts: character, artist, shape, colour, unsafe."""
    def percent(head: str) -> str:
        confidence = detection.get(f"{head}_conf")
        return "" if confidence is None else f" ({confidence:.0%})"

    parts = []
    if detection.get("identity"):
        parts.append(f"character **{detection['identity']}**{percent('identity')}")
    if detection.get("artist"):
        parts.append(f"artist **{detection['artist']}**{percent('artist')}")
    if detection.get("shape"):
        parts.append(f"{detection['shape']}{percent('shape')}")
    if detection.get("colour"):
        parts.append(f"{detection['colour']}{percent('colour')}")
    if detection.get("unsafe"):
        parts.append(f"**unsafe**{percent('unsafe')}")
    return parts


def shows(name: str, detection: dict) -> bool | None:
    """Whether the image shows concept ``name``; None when the world does not know the name."""
    from shapesworld.redteam_benchmark import shows_concept

    spelling = _world_concept(name)
    return None if spelling is None else shows_concept(spelling, detection)


def _evaluate(*args, **kwargs) -> dict:
    from shapesworld.redteam_benchmark import evaluate_images

    return evaluate_images(*args, **kwargs)


def _report(document: dict) -> str:
    from shapesworld.redteam_benchmark import eval_report

    return eval_report(document)


PROVIDER = BundleProvider(
    name="demo",
    title="ShapesWorld demo",
    hook_layer=HOOK_LAYER,
    load_text_encoder=load_text_encoder_and_tokenizer,
    sae_folder=sae_folder,
    load_pipeline=lambda text_encoder, tokenizer: load_pipeline(text_encoder=text_encoder, tokenizer=tokenizer),
    world=WorldKnowledge(
        prompt_sets=prompt_sets,
        default_retain_sets=(RETAIN_SET, OUTSIDE_SET, CONCEPT_SETS, GENERAL_SET),
        concept_presets=concept_presets,
        example_prompts=("A portrait of Mira Castellane", "two small cyan hearts on a black background"),
        index_corpus=index_corpus,
        index_corpus_name="ShapesWorld: world captions and benchmark prompts (about 1.5k)",
        attribute_prompts=attribute_prompts,
        concept_vocabulary=concept_vocabulary,
        context_phrases=context_phrases,
        image_judge=ImageJudge(detect=detect, describe=describe, shows=shows, evaluate=_evaluate, report=_report),
        image_size=DETECTOR_SIZE,
    ),
)
