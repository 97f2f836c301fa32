"""Model bundles: a diffusion model's text encoder + tokenizer, the hooked layer, an SAE, and
(lazily) the diffusers pipeline built around that same text encoder.

A bundle is named by a :class:`BundleSpec`:

* ``model=<provider name>``: a bundle provider (:mod:`itd_core.providers`); ``demo`` is ShapesWorld, shipped
  with the project (no download);
* ``model=<local diffusers folder>`` or ``model=<hub id>`` (e.g. ``CompVis/stable-diffusion-v1-4``),
  with ``sae=<local folder or hub repo>`` (+ ``sae_subfolder`` for the paper's repo, one
  subfolder per checkpoint step) and ``layer`` (default: 8, the paper's CLIP layer).

The pipeline shares the bundle's text encoder object, so a hook installed on the bundle's
layer (see :mod:`itd_core.pipeline`) acts on ``pipe(prompt=...)`` too.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from itd_core.encoders import TextEncoderAdapter, parse_dtype
from itd_core.erasure_config import METHOD_PRESETS, ErasureConfig, ModelRef, SAERef
from itd_core.errors import ItdError
from itd_core.hub import hub_snapshot
from itd_core.providers import BundleProvider, WorldKnowledge
from itd_core.providers import get as get_provider
from itd_core.sae import TopKSAE

DEMO = "demo"
PAPER_CLIP_LAYER = "text_model.encoder.layers.8"


class BundleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = DEMO
    sae: str | None = None
    sae_subfolder: str | None = None
    sae_format: Literal["auto", "itd", "saelens", "native"] = "auto"
    layer: str | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    bf16_screen: bool = False  # encode the fp32 SAE through TopKSAE.screen_in_bf16 (the fp32 result, faster)

    @property
    def provider(self) -> BundleProvider | None:
        """The registered provider that ``model`` names, or None (a model folder or hub id)."""
        return get_provider(self.model)


def resolve_model_path(model: str, *, full_pipeline: bool = False) -> Path:
    """A local diffusers folder for ``model`` (a folder or a hub id)."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "text_encoder").is_dir() or not (path / "tokenizer").is_dir():
            raise ItdError(f"{path} is not a diffusers pipeline folder: it needs text_encoder/ and tokenizer/ subfolders")
        return path
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        raise ItdError(f"model not found: {model!r} is neither a local folder nor a hub id like 'CompVis/stable-diffusion-v1-4'")
    patterns = None if full_pipeline else ["model_index.json", "text_encoder/*", "tokenizer/*"]
    return hub_snapshot(model, what="model", allow_patterns=patterns,
                        local_hint="e.g. --model /path/to/stable-diffusion-v1-4, a diffusers folder with text_encoder/ and tokenizer/")


def _load_text_encoder(folder: Path):
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel

    try:
        config = AutoConfig.from_pretrained(folder / "text_encoder")
        model_class = CLIPTextModel if config.model_type.startswith("clip") else AutoModel
        text_encoder = model_class.from_pretrained(folder / "text_encoder")
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    except (OSError, ValueError) as error:
        raise ItdError(f"could not load the text encoder from {folder}: {error}") from None
    return text_encoder, tokenizer


def load_adapter(spec: BundleSpec) -> tuple[TextEncoderAdapter, Path | None]:
    """The text encoder, tokenizer and hooked layer of a bundle (no SAE: enough to train one)."""
    provider = spec.provider
    if provider is not None:
        text_encoder, tokenizer = provider.load_text_encoder()
        layer, model_path = spec.layer or provider.hook_layer, None
    else:
        model_path = resolve_model_path(spec.model)
        text_encoder, tokenizer = _load_text_encoder(model_path)
        layer = spec.layer or PAPER_CLIP_LAYER
    adapter = TextEncoderAdapter(text_encoder, tokenizer, layer).to(device=spec.device, dtype=parse_dtype(spec.dtype))
    return adapter, model_path


def sae_location(sae: str, subfolder: str | None = None) -> Path:
    """A local SAE folder for a reference: a provider's name (its own SAE), a folder, or a hub repo (+ subfolder)."""
    provider = get_provider(sae)
    if provider is not None:
        return provider.sae_folder()
    from itd_core.sae_formats import resolve_sae_path

    return resolve_sae_path(sae, subfolder)


class ModelBundle:
    """Text encoder + hooked layer + SAE (+ the pipeline on demand)."""

    def __init__(self, spec: BundleSpec, adapter: TextEncoderAdapter, sae: TopKSAE, model_path: Path | None, sae_path: Path, sae_format: str):
        if sae.d_model != adapter.d_model:
            raise ItdError(f"SAE width {sae.d_model} does not match the width of layer {adapter.layer_name} ({adapter.d_model})")
        self.spec = spec
        self.adapter = adapter
        self.sae = sae
        self.model_path = model_path
        self.sae_path = sae_path
        self.sae_format = sae_format
        self.provider = spec.provider
        self.world = self.provider.world if self.provider else WorldKnowledge()

    @classmethod
    def load(cls, spec: BundleSpec | None = None, **overrides) -> "ModelBundle":
        from itd_core.sae_formats import detect_format, load_sae

        spec = (spec or BundleSpec()).model_copy(update=overrides)
        if spec.provider is None and spec.sae is None:
            raise ItdError("an SAE is needed for a model other than the demo: give --sae FOLDER (or a hub repo with --sae-subfolder)")
        adapter, model_path = load_adapter(spec)
        sae_path = sae_location(spec.sae or spec.model, spec.sae_subfolder)
        sae_format = detect_format(sae_path) if spec.sae_format == "auto" else spec.sae_format
        sae = load_sae(sae_path, format=sae_format, dtype=parse_dtype(spec.dtype), device=spec.device)
        if spec.bf16_screen:
            if sae.W_enc.dtype != parse_dtype("fp32"):
                raise ItdError(f"--bf16-screen serves an fp32 SAE; with --dtype {spec.dtype} the SAE is already in {sae.W_enc.dtype}")
            sae.screen_in_bf16()
        return cls(spec, adapter, sae, model_path, sae_path, sae_format)

    @property
    def fingerprint(self) -> str:
        from itd_core.sae_formats import weights_fingerprint

        if self.sae.fingerprint is None:
            self.sae.fingerprint = weights_fingerprint(self.sae)
        return self.sae.fingerprint

    @property
    def model_id(self) -> str:
        return self.spec.model

    @property
    def title(self) -> str:
        """How to name this bundle to a person: the provider's title, else the model."""
        return self.provider.title if self.provider else self.spec.model

    def sae_ref(self) -> SAERef:
        return SAERef(
            format=self.sae_format, path=self.spec.sae or (self.spec.model if self.provider else str(self.sae_path)), subfolder=self.spec.sae_subfolder,
            sha256=self.fingerprint, n_latents=self.sae.n_latents, d_model=self.sae.d_model, k=self.sae.k,
        )

    def new_erasure_config(self, method: str = "recommended") -> ErasureConfig:
        """An empty erasure config for this bundle, with the method switches of a preset (``paper`` or ``recommended``)."""
        if method not in METHOD_PRESETS:
            raise ItdError(f"unknown method {method!r}; use one of {', '.join(METHOD_PRESETS)}")
        return ErasureConfig(model=ModelRef(id_or_path=self.model_id, layer=self.adapter.layer_name), sae=self.sae_ref(), **METHOD_PRESETS[method])

    def check_config(self, config: ErasureConfig) -> None:
        """Raise if ``config`` was made for another layer or SAE."""
        if config.model.layer != self.adapter.layer_name:
            raise ItdError(f"the erasure config hooks layer {config.model.layer!r}, this bundle hooks {self.adapter.layer_name!r}")
        config.check_sae(self.sae)  # computes the SAE's fingerprint when it has none, and compares it

    @cached_property
    def pipeline(self):
        """The diffusers pipeline around this bundle's text encoder (loaded on first use)."""
        dtype = parse_dtype(self.spec.dtype)
        if self.provider is not None:
            pipe = self.provider.load_pipeline(self.adapter.text_encoder, self.adapter.tokenizer)
        else:
            from diffusers import DiffusionPipeline

            folder = resolve_model_path(self.spec.model, full_pipeline=True)
            try:
                pipe = DiffusionPipeline.from_pretrained(
                    folder, text_encoder=self.adapter.text_encoder, tokenizer=self.adapter.tokenizer,
                    safety_checker=None, requires_safety_checker=False, dtype=dtype,
                )
            except (OSError, ValueError) as error:
                raise ItdError(f"could not load the diffusers pipeline from {folder}: {error}") from None
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.spec.device)

    def describe(self) -> dict:
        return {
            "model": self.model_id, "model_path": str(self.model_path) if self.model_path else None,
            "layer": self.adapter.layer_name, "encoder_family": self.adapter.family, "d_model": self.adapter.d_model,
            "max_length": self.adapter.max_length, "sae_path": str(self.sae_path), "sae_format": self.sae_format,
            "n_latents": self.sae.n_latents, "k": self.sae.k, "fingerprint": self.fingerprint,
            "device": self.spec.device, "dtype": str(parse_dtype(self.spec.dtype)).removeprefix("torch."),
        }


def bundle_spec_for_config(config: ErasureConfig, **overrides) -> BundleSpec:
    """The bundle an erasure config was made for (model, layer and SAE as the config names them)."""
    return BundleSpec(model=config.model.id_or_path, sae=config.sae.path, sae_subfolder=config.sae.subfolder,
                      sae_format=config.sae.format, layer=config.model.layer, **overrides)


def load_bundle(spec: BundleSpec | str | None = None, **overrides) -> ModelBundle:
    if isinstance(spec, str):
        spec = BundleSpec(model=spec)
    return ModelBundle.load(spec, **overrides)
