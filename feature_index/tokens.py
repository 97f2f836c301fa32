"""Token strings for people: display pieces, search keys, and the word a token belongs to.

Two tokenizer families matter here: CLIP's BPE marks the *end* of a word with ``</w>``
(``"port", "rait</w>"``), BERT's WordPiece marks a *continuation* with ``##`` (``"pic", "##asso"``).
Special tokens (``<|startoftext|>``, ``<|endoftext|>``, ``[CLS]``, ``[SEP]``, ``[PAD]``) stand alone.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

_SPECIAL = re.compile(r"^(<\|.*\|>|\[[A-Z]+\]|<[a-z]+>)$")


def is_special(token: str, specials: Collection[str] = ()) -> bool:
    return token in specials or bool(_SPECIAL.match(token))


def normalize_token(token: str) -> str:
    """Search key of a token: lower case, without BPE/WordPiece markers. ``"Picasso</w>" -> "picasso"``"""
    if _SPECIAL.match(token):
        return token.lower()
    text = token.removesuffix("</w>").removeprefix("##").replace("\u0120", " ").replace("\u2581", " ")
    return text.strip().lower()


def word_of_tokens(tokens: Sequence[str], family: str) -> list[str]:
    """For each token, the normalised whole word it is part of. ``["a</w>", "pic", "asso</w>"] -> ["a", "picasso", "picasso"]``"""
    words: list[str] = [""] * len(tokens)
    groups: list[list[int]] = []
    open_word = False  # CLIP: the current group still waits for its </w>
    for i, token in enumerate(tokens):
        if is_special(token):
            groups.append([i])
            open_word = False
        elif family == "clip":
            if open_word:
                groups[-1].append(i)
            else:
                groups.append([i])
            open_word = not token.endswith("</w>")
        else:
            if token.startswith("##") and groups and not is_special(tokens[groups[-1][-1]]):
                groups[-1].append(i)
            else:
                groups.append([i])
    for group in groups:
        word = "".join(normalize_token(tokens[i]) for i in group)
        for i in group:
            words[i] = word
    return words


def display_pieces(tokens: Sequence[str], family: str, specials: Collection[str] = ()) -> list[str]:
    """Tokens as text pieces that concatenate to readable text (a leading space starts a word)."""
    pieces = []
    word_ended = True
    for i, token in enumerate(tokens):
        if is_special(token, specials):
            pieces.append(("" if i == 0 else " ") + token)
            word_ended = True
        elif family == "clip":
            text = token.removesuffix("</w>")
            pieces.append((" " if word_ended and i else "") + text)
            word_ended = token.endswith("</w>")
        elif token.startswith("##"):
            pieces.append(token[2:])
        else:
            text = token.replace("\u0120", " ").replace("\u2581", " ")
            pieces.append(text if text.startswith(" ") or not i else " " + text)
    return pieces
