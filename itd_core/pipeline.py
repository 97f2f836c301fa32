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

import functools
import hashlib
import json
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image

from itd_core.atomic import atomic_write_bytes, atomic_write_text
from itd_core.deactivation import Deactivator, ErasureResult
from itd_core.defaults import GUIDANCE, STEPS
from itd_core.encoders import TextEncoderAdapter, end_token_id, layer_output_tensor, prompt_token_mask, replace_layer_output, resolve_layer
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
    negative: bool = False  # the negative/unconditional prompts of classifier-free guidance
    folded: list[bool] = field(default_factory=list)  # rows encoded in their folded spelling (prompt_folding not "none")


class ErasureHook:
    """A removable forward hook on the text encoder layer that applies a :class:`Deactivator`.

    With ``edit_negative_prompt=False`` the negative/unconditional prompts of classifier-free guidance are
    scored but never edited: ``pipe.encode_prompt`` encodes the prompts first and the negative prompts second,
    so the hook counts the encoder calls inside it. With ``deactivator.fold_prompts``, ``pipe.encode_prompt``
    probes each prompt's folded spelling (:mod:`itd_core.prompt_folding`) first, on the text (a tokenizer may
    turn a look-alike letter into an unknown token), and a prompt whose folded spelling triggers a concept is
    encoded, and so edited, in that spelling; with ``fold_parts`` the name rules (:meth:`Deactivator.name_rules`)
    override the classifier: a prompt that holds a concept's full name triggers it, one that names only someone else
    sharing a word of it does not. Prompts given as embeddings, or encoded by calling the text
    encoder directly, are neither folded nor vetoed."""

    def __init__(self, pipe, deactivator: Deactivator, layer: str, *, gate: bool = True, edit_negative_prompt: bool = True):
        self.pipe = pipe
        self.deactivator = deactivator
        self.gate = gate
        self.edit_negative_prompt = edit_negative_prompt
        self.layer_name, module = resolve_layer(pipe.text_encoder, layer)
        self.calls: list[EncoderCall] = []
        self._end_id = end_token_id(pipe.tokenizer)
        self._prompt_mask: torch.Tensor | None = None
        self._call_is_negative = False
        self._folded_rows: list[bool] = []
        self._name_rules: tuple[torch.Tensor, torch.Tensor] | None = None
        self._probing = False
        self._prompt_calls_left: int | None = None  # inside encode_prompt: encoder calls still encoding the prompts
        self._pending_folded_rows: list[bool] = []
        self._pending_name_rules: tuple[torch.Tensor, torch.Tensor] | None = None
        self._probe_adapter = TextEncoderAdapter(pipe.text_encoder, pipe.tokenizer, layer) if deactivator.fold_prompts else None
        self._handles = [module.register_forward_hook(self._hook),
                         pipe.text_encoder.register_forward_pre_hook(self._before_encoder, with_kwargs=True)]
        if not edit_negative_prompt or self._probe_adapter is not None:
            self._wrap_encode_prompt()
        setattr(pipe, _HOOK_ATTRIBUTE, self)

    def _wrap_encode_prompt(self) -> None:
        original = self.pipe.encode_prompt

        @functools.wraps(original)
        def encode_prompt(*args, **kwargs):
            prompt = kwargs["prompt"] if "prompt" in kwargs else (args[0] if args else None)
            folded_rows: list[bool] = []
            name_rules = None
            if prompt is not None and self._probe_adapter is not None and self.gate:
                folded = [self.deactivator.folded(p) for p in ([prompt] if isinstance(prompt, str) else prompt)]
                name_rules = self.deactivator.name_rules(folded)
                prompt, folded_rows = self._fold_triggering(prompt, folded, name_rules)
                if "prompt" in kwargs:
                    kwargs["prompt"] = prompt
                else:
                    args = (prompt, *args[1:])
            # Given prompt embeddings, the only encoder call inside is the negative prompts'.
            self._prompt_calls_left = 0 if kwargs.get("prompt_embeds") is not None else 1
            self._pending_folded_rows = folded_rows
            self._pending_name_rules = name_rules
            try:
                return original(*args, **kwargs)
            finally:
                self._prompt_calls_left = None
                self._pending_folded_rows = []
                self._pending_name_rules = None

        self.pipe.encode_prompt = encode_prompt

    def _fold_triggering(self, prompt: str | list[str], folded: list[str],
                         name_rules: tuple[torch.Tensor, torch.Tensor]) -> tuple[str | list[str], list[bool]]:
        """The prompts with each one whose folded spelling (``folded``) triggers a concept (name rules included) replaced by
        that spelling, and which were."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        rows = [i for i, (p, f) in enumerate(zip(prompts, folded)) if p != f]
        swapped = [False] * len(prompts)
        if rows:
            batch = self._probe_adapter.tokenize([folded[i] for i in rows])
            self._probing = True  # the probe's own forward passes through the hooks untouched
            try:
                activations = self._probe_adapter.capture(batch)
            finally:
                self._probing = False
            triggers = self.deactivator.scores(activations, batch.prompt_mask).cpu() >= self.deactivator.threshold_tensor()
            hits = self.deactivator.decide(triggers, tuple(rule[rows] for rule in name_rules)).any(dim=1).tolist()
            for row, hit in zip(rows, hits):
                if hit:
                    prompts[row], swapped[row] = folded[row], True
        return (prompts[0] if isinstance(prompt, str) else prompts), swapped

    def _before_encoder(self, module, args, kwargs):
        if self._probing:
            return None
        if self._prompt_calls_left is None:
            self._call_is_negative = False  # a direct call of the text encoder: a prompt
        else:
            self._call_is_negative = self._prompt_calls_left == 0
            self._prompt_calls_left = max(self._prompt_calls_left - 1, 0)
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        folded = self._pending_folded_rows if not self._call_is_negative else []
        self._folded_rows = folded if input_ids is not None and len(folded) == len(input_ids) else [False] * (0 if input_ids is None else len(input_ids))
        rules = None if self._call_is_negative else self._pending_name_rules
        self._name_rules = rules if input_ids is not None and rules is not None and len(rules[0]) == len(input_ids) else None
        self._prompt_mask = None if input_ids is None else prompt_token_mask(input_ids, self._end_id)
        return None

    def _skips_this_call(self) -> bool:
        return self._call_is_negative and not self.edit_negative_prompt

    def _hook(self, module, inputs, output):
        if self._probing:
            return None
        mask = self._prompt_mask if self.deactivator.score_positions != "all" else None
        result: ErasureResult = self.deactivator.apply(layer_output_tensor(output), gate=self.gate, prompt_mask=mask, name_rules=self._name_rules)
        skip = self._skips_this_call()
        edited = [False] * len(result.edited) if skip else result.edited.tolist()
        self.calls.append(EncoderCall(result.scores.tolist(), result.triggered.tolist(), edited, self._call_is_negative, list(self._folded_rows)))
        if skip or not result.edited.any():
            return None  # keep the layer's own output object: bit-exact pass-through
        return replace_layer_output(output, result.activations)

    @property
    def concept_names(self) -> list[str]:
        return [c.name for c in self.deactivator.concepts]

    @property
    def prompt_calls(self) -> list[EncoderCall]:
        """The calls that encoded prompts (not negative prompts)."""
        return [call for call in self.calls if not call.negative]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        if "encode_prompt" in vars(self.pipe):
            del self.pipe.encode_prompt  # back to the pipeline class's own method
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


def apply_erasure(pipe, config: ErasureConfig, sae: TopKSAE | None = None, *, gate: bool = True, edit_strength: float | None = None,
                  bf16_screen: bool = False) -> ErasureHook:
    """Install ItD on ``pipe.text_encoder`` so that a plain ``pipe(prompt=...)`` erases.
    Loads the SAE named in the config when ``sae`` is not given. Replaces an earlier erasure hook.
    ``edit_strength`` overrides the strengths of the edit only (the classifier keeps the config's).
    ``bf16_screen``: encode through :meth:`~itd_core.sae.TopKSAE.screen_in_bf16` (the fp32 result, 2-3x faster on a
    CPU at 524k latents, a quarter more memory); it is set on the SAE itself."""
    if sae is None:
        from itd_core.bundle import sae_location
        from itd_core.sae_formats import load_sae

        sae = load_sae(sae_location(config.sae.path, config.sae.subfolder), format=config.sae.format)
    encoder_device = next(pipe.text_encoder.parameters()).device
    if sae.W_dec.device != encoder_device:
        sae = sae.to(encoder_device)
    width = pipe.text_encoder.config.hidden_size
    if sae.d_model != width:
        raise ItdError(f"SAE width {sae.d_model} does not match the text encoder's width {width}")
    if bf16_screen:
        if sae.W_enc.dtype != torch.float32:
            raise ItdError(f"bf16_screen serves an fp32 SAE; this one is {sae.W_enc.dtype}")
        sae.screen_in_bf16()
    remove_erasure(pipe)
    return ErasureHook(pipe, config.deactivator(sae, edit_strength=edit_strength), config.model.layer, gate=gate,
                       edit_negative_prompt=config.edit_negative_prompt)


def erasure(pipe, config: ErasureConfig, sae: TopKSAE | None = None, *, gate: bool = True, edit_strength: float | None = None,
            bf16_screen: bool = False) -> ErasureHook:
    """Context manager form: ``with erasure(pipe, config): pipe(prompt=...)``."""
    return apply_erasure(pipe, config, sae, gate=gate, edit_strength=edit_strength, bf16_screen=bf16_screen)


# -- generation ------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationSettings:
    steps: int = STEPS
    size: int | None = None  # pixels; None: the pipeline's default
    guidance: float = GUIDANCE
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


_FINGERPRINT_ATTRIBUTE = "_itd_weights_fingerprint"
_SAMPLED_VALUES = 64  # per tensor, from each end: retrained or fine-tuned weights change them


def pipeline_fingerprint(pipe) -> str:
    """A short fingerprint of the pipeline's weights (text encoder, UNet, VAE): every tensor's name, shape, dtype and
    its first and last values. Computed once per pipeline object; a cache keyed by it never serves images of other weights."""
    cached = getattr(pipe, _FINGERPRINT_ATTRIBUTE, None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for component in ("text_encoder", "unet", "vae"):
        module = getattr(pipe, component, None)
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            sample = torch.cat([flat[:_SAMPLED_VALUES], flat[-_SAMPLED_VALUES:]]).float().cpu()
            digest.update(f"{component}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(sample.numpy().tobytes())
    fingerprint = digest.hexdigest()[:16]
    setattr(pipe, _FINGERPRINT_ATTRIBUTE, fingerprint)
    return fingerprint


class GenerationCache:
    """PNG + JSON per result, keyed by everything that changes the image (the weights by :func:`pipeline_fingerprint`).

    The JSON holds the meta and the SHA-256 of the PNG it was written with, and an entry whose PNG does not match is a
    miss: each file is written atomically, but not the pair, so a writer killed between its two writes (or two writers
    of one key interleaving) would otherwise pair one result's image with another's meta."""

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
            entry = json.loads(meta_path.read_text())
            png = image_path.read_bytes()
            if not (isinstance(entry, dict) and entry.get("png_sha256") == hashlib.sha256(png).hexdigest()
                    and isinstance(entry.get("meta"), dict)):
                return None  # half of an interrupted put, or an entry of an older version: regenerated
            with Image.open(BytesIO(png)) as image:
                return image.copy(), entry["meta"]
        except (OSError, ValueError):
            return None  # a damaged entry is regenerated

    def put(self, key: str, image: Image.Image, meta: dict) -> None:
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        png = buffer.getvalue()
        atomic_write_bytes(self.folder / f"{key}.png", png)
        atomic_write_text(self.folder / f"{key}.json", json.dumps({"png_sha256": hashlib.sha256(png).hexdigest(), "meta": meta}))


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
    edit_strength: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SideBySide]:
    """Each prompt with and without erasure, from the same seed and initial latents.
    ``prompts`` and ``seeds`` pair up one to one. ``progress(done, total)`` counts denoising steps.
    ``edit_strength``: see :func:`apply_erasure`."""
    if len(prompts) != len(seeds):
        raise ItdError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt")
    if not prompts:
        raise ItdError("no prompts to generate")
    size = settings.resolved_size(pipe)
    config_hash = config.content_hash() + ("" if gate else ":ungated") + ("" if edit_strength is None else f":edit{edit_strength!r}")
    model = f"{model_id}@{pipeline_fingerprint(pipe)}"  # the name alone would serve images of weights since replaced
    keys = [(GenerationCache.key(model, p, s, settings, size, None), GenerationCache.key(model, p, s, settings, size, config_hash)) for p, s in zip(prompts, seeds)]
    cached = [(cache.get(a), cache.get(b)) if cache else (None, None) for a, b in keys]
    todo = [i for i, (a, b) in enumerate(cached) if a is None or b is None]
    results: dict[int, tuple[Image.Image, Image.Image, dict]] = {}
    if todo:
        total = 2 * settings.steps
        todo_prompts, todo_seeds = [prompts[i] for i in todo], [seeds[i] for i in todo]
        remove_erasure(pipe)
        originals = generate_images(pipe, todo_prompts, todo_seeds, settings, progress and (lambda done, _: progress(done, total)))
        with apply_erasure(pipe, config, sae, gate=gate, edit_strength=edit_strength) as hook:
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


def pair_caption(pair: SideBySide) -> str:
    """What a side-by-side row says under its images: prompt, seed, and the classifier's decision with its score."""
    if pair.edited:
        decision = "edited: " + ", ".join(f"{name} (score {pair.scores.get(name, float('nan')):.3g})" for name in pair.triggered)
    else:
        top = max(pair.scores.items(), key=lambda item: item[1], default=None)
        decision = "untouched" + (f" (highest score: {top[0]} {top[1]:.3g})" if top else "")
    return f"{pair.prompt!r} · seed {pair.seed} · {decision}"


def side_by_side_image(pairs: Sequence[SideBySide], scale: int = 1, *, captions: bool = True) -> Image.Image:
    """One picture: a row per prompt, original left, erased right; with ``captions``, a header and under each row
    :func:`pair_caption`, so that a saved sheet says what it shows."""
    from PIL import ImageDraw, ImageFont

    width, height = pairs[0].original.size
    cell_w, cell_h = width * scale, height * scale
    font = ImageFont.load_default()
    line_h = 14 if captions else 0
    chars_per_line = max(2 * cell_w // 6, 20)  # the default font is about 6 px wide
    lines = [textwrap.wrap(pair_caption(pair), chars_per_line) if captions else [] for pair in pairs]
    header = line_h
    row_h = [cell_h + line_h * len(wrapped) + (4 if captions else 0) for wrapped in lines]
    sheet = Image.new("RGB", (2 * cell_w, header + sum(row_h)), "white")
    draw = ImageDraw.Draw(sheet)
    if captions:
        draw.text((2, 1), "without erasure", fill="black", font=font)
        draw.text((cell_w + 2, 1), "with ItD", fill="black", font=font)
    top = header
    for pair, wrapped, height_of_row in zip(pairs, lines, row_h):
        for column, image in enumerate((pair.original, pair.erased)):
            sheet.paste(image.resize((cell_w, cell_h), Image.NEAREST), (column * cell_w, top))
        for k, line in enumerate(wrapped):
            draw.text((2, top + cell_h + 2 + k * line_h), line, fill="darkred" if pair.edited else "black", font=font)
        top += height_of_row
    return sheet
