"""Diffusers integration: erase concepts inside a pipeline's own text encoder.

    hook = apply_erasure(pipe, ErasureConfig.load("erasure.json"))
    image = pipe(prompt="A portrait of Tom Cruise").images[0]   # erased
    hook.remove()                                               # or: with erasure(pipe, config): ...

The hook sits on the configured layer of ``pipe.text_encoder``; prompts that do not trigger
a concept pass through bit-exactly, so their images are bit-identical to the unerased ones.
:func:`generate_side_by_side` renders both versions from the same seed and initial latents,
and caches results on disk by (prompt, seed, steps, size, guidance, model, config).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image

from itd_core.atomic import atomic_write_bytes, atomic_write_text
from itd_core.deactivation import Deactivator, ErasureResult
from itd_core.encoders import end_token_id, layer_output_tensor, prompt_token_mask, replace_layer_output, resolve_layer
from itd_core.erasure_config import ErasureConfig
from itd_core.errors import ItdError
from itd_core.sae import TopKSAE

_HOOK_ATTRIBUTE = "_itd_erasure_hook"


@dataclass
class EncoderCall:
    """What the hook decided for one text-encoder call (the prompts, or the negative prompts)."""

    scores: list[list[float]]
    triggered: list[list[bool]]
    edited: list[bool]


class ErasureHook:
    """A removable forward hook on the text encoder layer that applies a :class:`Deactivator`."""

    def __init__(self, pipe, deactivator: Deactivator, layer: str, *, gate: bool = True):
        self.pipe = pipe
        self.deactivator = deactivator
        self.gate = gate
        self.layer_name, module = resolve_layer(pipe.text_encoder, layer)
        self.calls: list[EncoderCall] = []
        self._prompt_mask: torch.Tensor | None = None
        self._handles = [module.register_forward_hook(self._hook)]
        if deactivator.score_positions == "prompt":  # the layer does not see the ids: note them as the encoder starts
            self._end_id = end_token_id(pipe.tokenizer)
            self._handles.append(pipe.text_encoder.register_forward_pre_hook(self._note_prompt_mask, with_kwargs=True))
        setattr(pipe, _HOOK_ATTRIBUTE, self)

    def _note_prompt_mask(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        self._prompt_mask = None if input_ids is None else prompt_token_mask(input_ids, self._end_id)

    def _hook(self, module, inputs, output):
        result: ErasureResult = self.deactivator.apply(layer_output_tensor(output), gate=self.gate, prompt_mask=self._prompt_mask)
        self.calls.append(EncoderCall(result.scores.tolist(), result.triggered.tolist(), result.edited.tolist()))
        if not result.edited.any():
            return None  # keep the layer's own output object: bit-exact pass-through
        return replace_layer_output(output, result.activations)

    @property
    def concept_names(self) -> list[str]:
        return [c.name for c in self.deactivator.concepts]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        if getattr(self.pipe, _HOOK_ATTRIBUTE, None) is self:
            delattr(self.pipe, _HOOK_ATTRIBUTE)

    def __enter__(self) -> "ErasureHook":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def remove_erasure(pipe) -> None:
    hook = getattr(pipe, _HOOK_ATTRIBUTE, None)
    if hook is not None:
        hook.remove()


def apply_erasure(pipe, config: ErasureConfig, sae: TopKSAE | None = None, *, gate: bool = True) -> ErasureHook:
    """Install ItD on ``pipe.text_encoder`` so that a plain ``pipe(prompt=...)`` erases.
    Loads the SAE named in the config when ``sae`` is not given. Replaces an earlier erasure hook."""
    if sae is None:
        from itd_core.bundle import sae_location
        from itd_core.sae_io import load_sae

        sae = load_sae(sae_location(config.sae.path, config.sae.subfolder), format=config.sae.format)
    encoder_device = next(pipe.text_encoder.parameters()).device
    if sae.W_dec.device != encoder_device:
        sae = sae.to(encoder_device)
    width = pipe.text_encoder.config.hidden_size
    if sae.d_model != width:
        raise ItdError(f"SAE width {sae.d_model} does not match the text encoder's width {width}")
    remove_erasure(pipe)
    return ErasureHook(pipe, config.deactivator(sae), config.model.layer, gate=gate)


def erasure(pipe, config: ErasureConfig, sae: TopKSAE | None = None, *, gate: bool = True) -> ErasureHook:
    """Context manager form: ``with erasure(pipe, config): pipe(prompt=...)``."""
    return apply_erasure(pipe, config, sae, gate=gate)


# -- generation ------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationSettings:
    steps: int = 20
    size: int | None = None  # pixels; None: the pipeline's default
    guidance: float = 6.0
    negative_prompt: str | None = None

    def resolved_size(self, pipe) -> int:
        return self.size or pipe.unet.config.sample_size * pipe.vae_scale_factor


def initial_latents(pipe, seeds: Sequence[int], size: int) -> torch.Tensor:
    """One latent per seed, drawn on the CPU so the same seed gives the same image on any device."""
    channels = pipe.unet.config.in_channels
    side = size // pipe.vae_scale_factor
    latents = [torch.randn((1, channels, side, side), generator=torch.Generator("cpu").manual_seed(int(seed))) for seed in seeds]
    return torch.cat(latents).to(device=pipe.device, dtype=pipe.unet.dtype)


def generate_images(pipe, prompts: Sequence[str], seeds: Sequence[int], settings: GenerationSettings, callback=None) -> list[Image.Image]:
    """Plain generation (whatever hook the pipeline has), one seed per prompt."""
    size = settings.resolved_size(pipe)
    kwargs = {}
    if callback is not None:
        kwargs["callback_on_step_end"] = lambda p, step, t, tensors: (callback(step + 1, settings.steps), tensors)[1]
    output = pipe(
        prompt=list(prompts), negative_prompt=[settings.negative_prompt] * len(prompts) if settings.negative_prompt else None,
        num_inference_steps=settings.steps, guidance_scale=settings.guidance, height=size, width=size,
        latents=initial_latents(pipe, seeds, size), output_type="pil", **kwargs,
    )
    return output.images


@dataclass
class SideBySide:
    prompt: str
    seed: int
    original: Image.Image
    erased: Image.Image
    edited: bool
    scores: dict[str, float] = field(default_factory=dict)
    triggered: list[str] = field(default_factory=list)
    from_cache: bool = False

    @property
    def identical(self) -> bool:
        return self.original.tobytes() == self.erased.tobytes()


class GenerationCache:
    """PNG + JSON per result, keyed by everything that changes the image."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder or os.environ.get("ITD_CACHE_DIR", Path.home() / ".cache" / "itd-explorer")) / "generations"

    @staticmethod
    def key(model: str, prompt: str, seed: int, settings: GenerationSettings, size: int, config_hash: str | None) -> str:
        payload = json.dumps([model, prompt, int(seed), asdict(settings), size, config_hash], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def get(self, key: str) -> tuple[Image.Image, dict] | None:
        image_path, meta_path = self.folder / f"{key}.png", self.folder / f"{key}.json"
        if not (image_path.is_file() and meta_path.is_file()):
            return None
        try:
            with Image.open(image_path) as image:
                return image.copy(), json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None  # a damaged entry is regenerated

    def put(self, key: str, image: Image.Image, meta: dict) -> None:
        from io import BytesIO

        buffer = BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(self.folder / f"{key}.png", buffer.getvalue())
        atomic_write_text(self.folder / f"{key}.json", json.dumps(meta))


def generate_side_by_side(
    pipe,
    config: ErasureConfig,
    sae: TopKSAE,
    prompts: Sequence[str],
    seeds: Sequence[int],
    settings: GenerationSettings = GenerationSettings(),
    *,
    model_id: str = "pipeline",
    cache: GenerationCache | None = None,
    gate: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[SideBySide]:
    """Each prompt with and without erasure, from the same seed and initial latents.
    ``prompts`` and ``seeds`` pair up one to one. ``progress(done, total)`` counts denoising steps."""
    if len(prompts) != len(seeds):
        raise ItdError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt")
    if not prompts:
        raise ItdError("no prompts to generate")
    size = settings.resolved_size(pipe)
    config_hash = config.content_hash() + ("" if gate else ":ungated")
    keys = [(GenerationCache.key(model_id, p, s, settings, size, None), GenerationCache.key(model_id, p, s, settings, size, config_hash)) for p, s in zip(prompts, seeds)]
    cached = [(cache.get(a), cache.get(b)) if cache else (None, None) for a, b in keys]
    todo = [i for i, (a, b) in enumerate(cached) if a is None or b is None]
    results: dict[int, tuple[Image.Image, Image.Image, dict]] = {}
    if todo:
        total = 2 * settings.steps
        todo_prompts, todo_seeds = [prompts[i] for i in todo], [seeds[i] for i in todo]
        remove_erasure(pipe)
        originals = generate_images(pipe, todo_prompts, todo_seeds, settings, progress and (lambda done, _: progress(done, total)))
        with apply_erasure(pipe, config, sae, gate=gate) as hook:
            erased = generate_images(pipe, todo_prompts, todo_seeds, settings, progress and (lambda done, _: progress(settings.steps + done, total)))
            decision = hook.calls[0]
            names = hook.concept_names
        for row, i in enumerate(todo):
            meta = {
                "edited": decision.edited[row],
                "scores": dict(zip(names, decision.scores[row])),
                "triggered": [n for n, hit in zip(names, decision.triggered[row]) if hit],
            }
            results[i] = (originals[row], erased[row], meta)
            if cache:
                cache.put(keys[i][0], originals[row], {})
                cache.put(keys[i][1], erased[row], meta)
    pairs = []
    for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
        if i in results:
            original, erased_image, meta = results[i]
            from_cache = False
        else:
            (original, _), (erased_image, meta) = cached[i]
            from_cache = True
        pairs.append(SideBySide(prompt, int(seed), original, erased_image, meta["edited"], meta["scores"], meta["triggered"], from_cache))
    return pairs


def side_by_side_image(pairs: Sequence[SideBySide], scale: int = 1) -> Image.Image:
    """One picture: a row per prompt, original left, erased right."""
    width, height = pairs[0].original.size
    sheet = Image.new("RGB", (2 * width * scale, len(pairs) * height * scale), "white")
    for row, pair in enumerate(pairs):
        for column, image in enumerate((pair.original, pair.erased)):
            sheet.paste(image.resize((width * scale, height * scale), Image.NEAREST), (column * width * scale, row * height * scale))
    return sheet
