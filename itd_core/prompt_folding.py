"""Prompt folding: one spelling for text that only looks different, so a disguised concept still triggers.

``fold_prompt(text)``:

1. Unicode NFKC (fullwidth ``Ｍｉｒａ`` -> ``Mira``, ligatures, compatibility forms);
2. drop invisible format characters (zero-width space and joiners, soft hyphen, BOM: category Cf);
3. strip accents (``Castéllane`` -> ``Castellane``), then map confusable letters of other scripts to
   their Latin look-alikes (Cyrillic ``а е о р с``, Greek ``ο α ν``, ...);
4. read leetspeak inside words that mix letters with digits or symbols (``M1ra C4stellane`` ->
   ``Mira Castellane``); a plain number (``2``, ``1080p``) is left alone.

``fold_names(text, names)`` then writes near-miss spellings of the erased concepts' names as the name:
a name split by spaces or hyphens (``Mira Cas-tellane``), or, for names of at least
:data:`MIN_LETTERS_FOR_EDIT` letters, one edit away (a dropped, added, changed or swapped letter:
``Mira Castlelane``). Words two or more edits away ("Marvin" for "Marvaine") are left alone.
With ``complete_parts`` (``prompt_folding: "fold_parts"``), a lone capitalised first name or surname
("Castellane's yearbook photo") is also completed to the full name, unless a capitalised word stands
next to it ("Tessa Castellane" is someone else). A surname that is also a common word, capitalised at
the start of a prompt ("Swift birds in flight"), is completed too; the classifier then decides.

Folding (``fold_concept_prompt``: both steps) only informs the classifier: an erasure config with ``prompt_folding: "fold"`` scores a prompt
both as written and folded, and when only the folded form triggers a concept, the folded prompt is the
one that gets encoded and edited. A prompt that triggers nothing passes through as written, bit-exactly.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

PromptFolding = Literal["none", "fold", "fold_parts"]

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
    changed = True
    while changed:  # a run of symbols is read from the letters inwards ("00AA" -> "ooAA"), so folding twice changes nothing
        changed = False
        for i, c in enumerate(chars):
            # Only characters that touch a letter: "m1ra" -> "mira", while "1080p" has a single letter and was kept above.
            touches_letter = (i > 0 and chars[i - 1].isalpha()) or (i + 1 < len(chars) and chars[i + 1].isalpha())
            if c in _LEET and touches_letter:
                chars[i], changed = _LEET[c], True
    return "".join(chars)


def fold_prompt(text: str) -> str:
    """The folded spelling of ``text`` (see the module docstring); ``fold_prompt(fold_prompt(t)) == fold_prompt(t)``."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    # Accents first: a letter with an accent ("ἠ") is a confusable ("η") only once the accent is gone.
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    text = text.translate(_CONFUSABLES)
    text = _WORD.sub(_unleet, text)
    return unicodedata.normalize("NFC", text)


MIN_LETTERS_FOR_EDIT = 6  # a shorter name one edit away is too often another word ("Velt" / "felt")
_SPAN = re.compile(r"\S+")
_CORE = re.compile(r"^(\W*)(.*?)((?:['’]s)?\W*)$")  # leading punctuation, the word, a possessive and trailing punctuation


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) that turn ``a`` into ``b``: optimal string alignment."""
    rows = [list(range(len(b) + 1))]
    for i, char_a in enumerate(a, 1):
        row = [i]
        for j, char_b in enumerate(b, 1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows = [rows[-1], row]
    return rows[-1][-1]


def _letters(word: str) -> str | None:
    """A word's letters, casefolded, without inner hyphens and dots; None for a word with other non-letters."""
    joined = word.replace("-", "").replace(".", "")
    return joined.casefold() if joined.isalpha() else None


def fold_names(text: str, names: Sequence[str], *, complete_parts: bool = False) -> str:
    """``text`` with near-miss spellings of ``names`` written as the name (see the module docstring)."""
    keyed = [(name, key) for name in names if (key := _letters(name.replace(" ", "")))]
    while (folded := _fold_one(text, keyed, complete_parts)) != text:
        text = folded
    return text


def _fold_one(text: str, keyed: Sequence[tuple[str, str]], complete_parts: bool) -> str:
    """``text`` with its first near-miss spelling of a name folded, or ``text`` itself when it has none. ``keyed``: the names
    with their letters (:func:`_letters`). A spelling that is exactly one of the names is never folded into another, so two names one edit apart do not flip-flop."""
    spans = [(m.start(), m.end(), *_CORE.match(m.group()).groups()) for m in _SPAN.finditer(text)]
    keys = {key for _, key in keyed}
    for name, key in keyed:
        allowed = 1 if len(key) >= MIN_LETTERS_FOR_EDIT else 0
        for i in range(len(spans)):
            joined = ""
            for j in range(i, len(spans)):
                start, end, lead, core, tail = spans[j]
                letters = _letters(core)
                if letters is None or (j > i and spans[j - 1][4]):  # a window does not run across punctuation
                    break
                joined += letters
                if len(joined) > len(key) + allowed:
                    break
                written = text[spans[i][0] + len(spans[i][2]):end - len(tail)]
                if written != name and (joined == key or joined not in keys) and edit_distance(joined, key) <= allowed:
                    return text[:spans[i][0] + len(spans[i][2])] + name + text[end - len(tail):]
        parts = name.split() if complete_parts else []
        lowered = {part.casefold() for part in parts}
        for i, (start, end, lead, core, tail) in enumerate(spans if len(parts) > 1 else []):
            beside = [spans[k][3] for k in (i - 1, i + 1) if 0 <= k < len(spans)]
            if core[:1].isupper() and core.casefold() in lowered and not any(word[:1].isupper() for word in beside):
                return text[:start + len(lead)] + name + text[end - len(tail):]
    return text


def fold_concept_prompt(text: str, names: Sequence[str], folding: PromptFolding = "fold") -> str:
    """The spelling an erasure config with ``prompt_folding`` ``folding`` also scores: :func:`fold_prompt`, then
    :func:`fold_names` (``"none"``: ``text`` itself)."""
    if folding == "none":
        return text
    return fold_names(fold_prompt(text), names, complete_parts=folding == "fold_parts")
