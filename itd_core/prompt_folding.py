"""Prompt folding: one spelling for text that only looks different, so a disguised concept still triggers.

``fold_prompt(text)``:

1. Unicode NFKC (fullwidth ``Ｍｉｒａ`` -> ``Mira``, ligatures, compatibility forms);
2. drop invisible format characters (zero-width space and joiners, soft hyphen, BOM: category Cf);
3. strip accents (``Castéllane`` -> ``Castellane``), then map confusable letters of other scripts to
   their Latin look-alikes (Cyrillic ``а е о р с``, Greek ``ο α ν``, ...);
4. read leetspeak inside words that mix letters with digits or symbols (``M1ra C4stellane`` ->
   ``Mira Castellane``); a plain number (``2``, ``1080p``) is left alone.

``fold_names(text, names)`` then writes near-miss spellings of the erased concepts' names as the name:
a name split by spaces or hyphens (``Mira Cas-tellane``); for names of at least :data:`MIN_LETTERS_FOR_EDIT`
letters, one edit away (a dropped, added, changed or swapped letter: ``Mira Castlelane``); for names of several
words, one edit in each word that keeps its first letter (``Slka Dumnore``; words under
:data:`MIN_LETTERS_FOR_WORD_EDIT` letters exactly) or a word without its vowels (``Mira Cstlln``, ``Slk Dnmr``); and a
name with a suffix that derives a style or likeness from it (``Varo Quennelesque`` -> ``Varo Quennel-esque``; ``-style``, ``-like``, ``-inspired``). Words further away
("Marvin" for "Marvaine", "Delka Dumnore") are left alone.

With ``complete_parts`` (``prompt_folding: "fold_parts"``), a lone first name or surname is also completed to
the full name:

* capitalised ("Castellane's yearbook photo", "Dr. Castellane"), unless a capitalised word other than a title stands
  next to it ("Tessa Castellane" is someone else). A surname that is also a common word, capitalised at the start of a
  prompt ("Swift birds in flight"), is completed too, and then triggers the concept (:func:`names_the_concept`);
* in lower case ("a portrait of castellane"), unless it is an ordinary English word (:func:`ordinary_words`: "a
  wren on a branch" stays a bird) or a neighbour looks like another name (capitalised, or not an English word:
  "tessa castellane"); a surname needs a function word before it, a first name one after it (or a verb in -ing or
  -ed: "mira smiling"), so "james jean" (the artist) is not completed to James Franco;
* written without its vowels, in :data:`MIN_LETTERS_FOR_WORD_EDIT` or more letters ("a portrait of Cstlln");
* beside the other part's initial: ``M. Castellane``, ``Mira C.`` (a lone "A" or "I" counts as an initial only
  with its full stop).

With ``fold_parts``, two rules on the folded text override the classifier for names of several words:
:func:`names_the_concept` (the full name is there, so the concept triggers whatever its score) and
:func:`names_someone_else` (only another person who shares a word of the name is there, "Yorwyn Castellane": the
concept does not trigger, whatever its score).

Folding (``fold_concept_prompt``: both steps) only informs the classifier: an erasure config with ``prompt_folding: "fold"`` scores a prompt
both as written and folded, and when only the folded form triggers a concept, the folded prompt is the
one that gets encoded and edited. A prompt that triggers nothing passes through as written, bit-exactly.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
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
MIN_LETTERS_FOR_WORD_EDIT = 4  # the per-word rule: one edit in a 3-letter word ("Ann" / "Ian") is another name
MIN_LETTERS_FOR_LONE_PART = 3  # "Ai" (Ai Weiwei) or the "K." of Brian K. Vaughan alone is no name
_SPAN = re.compile(r"\S+")
_CORE = re.compile(r"^(\W*)(.*?)((?:['’]s)?\W*)$")  # leading punctuation, the word, a possessive and trailing punctuation
# Suffixes that derive a likeness or style from a name ("Quennelesque", "Castellane-style"); a bare "esque" gets a hyphen
# when the name is written in.
_DERIVED_SUFFIXES = ("-inspired", "-esque", "-style", "-like", "esque")
_SUFFIX_WORDS = frozenset(suffix.strip("-") for suffix in _DERIVED_SUFFIXES)
# Words that cannot be a first name before a surname: a lower-case surname after one of them stands alone.
_FUNCTION_WORDS = frozenset("""
a an the this that these those my your his her its our their of in on at by for with without from to into onto about
after before behind beside between like near over under as and or but nor so than then is was are were be been being
has had have do does did not no very also just only even both each every some any all such what which who whom whose
featuring starring showing depicting called named""".split())
_TITLES = frozenset("mr mrs ms miss mx dr prof sir dame lady lord saint st madame mme mlle monsieur herr frau senor senora don "
                    "dona signor signora".split())
_NO_VOWELS = str.maketrans("", "", "aeiou")
_ORDINARY_WORDS = Path(__file__).parent / "assets" / "words" / "web2_lowercase.txt.gz"


@lru_cache(maxsize=1)
def ordinary_words() -> frozenset[str]:
    """Lower-case English words (Webster's Second International, ``assets/words/README.md``): a lower-case lone name part
    that is one of them ("wren", "quill") is read as the word, never completed to a name."""
    with gzip.open(_ORDINARY_WORDS, "rt", encoding="ascii") as lines:
        return frozenset(lines.read().split())


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


def within_one_edit(a: str, b: str) -> bool:
    """``edit_distance(a, b) <= 1`` in one pass: the folding asks this of every window of every prompt for every name."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) > len(b):
        return a[i + 1:] == b[i:]
    if len(a) < len(b):
        return a[i:] == b[i + 1:]
    return a[i + 1:] == b[i + 1:] or (a[i:i + 2] == b[i:i + 2][::-1] and a[i + 2:] == b[i + 2:])


def _without_vowels(word: str, part: str) -> bool:
    """Whether ``word`` (casefolded) is the name part ``part`` with its vowels dropped, a leading vowel kept or not ("cstlln",
    "ils", "ls"). A title is never one ("mr" is "Mira" without vowels)."""
    return word != part and word not in _TITLES and word in {part.translate(_NO_VOWELS), part[:1] + part[1:].translate(_NO_VOWELS)}


def _letters(word: str) -> str | None:
    """A word's letters, casefolded, without inner hyphens and dots; None for a word with other non-letters."""
    joined = word.replace("-", "").replace(".", "")
    return joined.casefold() if joined.isalpha() else None


@dataclass(frozen=True)
class _Span:
    """A whitespace-separated piece of the text: ``lead`` punctuation, the ``word``, a derived ``suffix`` ("-style") and ``tail``
    punctuation (a possessive included). ``word_start``/``word_end``: where the word is in the text."""

    word: str
    lead: str
    suffix: str
    tail: str
    word_start: int
    word_end: int

    @classmethod
    def of(cls, match: re.Match) -> "_Span":
        lead, core, tail = _CORE.match(match.group()).groups()
        word, suffix = core, ""
        for derived in _DERIVED_SUFFIXES:
            if core.casefold().endswith(derived) and len(core) - len(derived) >= 3:
                word, suffix = core[:-len(derived)], core[-len(derived):]
                break
        start = match.start() + len(lead)
        return cls(word, lead, suffix, tail, start, start + len(word))

    @property
    def capitalised(self) -> bool:
        return self.word[:1].isupper()

    @property
    def initial(self) -> str | None:
        """The letter of an initial ("M.", "C"), casefolded; None for anything else. "A" and "I" count only with a full stop."""
        if len(self.word) == 1 and self.word.isalpha() and self.word.isupper() and not self.suffix:
            if self.tail.startswith(".") or self.word not in "AI":
                return self.word.casefold()
        return None


def _write_name(text: str, first: _Span, last: _Span, name: str) -> str:
    """``text`` with ``first.word`` to ``last.word`` replaced by ``name``; a bare derived suffix gets its hyphen."""
    suffix = last.suffix if last.suffix.startswith("-") or not last.suffix else "-" + last.suffix
    return text[:first.word_start] + name + suffix + text[last.word_end + len(last.suffix):]


def _lone_lower_case_part(spans: Sequence[_Span], i: int, is_first_name: bool) -> bool:
    """Whether the lower-case name part ``spans[i]`` stands alone: no neighbour (punctuation between ends the name) looks
    like a name (capitalised, or not an English word: "tessa castellane"), a surname has a function word before it, since
    any word could be a first name ("loa castellane": "loa" is an English word too), and a first name has one, a verb in
    -ing or -ed or a derived suffix as a word after it ("mira smiling", "odile style"), since any other word could be a
    surname ("james jean", the artist, is not James Franco)."""
    for k in (i - 1, i + 1):
        if not 0 <= k < len(spans) or (spans[min(i, k)].tail or spans[max(i, k)].lead):
            continue
        word = spans[k].word
        if word.casefold() in _TITLES:  # "dr castellane": a title marks a name part, it is not another part
            continue
        if word[:1].isupper() or (word.isalpha() and word.casefold() not in ordinary_words()):
            return False
        if k == i - 1 and not is_first_name and word.casefold() not in _FUNCTION_WORDS:
            return False
        if (k == i + 1 and is_first_name and word.casefold() not in _FUNCTION_WORDS | _SUFFIX_WORDS
                and not word.endswith(("ing", "ed"))):
            return False
    return True


def fold_names(text: str, names: Sequence[str], *, complete_parts: bool = False) -> str:
    """``text`` with near-miss spellings of ``names`` written as the name (see the module docstring)."""
    keyed = [(name, key, _words(name)[1]) for name in names if (key := _letters(name.replace(" ", "")))]
    while (folded := _fold_one(text, keyed, complete_parts)) != text:
        text = folded
    return text


def _each_word_near(words: Sequence[str], parts: Sequence[str]) -> bool:
    """The per-word rule for a name of several words: each written word starts like its part and is at most one edit from it
    (none for parts shorter than :data:`MIN_LETTERS_FOR_WORD_EDIT`), or is its part without vowels, so "Slka Dumnore" and
    "Mira Cstlln" are the names."""
    return len(words) == len(parts) > 1 and all(
        _without_vowels(word, part)
        or (word[:1] == part[:1] and (within_one_edit(word, part) if len(part) >= MIN_LETTERS_FOR_WORD_EDIT else word == part))
        for word, part in zip(words, parts))


def _fold_one(text: str, keyed: Sequence[tuple[str, str, list[str]]], complete_parts: bool) -> str:
    """``text`` with its first near-miss spelling of a name folded, or ``text`` itself when it has none. ``keyed``: the names
    with their letters (:func:`_letters`) and words. A spelling that is exactly one of the names is never folded into another,
    so two names one edit apart do not flip-flop."""
    spans = [_Span.of(m) for m in _SPAN.finditer(text)]
    letters = [_letters(span.word) for span in spans]
    keys = {key for _, key, _ in keyed}
    for name, key, parts in keyed:
        allowed = 1 if len(key) >= MIN_LETTERS_FOR_EDIT else 0
        for i in range(len(spans)):
            joined, words = "", []
            for j in range(i, len(spans)):
                if letters[j] is None or (j > i and (spans[j - 1].tail or spans[j - 1].suffix)):  # a window does not run across punctuation
                    break
                joined += letters[j]
                words.append(letters[j])
                if len(joined) > len(key) + len(parts):
                    break
                if text[spans[i].word_start:spans[j].word_end] == name or (joined != key and joined in keys):
                    continue
                if not ((within_one_edit(joined, key) if allowed else joined == key) or _each_word_near(words, parts)):
                    continue
                # A window that matches as well without its first word starts one word too early ("a Varo Quennel").
                if j == i or edit_distance(joined[len(words[0]):], key) > edit_distance(joined, key):
                    return _write_name(text, spans[i], spans[j], name)
        if complete_parts and len(parts) > 1:
            folded = _complete_part(text, spans, name, parts)
            if folded != text:
                return folded
    return text


def _complete_part(text: str, spans: Sequence[_Span], name: str, parts: Sequence[str]) -> str:
    """``text`` with its first lone part of ``name`` (also after a title, "Dr. Castellane", or without its vowels, "Cstlln"; or a
    part with the other part's initial: "M. Castellane", "Mira C.") completed to the name, or ``text`` itself. A word that
    is already inside the written name is never a lone part (the first word of "Lady Gaga" is a title)."""
    words = [span.word.casefold() for span in spans]
    in_name = {k for i in range(len(words) - len(parts) + 1) if words[i:i + len(parts)] == list(parts) for k in range(i, i + len(parts))}
    for i, span in enumerate(spans):
        if i in in_name:
            continue
        following = spans[i + 1] if i + 1 < len(spans) else None
        if following is not None and not span.suffix and not following.lead:
            if span.initial == parts[0][0] and following.word.casefold() == parts[-1] and not span.tail.strip("."):
                return _write_name(text, span, following, name)
            if span.word.casefold() == parts[0] and not span.tail and following.initial == parts[-1][0]:
                return _write_name(text, span, following, name)
        word = span.word.casefold()
        part = next((p for p in parts if word == p or (len(word) >= MIN_LETTERS_FOR_WORD_EDIT and _without_vowels(word, p))), None)
        if part is None or len(word) < MIN_LETTERS_FOR_LONE_PART:
            continue
        if span.capitalised:
            lone = not any(spans[k].word[:1].isupper() and spans[k].word.casefold() not in _TITLES
                           for k in (i - 1, i + 1) if 0 <= k < len(spans))
        else:
            lone = (span.word.islower() and span.word not in ordinary_words()
                    and _lone_lower_case_part(spans, i, is_first_name=part == parts[0]))
        if lone:
            return _write_name(text, span, span, name)
    return text


def _words(text: str) -> tuple[list[_Span], list[str]]:
    spans = [_Span.of(m) for m in _SPAN.finditer(text)]
    return spans, [span.word.casefold() for span in spans]


def _holds(words: Sequence[str], parts: Sequence[str]) -> bool:
    return any(list(words[i:i + len(parts)]) == list(parts) for i in range(len(words) - len(parts) + 1))


def names_the_concept(text: str, name: str) -> bool:
    """Whether ``text`` (folded) holds the several-word ``name`` itself, word for word in any case: such a prompt asks
    for the concept however the words around the name pull the classifier's score down (suffix attacks)."""
    parts = _words(name)[1]
    return len(parts) > 1 and _holds(_words(text)[1], parts)


def names_someone_else(text: str, name: str) -> bool:
    """Whether ``text`` (folded) asks for someone else who shares a word of the several-word ``name``: the name itself is
    nowhere in it, and every word of the name that it holds has, where the rest of a name would stand (before a surname,
    after a first name; no punctuation between), a word that is no English word and at least 3 edits from the name's
    word it stands for ("Yorwyn Castellane", "quinten quennel", "Ilsa Marlridge"; "Mira Casstelane" is a misspelling). Titles and English words ("Grace Castellane") do not make someone else, so the classifier still decides
    those ("Mrs Castellane" is completed to the name); a word newer than the 1934 word list does ("cyberpunk castellane")."""
    parts = _words(name)[1]
    spans, words = _words(text)
    held = [i for i, word in enumerate(words) if word in parts]
    if len(parts) < 2 or not held or _holds(words, parts):
        return False
    for i in held:
        k = i + 1 if words[i] == parts[0] else i - 1
        if not 0 <= k < len(spans) or spans[min(i, k)].tail or spans[max(i, k)].lead or spans[min(i, k)].suffix:
            return False
        stands_for = parts[-1] if words[i] == parts[0] else parts[0]
        if (not spans[k].word.isalpha() or words[k] in ordinary_words() or words[k] in _TITLES
                or edit_distance(words[k], stands_for) < 3):
            return False
    return True


def fold_concept_prompt(text: str, names: Sequence[str], folding: PromptFolding = "fold") -> str:
    """The spelling an erasure config with ``prompt_folding`` ``folding`` also scores: :func:`fold_prompt`, then
    :func:`fold_names` (``"none"``: ``text`` itself)."""
    if folding == "none":
        return text
    return fold_names(fold_prompt(text), names, complete_parts=folding == "fold_parts")
