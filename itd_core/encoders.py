"""Text-encoder adapter: tokenize as the diffusion pipeline does, and read or rewrite one layer's output.

Two families are supported: CLIP text models (Stable Diffusion 1.x/2.x) and BERT-family
encoders (the ShapesWorld demo's all-MiniLM-L6-v2). Tokenization always pads to the
tokenizer's ``model_max_length`` exactly like ``StableDiffusionPipeline.encode_prompt``,
so activations captured here are the ones the pipeline's hook sees.

ItD positions: every position the pipeline hands to the UNet except position 0 (BOS/CLS).
Concept selection, the classifier score and the deactivation all use these positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from itd_core.errors import ItdError
from itd_core.prompts import check_prompts

# Layer lists per family, as transformers 5 names them (CLIPTextModel has no `text_model` level any more).
_LAYER_LISTS = {"clip": "encoder.layers", "bert": "encoder.layer"}
_PAPER_PREFIX = "text_model."

DTYPES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype as given, or one named like ``"bf16"``, ``"float16"`` or ``"torch.float32"`` (any case)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if not isinstance(dtype, str):
        raise ItdError(f"dtype must be a torch dtype or a string, got {type(dtype).__name__}")
    try:
        return DTYPES[dtype.strip().lower().removeprefix("torch.")]
    except KeyError:
        raise ItdError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(DTYPES))}") from None


@dataclass
class TokenizedPrompts:
    """A batch of prompts tokenized the pipeline's way. shape: tensors ``[batch, max_length]``."""

    prompts: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    special_mask: torch.Tensor  # True on BOS/CLS, EOS/SEP and padding
    prompt_mask: torch.Tensor  # True on the prompt's own tokens, BOS..EOS; what score_positions="prompt" averages over
    tokens: list[list[str]]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.prompts)

    def content_lengths(self) -> list[int]:
        """Number of non-special tokens per prompt."""
        return (~self.special_mask).sum(dim=1).tolist()


def end_token_id(tokenizer) -> int | None:
    """The token that closes a prompt: EOS (CLIP), else SEP (BERT-like encoders)."""
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id


def prompt_token_mask(input_ids: torch.Tensor, end_id: int | None) -> torch.Tensor:
    """True up to and including each row's first end token, False on the padding after it.

    Derived from the ids alone, so the erasure hook (which sees only what the pipeline passes the
    encoder: SD 1.x passes no attention mask and pads with EOS) and calibration agree exactly.
    shape: ``[B, T] -> [B, T]`` bool"""
    if end_id is None:
        return torch.ones_like(input_ids, dtype=torch.bool)
    ends_before = torch.cumsum(input_ids == end_id, dim=1) - (input_ids == end_id).long()
    return ends_before == 0


class _StopForward(Exception):
    """Raised by the capture hook so the encoder stops right after the hooked layer."""


def encoder_family(text_encoder: nn.Module) -> str:
    model_type = getattr(getattr(text_encoder, "config", None), "model_type", "")
    if model_type.startswith("clip"):
        return "clip"
    if model_type in {"bert", "roberta", "distilbert", "xlm-roberta", "mpnet", "electra"} or hasattr(text_encoder, "encoder") and hasattr(text_encoder.encoder, "layer"):
        return "bert"
    raise ItdError(f"unsupported text encoder {type(text_encoder).__name__} (model_type={model_type!r}); CLIP and BERT-family encoders are supported")


def resolve_layer(text_encoder: nn.Module, layer: str | int) -> tuple[str, nn.Module]:
    """Find the hooked layer. Accepts an index (``8``), a path (``encoder.layers.8``) or the
    paper's CLIP name (``text_model.encoder.layers.8``). Returns the canonical path and the module."""
    family = encoder_family(text_encoder)
    layer_list = _LAYER_LISTS[family]
    n_layers = len(text_encoder.get_submodule(layer_list))
    if isinstance(layer, int) or str(layer).lstrip("-").isdigit():
        index = int(layer)
        if not -n_layers <= index < n_layers:
            raise ItdError(f"layer {index} out of range: this {family} encoder has {n_layers} layers (0..{n_layers - 1})")
        path = f"{layer_list}.{index % n_layers}"
    else:
        path = str(layer)
        if path.startswith(_PAPER_PREFIX):
            path = path[len(_PAPER_PREFIX):]
    try:
        module = text_encoder.get_submodule(path)
    except AttributeError:
        raise ItdError(f"no layer {layer!r} in this {family} encoder; use an index 0..{n_layers - 1} or a path like '{layer_list}.{n_layers // 2}'") from None
    if not path.startswith(layer_list + "."):
        raise ItdError(f"{layer!r} is not one of the encoder's transformer layers ({layer_list}.0..{n_layers - 1})")
    return path, module


def layer_output_tensor(output) -> torch.Tensor:
    """A transformers-5 layer returns a plain tensor; older versions return a tuple."""
    return output[0] if isinstance(output, tuple) else output


def replace_layer_output(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class TextEncoderAdapter:
    """One hooked layer of a text encoder, with the pipeline's tokenization."""

    def __init__(self, text_encoder: nn.Module, tokenizer, layer: str | int):
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.family = encoder_family(text_encoder)
        self.layer_name, self.layer_module = resolve_layer(text_encoder, layer)
        self.layer_index = int(self.layer_name.rsplit(".", 1)[1])

    @property
    def d_model(self) -> int:
        return self.text_encoder.config.hidden_size

    @property
    def max_length(self) -> int:
        return self.tokenizer.model_max_length

    @property
    def uses_attention_mask(self) -> bool:
        """Whether the diffusers pipeline passes the attention mask (it does iff the config says so)."""
        return bool(getattr(self.text_encoder.config, "use_attention_mask", False))

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.text_encoder.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "TextEncoderAdapter":
        """Cast the weights (never autocast: on CPU it is up to 60x slower at batch 1)."""
        self.text_encoder.to(device=device, dtype=parse_dtype(dtype) if dtype is not None else None)
        return self

    def tokenize(self, prompts: Sequence[str]) -> TokenizedPrompts:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise ItdError("no prompts given")
        prompts = check_prompts(list(prompts))
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_length, truncation=True,
            return_tensors="pt", return_special_tokens_mask=True,
        )
        full_lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False)["input_ids"]]
        special = batch["special_tokens_mask"].bool() | (batch["attention_mask"] == 0)
        return TokenizedPrompts(
            prompts=prompts,
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            special_mask=special,
            prompt_mask=prompt_token_mask(batch["input_ids"], end_token_id(self.tokenizer)),
            tokens=[self.tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"].tolist()],
            truncated=[n > self.max_length for n in full_lengths],
        )

    def _forward(self, batch: TokenizedPrompts) -> None:
        kwargs = {"input_ids": batch.input_ids.to(self.device)}
        if self.uses_attention_mask:
            kwargs["attention_mask"] = batch.attention_mask.to(self.device)
        self.text_encoder(**kwargs)

    @contextmanager
    def hooked(self, hook: Callable[[nn.Module, tuple, object], object]) -> Iterator[None]:
        """Temporarily register a forward hook on the layer (a hook may return a replacement output)."""
        handle = self.layer_module.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    @torch.no_grad()
    def capture(self, batch: TokenizedPrompts | Sequence[str]) -> torch.Tensor:
        """The layer's output for one batch, stopping the forward there. shape: ``[batch, max_length, d_model]``"""
        if not isinstance(batch, TokenizedPrompts):
            batch = self.tokenize(batch)
        captured: list[torch.Tensor] = []

        def grab(module, inputs, output):
            captured.append(layer_output_tensor(output))
            raise _StopForward

        with self.hooked(grab):
            try:
                self._forward(batch)
            except _StopForward:
                pass
        activations = captured[0]
        check_finite(activations, batch.prompts)
        return activations

    def iter_capture(self, prompts: Sequence[str], batch_size: int = 32) -> Iterator[tuple[TokenizedPrompts, torch.Tensor]]:
        """Batched capture over many prompts."""
        for start in range(0, len(prompts), batch_size):
            batch = self.tokenize(prompts[start:start + batch_size])
            yield batch, self.capture(batch)


class CaptureMemo:
    """A :class:`TextEncoderAdapter` that remembers each prompt's captured activations, for work that scores the
    same prompts many times (the retain side of one selection after another: ``shapesworld.redteam_benchmark``).

    Every prompt is padded to ``max_length``, so its activations do not depend on the batch it was captured in
    (beyond the last bits of a batched matmul's rounding). At most ``max_prompts`` are kept (the least recently used
    go first); everything but ``iter_capture`` is the wrapped adapter's."""

    def __init__(self, adapter: TextEncoderAdapter, max_prompts: int = 5_000):
        self.adapter = adapter
        self.max_prompts = max_prompts
        self._rows: dict[str, torch.Tensor] = {}

    def __getattr__(self, name: str):
        return getattr(self.adapter, name)

    def __len__(self) -> int:
        return len(self._rows)

    def iter_capture(self, prompts: Sequence[str], batch_size: int = 32) -> Iterator[tuple[TokenizedPrompts, torch.Tensor]]:
        prompts = list(prompts)
        wanted = dict.fromkeys(prompts)
        for prompt in wanted:  # most recently used last
            if prompt in self._rows:
                self._rows[prompt] = self._rows.pop(prompt)
        missing = [p for p in wanted if p not in self._rows]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            for prompt, row in zip(chunk, self.adapter.capture(chunk)):
                self._rows[prompt] = row.clone()
        stale = [p for p in self._rows if p not in wanted]
        for prompt in stale[:max(0, len(self._rows) - self.max_prompts)]:
            del self._rows[prompt]
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            yield self.adapter.tokenize(chunk), torch.stack([self._rows[p] for p in chunk])


def check_finite(activations: torch.Tensor, prompts: Sequence[str]) -> None:
    bad = (~torch.isfinite(activations)).flatten(1).any(dim=1)
    if bad.any():
        names = [repr(prompts[i])[:60] for i in bad.nonzero().flatten().tolist()]
        raise ItdError(f"the text encoder produced NaN/inf activations for {len(names)} prompt(s): {', '.join(names)}; "
                       "try fp32 weights (fp16 overflows in some CLIP layers)")
