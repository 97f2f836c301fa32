"""The shipped SD 1.x CLIP tokenizer reproduces openai/clip-vit-large-patch14's token ids, offline."""

from __future__ import annotations

import json

import pytest

from itd_core.assets import CLIP_TOKENIZER_DIR, clip_tokenizer

BOS, EOS = 49406, 49407

# Ids of CLIP's BPE (OpenAI SimpleTokenizer == HF CLIPTokenizer on these inputs).
KNOWN_IDS = {
    "a photo of a cat": [BOS, 320, 1125, 539, 320, 2368, EOS],
    "a photo of a dog": [BOS, 320, 1125, 539, 320, 1929, EOS],
    "A Photo of a TREE!": [BOS, 320, 1125, 539, 320, 2677, 256, EOS],
    "  HELLO   World  ": [BOS, 3306, 1002, EOS],
    "hello, world! how are you?": [BOS, 3306, 267, 1002, 256, 829, 631, 592, 286, EOS],
    "it's a cat's toy, running   fast": [BOS, 585, 568, 320, 2368, 568, 5988, 267, 2761, 1953, EOS],
    "2 dogs and 3 cats": [BOS, 273, 3255, 537, 274, 3989, EOS],
    "tom cruise": [BOS, 2435, 6764, EOS],
    "an astronaut riding a horse on mars": [BOS, 550, 18376, 6765, 320, 4558, 525, 7496, EOS],
    "": [BOS, EOS],
    # byte-level BPE: an emoji and non-ASCII text are never unknown
    "😀": [BOS, 7334, EOS],
    "café": [BOS, 15304, EOS],
    "cafe\u0301": [BOS, 15304, EOS],  # NFC-normalised first, like ftfy in OpenAI's tokenizer
    "Ünïcödé 東京": [BOS, 6522, 77, 35689, 66, 7255, 67, 4166, 48338, 21078, 361, EOS],
}


@pytest.fixture(scope="module")
def tok():
    return clip_tokenizer()


@pytest.mark.parametrize("text", list(KNOWN_IDS))
def test_known_ids(tok, text):
    assert tok(text).input_ids == KNOWN_IDS[text]


def test_tokens_of_a_prompt(tok):
    ids = tok("a photo of a cat").input_ids
    assert tok.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>"
    ]


def test_special_tokens_and_sizes(tok):
    assert type(tok).__name__ in {"CLIPTokenizer", "CLIPTokenizerFast"}
    assert (tok.bos_token, tok.bos_token_id) == ("<|startoftext|>", BOS)
    assert (tok.eos_token, tok.eos_token_id) == ("<|endoftext|>", EOS)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", EOS)  # SD 1.x pads with eos
    assert tok.unk_token == "<|endoftext|>"
    assert tok.model_max_length == 77
    assert len(tok) == 49408
    assert tok.padding_side == "right"


def test_pad_to_max_length_gives_77_ids(tok):
    enc = tok(
        ["a photo of a cat", "tom cruise"], padding="max_length", max_length=tok.model_max_length, truncation=True
    )
    for ids, mask, n in zip(enc.input_ids, enc.attention_mask, (7, 4)):
        assert len(ids) == 77 and len(mask) == 77
        assert ids[0] == BOS and ids[n - 1] == EOS
        assert ids[n:] == [EOS] * (77 - n)
        assert mask == [1] * n + [0] * (77 - n)


def test_truncation_keeps_bos_and_eos(tok):
    ids = tok("cat " * 200, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and ids[0] == BOS and ids[-1] == EOS and ids[1:-1] == [2368] * 75


def test_files_are_the_derived_ones():
    vocab = json.loads((CLIP_TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert sorted(vocab.values()) == list(range(49408))
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["<|startoftext|>"] == BOS
    merges = (CLIP_TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894
    assert merges[1] == "i n" and vocab["in"] == 512  # first merge gets the first id after the bytes
    for name in ("tokenizer_config.json", "special_tokens_map.json", "LICENSE", "README.md", "derive.py"):
        assert (CLIP_TOKENIZER_DIR / name).is_file()


def test_derive_script(tmp_path):
    """derive.py's byte table matches the shipped ids, and it refuses a table that is not CLIP's."""
    import gzip
    import importlib.util

    spec = importlib.util.spec_from_file_location("derive", CLIP_TOKENIZER_DIR / "derive.py")
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    b2u = derive.bytes_to_unicode()
    assert len(b2u) == 256 and len(set(b2u.values())) == 256
    vocab = json.loads((CLIP_TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert [vocab[c] for c in b2u.values()] == list(range(256))
    # a table of the wrong size is refused
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"header\ni n\n"))
    with pytest.raises(ValueError):
        derive.derive_vocab_and_merges(bad)
