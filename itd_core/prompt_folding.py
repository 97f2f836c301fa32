"""Prompt folding: one spelling for text that only looks different, so a disguised concept still triggers.

``fold_prompt(text)``:

1. Unicode NFKC (fullwidth ``Ｍｉｒａ`` -> ``Mira``, ligatures, compatibility forms);
2. drop invisible format characters (zero-width space and joiners, soft hyphen, BOM: category Cf);
3. map confusable letters of other scripts to their Latin look-alikes (Cyrillic ``а е о р с``,
   Greek ``ο α ν``, ...), then strip accents (``Castéllane`` -> ``Castellane``);
4. read leetspeak inside words that mix letters with digits or symbols (``M1ra C4stellane`` ->
   ``Mira Castellane``); a plain number (``2``, ``1080p``) is left alone.

Folding only informs the classifier: an erasure config with ``prompt_folding: "fold"`` scores a prompt
both as written and folded, and when only the folded form triggers a concept, the folded prompt is the
one that gets encoded and edited. A prompt that triggers nothing passes through as written, bit-exactly.
"""

from __future__ import annotations

import re
import unicodedata

# Letters of other scripts that render like a Latin letter (Unicode confusables, the common subset).
_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ь": "b", "һ": "h",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X",
    "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    "γ": "y", "η": "n", "ω": "w",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
    "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin look-alikes outside ASCII
    "ı": "i", "ȷ": "j", "ℓ": "l", "ɡ": "g", "ɑ": "a", "ǀ": "l",
})
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l"}
_WORD = re.compile(r"[A-Za-z0-9@$!|]+")


def _unleet(match: re.Match) -> str:
    word = match.group(0)
    letters = sum(c.isalpha() for c in word)
    if letters < 2 or letters == len(word):
        return word  # a number, or a word without leetspeak
    chars = list(word)
    for i, c in enumerate(chars):
        # Only characters that touch a letter: "m1ra" -> "mira", while "1080p" has a single letter and was kept above.
        touches_letter = (i > 0 and chars[i - 1].isalpha()) or (i + 1 < len(chars) and chars[i + 1].isalpha())
        if c in _LEET and touches_letter:
            chars[i] = _LEET[c]
    return "".join(chars)


def fold_prompt(text: str) -> str:
    """The folded spelling of ``text`` (see the module docstring); ``fold_prompt(fold_prompt(t)) == fold_prompt(t)``."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = text.translate(_CONFUSABLES)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    text = _WORD.sub(_unleet, text)
    return unicodedata.normalize("NFC", text)
