"""The preview page's logic: the prompt x seed grid, CPU-sensible defaults, and the scheduler choice.

Images come from :func:`itd_core.pipeline.generate_side_by_side`, which caches each result on
disk keyed by everything that changes the image. The scheduler is not one of its settings, so
the app folds the scheduler's name into the ``model_id`` part of that key
(:func:`generation_model_id`): two schedulers never share a cached image.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from itd_core.erasure_config import ErasureConfig
from itd_core.errors import ItdError
from itd_core.providers import ImageJudge

# Shown name -> diffusers scheduler class (None: the model's own).
SCHEDULERS: dict[str, str | None] = {
    "model default": None,
    "DDIM": "DDIMScheduler",
    "Euler": "EulerDiscreteScheduler",
    "Euler ancestral": "EulerAncestralDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "PNDM": "PNDMScheduler",
}
MAX_IMAGES = 32
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_seeds(text: str) -> list[int]:
    """``"0, 1, 5-7"`` -> ``[0, 1, 5, 6, 7]``."""
    seeds: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        span = _RANGE.match(part)
        if span:
            low, high = int(span[1]), int(span[2])
            if high < low or high - low >= MAX_IMAGES:
                raise ItdError(f"bad seed range {part!r}: low-high with at most {MAX_IMAGES} seeds")
            seeds.extend(range(low, high + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise ItdError(f"bad seed {part!r}: use whole numbers such as '0, 1, 2' or '0-3'")
    if not seeds:
        raise ItdError("give at least one seed")
    if any(s >= 2**63 for s in seeds):
        raise ItdError("seeds must be below 2^63")
    return list(dict.fromkeys(seeds))


def grid(prompts: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """Every prompt with every seed, prompt-major."""
    prompts = [p.strip() for p in prompts if p.strip()]
    if not prompts:
        raise ItdError("type at least one prompt to preview")
    pairs = [(p, int(s)) for p in prompts for s in seeds]
    if len(pairs) > MAX_IMAGES:
        raise ItdError(f"{len(pairs)} images asked for; at most {MAX_IMAGES} at a time (fewer prompts or seeds)")
    return pairs


def cpu_default_size(native: int) -> int:
    """The pipeline's own size if small (the demo's 64 px), else 256 px: CPU-friendly, still recognisable."""
    return native if native <= 256 else 256


def generation_model_id(model_id: str, scheduler: str) -> str:
    return model_id if SCHEDULERS.get(scheduler) is None else f"{model_id}|scheduler={scheduler}"


def missing_thresholds(config: ErasureConfig) -> list[str]:
    return [c.name for c in config.concepts if c.threshold is None]


@contextmanager
def scheduler(pipe, name: str) -> Iterator[None]:
    """Use the named scheduler (built from the pipeline's own scheduler config) for the block, then restore."""
    if name not in SCHEDULERS:
        raise ItdError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    class_name = SCHEDULERS[name]
    if class_name is None:
        yield
        return
    import diffusers

    original = pipe.scheduler
    pipe.scheduler = getattr(diffusers, class_name).from_config(original.config)
    try:
        yield
    finally:
        pipe.scheduler = original


def native_size(model_folder) -> int | None:
    """The pipeline's default image side in pixels, read from its unet/vae configs (no weights loaded); None if unknown."""
    import json
    from pathlib import Path

    try:
        folder = Path(model_folder)
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- the image judge's verdict


def judged_concepts(triggered: Sequence[str], edited: bool, concept_names: Sequence[str]) -> list[str]:
    """The concepts to judge an image pair by: those the prompt triggered; with no classifier (every prompt
    edited, nothing triggered) every concept of the set."""
    if triggered:
        return list(triggered)
    return list(concept_names) if edited else []


def detect_pairs(pairs, judge: ImageJudge) -> list[tuple[dict, dict]]:
    """The world's image judge (on the demo, its detector) on each pair's original and erased image."""
    images = [image for pair in pairs for image in (pair.original, pair.erased)]
    found = judge.detect(images) if images else []
    return [(found[i], found[i + 1]) for i in range(0, len(found), 2)]


def detection_caption(detection: dict, judge: ImageJudge, concepts: Sequence[str] = (), *, erased: bool = False) -> str:
    """One image's verdict as a short markdown line: what the judge found (on the demo: character, artist, shape,
    colour, 'unsafe'); then, for each of ``concepts`` the judge knows, whether the image shows it, highlighted on the
    erased image (red: 'still shows X', green: 'X gone'). Names the judge does not know are not judged."""
    parts = judge.describe(detection)
    line = "detector: " + (" · ".join(parts) if parts else "nothing recognised")
    verdicts = []
    for name in concepts:
        try:
            shown = judge.shows(name, detection)
        except ItdError:
            shown = None
        if shown is None:
            continue
        if erased:
            verdicts.append(f":red[**still shows {name}**]" if shown else f":green[**{name} gone**]")
        else:
            verdicts.append(f"shows {name}" if shown else f"no {name}")
    return "  \n".join([line, " · ".join(verdicts)]) if verdicts else line
