"""Derive the Stable Diffusion 1.x CLIP tokenizer files from OpenAI CLIP's BPE table.

Stable Diffusion 1.x conditions on the text encoder of ``openai/clip-vit-large-patch14``, whose
tokenizer is OpenAI CLIP's byte-level BPE. OpenAI ships that BPE as ``bpe_simple_vocab_16e6.txt.gz``
(MIT licence); a byte-identical copy travels inside the ``open_clip_torch`` wheel on PyPI. This script
turns it into the ``vocab.json`` / ``merges.txt`` pair that ``transformers.CLIPTokenizer`` reads, and
writes the SD 1.x tokenizer settings beside them, so the tokenizer loads with no hub access.

The derivation is OpenAI CLIP's ``SimpleTokenizer.__init__`` (clip/simple_tokenizer.py), verbatim:

* ``merges`` = lines ``[1 : 49152-256-2+1]`` of the gz (line 0 is a header), i.e. 48,894 merges;
* vocab, in id order = the 256 byte symbols of ``bytes_to_unicode()``, the same 256 with ``</w>``,
  one token per merge (the merge with its space removed), then ``<|startoftext|>`` (49406) and
  ``<|endoftext|>`` (49407): 49,408 tokens;
* ``merges.txt`` = ``#version: 0.2`` followed by the merge lines.

Usage (re-runnable; output is deterministic)::

    pip download --no-deps open_clip_torch -d /tmp/oc
    unzip -o /tmp/oc/open_clip_torch-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz -d /tmp/oc
    python itd_core/assets/clip_tokenizer/derive.py /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz

Standard library only, so it runs without the project's dependencies.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# sha256 of the gz this folder was derived from (open_clip_torch 3.3.0's copy; see README.md).
EXPECTED_GZ_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
N_MERGES = 49152 - 256 - 2  # 48,894, as in OpenAI CLIP


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's (and GPT-2's) reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def derive_vocab_and_merges(gz_path: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    if len(merges) != N_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{gz_path} does not look like OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz")
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [t + "</w>" for t in tokens]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate tokens in the derived vocabulary")
    return vocab, merges


def _special(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def special_tokens_map() -> dict:
    # SD 1.x (and openai/clip-vit-large-patch14): unk = eos, and padding uses eos as well.
    return {"bos_token": _special(BOS), "eos_token": _special(EOS), "pad_token": EOS, "unk_token": _special(EOS)}


def tokenizer_config(vocab: dict[str, int]) -> dict:
    return {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(vocab[BOS]): {**_special(BOS), "special": True},
            str(vocab[EOS]): {**_special(EOS), "special": True},
        },
        "bos_token": BOS,
        "do_lower_case": True,
        "eos_token": EOS,
        "errors": "replace",
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": EOS,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS,
    }


def _dump(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gz", type=Path, help="path to bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    ap.add_argument("--allow-other-gz", action="store_true", help="do not insist on the recorded sha256")
    args = ap.parse_args(argv)

    digest = hashlib.sha256(args.gz.read_bytes()).hexdigest()
    if digest != EXPECTED_GZ_SHA256 and not args.allow_other_gz:
        raise SystemExit(f"sha256 {digest} != recorded {EXPECTED_GZ_SHA256} (pass --allow-other-gz to go on)")

    vocab, merges = derive_vocab_and_merges(args.gz)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    _dump(special_tokens_map(), out / "special_tokens_map.json")
    _dump(tokenizer_config(vocab), out / "tokenizer_config.json")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out} (gz sha256 {digest})")


if __name__ == "__main__":
    main()
