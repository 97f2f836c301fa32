"""ShapesWorld as the default ItD bundle (``--bundle demo``): its text encoder, hooked layer,
SAE folder and pipeline, as :mod:`itd_core.bundle` asks for them. Nothing is downloaded."""

from __future__ import annotations

import functools
from pathlib import Path

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
    sets = world.erasure_prompts()
    named = [p for group in ("identity", "artist") for prompts in sets[group].values() for p in prompts]
    return list(dict.fromkeys(captions + named + sets["unsafe"] + [r["prompt"] for r in sets["retain"]]))


@functools.cache
def attribute_prompts(n: int = 1500, seed: int = 23) -> tuple[list[str], list[set[str]]]:
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


def extras():
    from itd_core.bundle import BundleExtras

    return BundleExtras(index_corpus=index_corpus, attribute_prompts=attribute_prompts)
