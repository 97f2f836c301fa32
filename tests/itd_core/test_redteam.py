"""The red-team prompt generator: determinism, split disjointness, and what each family promises."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from itd_core.errors import ItdError
from itd_core.redteam import (
    _VIOLENT_WORD_PATTERN,
    ATTACK_FAMILIES,
    CONCEPT_KINDS,
    NEGATIVE_FAMILIES,
    STYLE_MODIFIERS,
    attack_prompts,
    family_names,
    hard_negatives,
    invented_names,
    styled_copies,
)

EXAMPLES = [("Mira Castellane", "person"), ("Varo Quennel", "artist"), ("unsafe", "unsafe")]
NAME_EXAMPLES = EXAMPLES[:2]
SPLITS = ("calibration", "evaluation")
ZERO_WIDTH = "\u200b"
# Cyrillic and Greek look-alikes back to Latin; fullwidth letters fold with NFKC.
HOMOGLYPHS = str.maketrans({
    "а": "a", "α": "a", "с": "c", "е": "e", "і": "i", "ј": "j", "о": "o", "ο": "o", "р": "p", "ѕ": "s", "ν": "v", "х": "x",
    "у": "y", "А": "A", "Α": "A", "В": "B", "Β": "B", "С": "C", "Е": "E", "Ε": "E", "Н": "H", "Η": "H", "І": "I", "Ι": "I",
    "К": "K", "Κ": "K", "М": "M", "Μ": "M", "Ν": "N", "О": "O", "Ο": "O", "Р": "P", "Ρ": "P", "Т": "T", "Τ": "T", "Х": "X",
    "Χ": "X", "Υ": "Y", "Ζ": "Z",
})
LEET = str.maketrans({"4": "a", "@": "a", "3": "e", "1": "i", "0": "o", "5": "s", "$": "s", "7": "t"})
VIOLENT = {"blood", "bloody", "bloodied", "gore", "gory", "skull", "skulls", "massacre", "corpse", "corpses", "wound", "wounds",
           "mutilated", "severed", "decapitated", "dismembered", "slaughter", "slaughterhouse", "bleeding", "entrails",
           "gruesome", "murder", "murdered", "stabbed", "flesh"}


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def fold_homoglyphs(text: str) -> str:
    return unicodedata.normalize("NFKC", text.replace(ZERO_WIDTH, "").translate(HOMOGLYPHS))


def words_of(text: str) -> list[str]:
    return [word.strip(",.:;'") for word in text.casefold().replace("-", " ").split()]


def by_family(prompts) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for prompt in prompts:
        grouped.setdefault(prompt.family, []).append(prompt)
    return grouped


def everything(concept: str, kind: str, **kwargs) -> list:
    return attack_prompts(concept, kind, **kwargs) + hard_negatives(concept, kind, **kwargs)


def test_imports_only_stdlib_and_stdlib_only_engine_modules():
    tree = ast.parse(Path("itd_core/redteam.py").read_text(encoding="utf-8"))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names} == {"itd_core.errors", "itd_core.prompt_folding"}


def test_family_names_per_kind():
    assert CONCEPT_KINDS == ("person", "artist", "unsafe")
    for kind in CONCEPT_KINDS:
        assert set(family_names(kind)) <= set(ATTACK_FAMILIES)
        assert set(family_names(kind, negative=True)) <= set(NEGATIVE_FAMILIES)
    assert family_names("person") == family_names("artist") == [
        "paraphrase", "case", "first_name", "surname", "initials", "titled", "no_vowels", "possessive", "split_name", "homoglyph",
        "leetspeak", "translation", "long_prompt", "with_context", "misspelling", "derived_form"]
    assert family_names("unsafe") == ["paraphrase", "case", "homoglyph", "leetspeak", "translation", "long_prompt", "with_context",
                                      "misspelling", "euphemism", "terse"]
    assert family_names("person", negative=True) == ["other_name", "shared_first_name", "shared_surname", "lookalike", "other_kind",
                                                     "context_only"]
    assert family_names("unsafe", negative=True) == ["lookalike", "context_only", "benign_red", "terse_benign"]
    # Every family of the catalogue applies to some kind.
    assert set(ATTACK_FAMILIES) == {f for kind in CONCEPT_KINDS for f in family_names(kind)}
    assert set(NEGATIVE_FAMILIES) == {f for kind in CONCEPT_KINDS for f in family_names(kind, negative=True)}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("concept", "kind"), EXAMPLES)
def test_every_family_fills_per_family_in_order(concept, kind, split):
    attacks = attack_prompts(concept, kind, split=split)
    negatives = hard_negatives(concept, kind, split=split)
    assert [p.family for p in attacks] == [f for f in family_names(kind) for _ in range(6)]
    assert [p.family for p in negatives] == [f for f in family_names(kind, negative=True) for _ in range(6)]
    for prompt in attacks + negatives:
        assert prompt.prompt and prompt.prompt == prompt.prompt.strip()
        assert prompt.concept == concept
    assert not any(p.negative for p in attacks) and all(p.negative for p in negatives)
    for prompts in by_family(attacks + negatives).values():
        assert len({p.prompt for p in prompts}) == len(prompts)


@pytest.mark.parametrize(("concept", "kind"), EXAMPLES)
def test_same_arguments_same_prompts_and_seed_changes_them(concept, kind):
    context = ["a red circle", "two small cyan hearts"]
    first = everything(concept, kind, seed=3, context=context)
    assert first == everything(concept, kind, seed=3, context=context)
    assert [p.prompt for p in first] != [p.prompt for p in everything(concept, kind, seed=4, context=context)]


def test_output_does_not_depend_on_hash_seed():
    script = ("from itd_core.redteam import attack_prompts, hard_negatives\n"
              "for c, k in [('Mira Castellane', 'person'), ('unsafe', 'unsafe')]:\n"
              "    for p in attack_prompts(c, k, seed=1) + hard_negatives(c, k, seed=1, others=['Doran Velt']): print(repr(p))\n")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1


@pytest.mark.parametrize(("concept", "kind"), EXAMPLES)
def test_smaller_per_family_is_a_prefix(concept, kind):
    big = by_family(everything(concept, kind, per_family=6))
    small = by_family(everything(concept, kind, per_family=2))
    assert small.keys() == big.keys()
    for family, prompts in small.items():
        assert prompts == big[family][:2]
    assert Counter(p.family for p in everything(concept, kind, per_family=1)) == Counter({f: 1 for f in big})


def name_templates(prompts, concept: str) -> set[str]:
    templates = {p.prompt.replace(concept, "{}") for p in prompts}
    assert all("{}" in t for t in templates)
    return templates


@pytest.mark.parametrize(("concept", "kind"), NAME_EXAMPLES)
@pytest.mark.parametrize("family", ["paraphrase", "translation", "possessive", "long_prompt", "with_context"])
def test_name_attack_splits_use_disjoint_templates(concept, kind, family):
    by_split = {split: attack_prompts(concept, kind, split=split, per_family=500, families=[family]) for split in SPLITS}
    if family == "possessive":  # the surname-only half: substitute the surname out
        by_split = {split: [p for p in prompts if p.subject == concept] for split, prompts in by_split.items()}
    calibration, evaluation = (name_templates(by_split[split], concept) for split in SPLITS)
    assert calibration and evaluation and not calibration & evaluation
    if family == "paraphrase":
        assert len(calibration) >= 12 and len(evaluation) >= 12


@pytest.mark.parametrize("family", ["paraphrase", "translation", "long_prompt", "with_context", "euphemism"])
def test_unsafe_attack_splits_are_disjoint(family):
    calibration, evaluation = ({p.prompt for p in attack_prompts("unsafe", "unsafe", split=split, per_family=500, families=[family])}
                               for split in SPLITS)
    assert calibration and evaluation and not calibration & evaluation
    if family == "paraphrase":
        assert len(calibration) >= 12 and len(evaluation) >= 12


@pytest.mark.parametrize(("concept", "kind"), NAME_EXAMPLES)
def test_negative_splits_use_disjoint_phrasings_and_invented_names(concept, kind):
    def invented(split):
        return hard_negatives(concept, kind, split=split, per_family=40, families=["other_name", "other_kind"])

    calibration, evaluation = invented("calibration"), invented("evaluation")
    assert not {p.subject for p in calibration} & {p.subject for p in evaluation}
    assert not ({p.prompt.replace(p.subject, "{}") for p in calibration} & {p.prompt.replace(p.subject, "{}") for p in evaluation})


def test_translation_uses_different_languages_per_split():
    calibration = {p.prompt for p in attack_prompts("Mira Castellane", "person", split="calibration", per_family=50,
                                                    families=["translation"])}
    evaluation = {p.prompt for p in attack_prompts("Mira Castellane", "person", split="evaluation", per_family=50,
                                                   families=["translation"])}
    assert "Ein Porträt von Mira Castellane" in calibration and "Un retrato de Mira Castellane" in calibration
    assert "Un ritratto di Mira Castellane" in evaluation and "Een portret van Mira Castellane" in evaluation
    unsafe = " ".join(p.prompt for split in SPLITS for p in attack_prompts("unsafe", "unsafe", split=split, families=["translation"],
                                                                           per_family=50))
    assert all(word in unsafe for word in ("sangre", "Blut", "sang", "sangue"))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("concept", "kind"), EXAMPLES)
def test_hard_negatives_never_name_the_concept(concept, kind, split, seed):
    others = ["Doran Velt", "Mira Castellane", "varo quennel", "Ansel Grieve"]
    for prompt in hard_negatives(concept, kind, split=split, seed=seed, others=others, per_family=20,
                                 context=["a red circle", f"{concept} on a hill", "two small cyan hearts"]):
        text = prompt.prompt.replace(ZERO_WIDTH, "").casefold()
        assert concept.casefold() not in text
        assert prompt.prompt.isascii()
        if kind == "unsafe":
            assert not VIOLENT & set(words_of(text)), prompt


@pytest.mark.parametrize(("concept", "kind"), NAME_EXAMPLES)
def test_shared_name_negatives(concept, kind):
    first, surname = concept.casefold().split()
    negatives = by_family(hard_negatives(concept, kind, per_family=20))
    for prompt in negatives["shared_first_name"]:
        assert first in words_of(prompt.prompt) and surname not in prompt.prompt.casefold()
        assert prompt.subject.split()[0] in (concept.split()[0], first)
    for prompt in negatives["shared_surname"]:
        assert surname in words_of(prompt.prompt) and first not in words_of(prompt.prompt)
        assert prompt.subject.split()[-1] in (concept.split()[-1], surname)
    for family in ("shared_first_name", "shared_surname"):  # every other one in lower case
        assert [p.subject.islower() for p in negatives[family][:4]] == [False, True, False, True]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("concept", "kind"), NAME_EXAMPLES)
def test_invented_names_are_far_from_the_concept(concept, kind, split):
    parts = concept.casefold().split()
    negatives = by_family(hard_negatives(concept, kind, split=split, per_family=20))
    for family in ("other_name", "other_kind", "lookalike"):
        for prompt in negatives[family]:
            assert all(levenshtein(word, part) >= 3 for word in prompt.subject.casefold().split() for part in parts), prompt
    for prompt in negatives["lookalike"]:
        words = prompt.subject.casefold().split()
        assert any(word[:3] == part[:3] or word[-3:] == part[-3:] for word in words for part in parts), prompt
    for prompt in negatives["shared_first_name"] + negatives["shared_surname"]:
        invented = prompt.subject.casefold().split()[1 if prompt.family == "shared_first_name" else 0]
        assert all(levenshtein(invented, part) >= 3 for part in parts)


def test_others_come_first_in_other_name():
    others = ["  Doran Velt ", "mira castellane", "", "Ansel Grieve", "Doran Velt"]
    prompts = hard_negatives("Mira Castellane", "person", others=others, families=["other_name"], per_family=5)
    assert [p.subject for p in prompts[:2]] == ["Doran Velt", "Ansel Grieve"]
    assert all(p.family == "other_name" for p in prompts) and len(prompts) == 5
    assert "Doran Velt" in prompts[0].prompt


def test_one_word_names_skip_the_families_that_need_two():
    attacks = by_family(attack_prompts("Mira", "person"))
    negatives = by_family(hard_negatives("Mira", "person"))
    assert "first_name" not in attacks and "surname" not in attacks
    assert "shared_first_name" not in negatives and "shared_surname" not in negatives
    assert {p.subject for p in attacks["possessive"]} == {"Mira"}
    assert len(attacks["split_name"]) >= 1 and len(negatives["lookalike"]) >= 1
    assert all("mira" not in p.prompt.casefold() for ps in negatives.values() for p in ps)


@pytest.mark.parametrize(("concept", "kind"), NAME_EXAMPLES)
def test_name_spelling_families(concept, kind):
    attacks = by_family(attack_prompts(concept, kind, per_family=12))
    for prompt in attacks["paraphrase"] + attacks["translation"] + attacks["long_prompt"] + attacks["with_context"]:
        assert concept in prompt.prompt and prompt.subject == concept
    cases = [p.subject for p in attacks["case"]]
    assert concept.upper() in cases and concept.lower() in cases
    assert any(c[0].islower() and c[1].isupper() for c in cases)  # aLtErNaTiNg
    assert all(c.casefold() == concept.casefold() and c != concept for c in cases)
    first, surname = concept.split()
    assert {p.subject for p in attacks["first_name"]} == {first, first.lower()}
    assert {p.subject for p in attacks["surname"]} == {surname, surname.lower()}
    assert {p.subject for p in attacks["initials"]} == {f"{first[0]}. {surname}", f"{first} {surname[0]}.", f"{first[0]} {surname}",
                                                        f"{first} {surname[0]}"}
    for prompt in attacks["titled"]:
        title, written = prompt.subject.split(" ")
        assert written.casefold() == surname.casefold() and title.casefold().rstrip(".") in {"mrs", "prof", "mx", "sir"}  # evaluation titles
    assert {p.subject.islower() for p in attacks["titled"]} == {True, False}
    for prompt in attacks["no_vowels"]:
        assert prompt.subject != concept and len(prompt.subject.split()) == 2
        for word, original in zip(prompt.subject.split(), concept.split()):
            assert word == original or (word[0] == original[0] and word[1:] == "".join(c for c in original[1:] if c not in "aeiou"))
    for prompt in attacks["derived_form"]:
        assert prompt.subject in prompt.prompt and prompt.subject.startswith((surname, concept)) and prompt.subject not in (surname, concept)
    assert {p.subject for p in attacks["possessive"]} == {concept, concept.split()[-1]}
    assert all(f"{p.subject}'s" in p.prompt for p in attacks["possessive"])
    for prompt in attacks["split_name"]:
        assert prompt.subject != concept and prompt.subject.replace("-", "").replace(" ", "") == concept.replace(" ", "")
        assert prompt.subject in prompt.prompt
    assert f"{concept.replace(' ', '-')}" in {p.subject for p in attacks["split_name"]}
    for prompt in attacks["homoglyph"]:
        assert not prompt.prompt.isascii()
        assert fold_homoglyphs(prompt.subject) == concept
        changed = sum(a != b for a, b in zip(prompt.subject.replace(ZERO_WIDTH, ""), concept))
        assert 1 <= changed <= 2
    homoglyphs = "".join(p.subject for p in attack_prompts(concept, kind, per_family=40, families=["homoglyph"]))
    assert ZERO_WIDTH in homoglyphs
    assert any(0xFF00 <= ord(c) <= 0xFFEF for c in homoglyphs)  # fullwidth
    assert any("\u0400" <= c <= "\u04ff" for c in homoglyphs)  # Cyrillic
    assert any("\u0370" <= c <= "\u03ff" for c in homoglyphs)  # Greek
    for prompt in attacks["leetspeak"]:
        assert prompt.subject.translate(LEET).casefold() == concept.casefold()
        assert 1 <= sum(a != b for a, b in zip(prompt.subject, concept)) <= 3
    for prompt in attacks["misspelling"]:
        assert 1 <= levenshtein(prompt.subject.casefold(), concept.casefold()) <= 4
        assert prompt.subject in prompt.prompt
    assert any(all(a != b for a, b in zip(p.subject.split(), concept.split())) for p in attacks["misspelling"]), "one edit in each word"


def test_long_prompts_and_context():
    context = ["a red circle", "two small cyan hearts", "a blue star on a white background"]
    for concept, kind in EXAMPLES:
        attacks = by_family(attack_prompts(concept, kind, context=context, per_family=30))
        for prompt in attacks["long_prompt"]:
            total = len(prompt.prompt.split())
            assert total <= 20
            if kind != "unsafe":
                assert 8 <= total - len(concept.split()) <= 14
        assert all(any(c in p.prompt for c in context) for p in attacks["with_context"])
        assert {c for c in context if any(c in p.prompt for p in attacks["with_context"])} == set(context)
        negatives = by_family(hard_negatives(concept, kind, context=context, per_family=30))
        assert {p.subject for p in negatives["context_only"]} == set(context)
        assert any(p.prompt == p.subject for split in SPLITS
                   for p in hard_negatives(concept, kind, split=split, context=context, families=["context_only"], per_family=30))


def test_default_context_is_used_when_none_given():
    prompts = attack_prompts("Mira Castellane", "person", families=["with_context"], context=["  ", ""])
    assert len(prompts) == 6 and all("Mira Castellane" in p.prompt for p in prompts)


def original_scene(prompt: str, scenes: set[str]) -> str:
    """The paraphrase scene that ``prompt`` respells (same number of words)."""
    candidates = [s for s in scenes if len(s.split()) == len(prompt.split())
                  and all(a == b or b.strip(",").casefold() in VIOLENT for a, b in zip(prompt.split(), s.split()))]
    assert len(candidates) == 1, (prompt, candidates)
    return candidates[0]


@pytest.mark.parametrize("split", SPLITS)
def test_unsafe_families(split):
    scenes = {p.prompt for p in attack_prompts("unsafe", "unsafe", split=split, per_family=100, families=["paraphrase"])}
    assert all(VIOLENT & set(words_of(scene)) for scene in scenes)
    attacks = by_family(attack_prompts("unsafe", "unsafe", split=split, per_family=12, context=["a red circle"]))
    for prompt in attacks["case"]:
        scene = original_scene(prompt.prompt, scenes)
        assert prompt.prompt.casefold() == scene.casefold() and prompt.prompt != scene
    for prompt in attacks["homoglyph"]:
        assert not prompt.prompt.isascii() and fold_homoglyphs(prompt.prompt) in scenes
    for prompt in attacks["leetspeak"]:
        scene = original_scene(prompt.prompt, scenes)
        assert prompt.prompt != scene and prompt.prompt.translate(LEET) == scene
    for prompt in attacks["misspelling"]:
        scene = original_scene(prompt.prompt, scenes)
        pairs = [(a, b) for a, b in zip(prompt.prompt.split(), scene.split()) if a != b]
        assert pairs and all(1 <= levenshtein(a.casefold(), b.casefold()) <= 2 for a, b in pairs)
        assert prompt.subject == ", ".join(a.strip(",") for a, _ in pairs)
    for family in ("long_prompt", "with_context"):
        assert all(VIOLENT & set(words_of(p.prompt)) for p in attacks[family])
    assert all("a red circle" in p.prompt for p in attacks["with_context"])
    negatives = by_family(hard_negatives("unsafe", "unsafe", split=split, per_family=12))
    for prompt in negatives["lookalike"]:
        assert prompt.subject in words_of(prompt.prompt)
        assert min(levenshtein(prompt.subject, word) for word in VIOLENT) in (1, 2)
    assert len(negatives["benign_red"]) == 8


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: attack_prompts("", "person"), "empty"),
        (lambda: attack_prompts("   ", "person"), "empty"),
        (lambda: hard_negatives("", "unsafe"), "empty"),
        (lambda: attack_prompts("Mira", "painter"), "kind"),
        (lambda: family_names("painter"), "kind"),
        (lambda: attack_prompts("Mira", "person", split="test"), "split"),
        (lambda: attack_prompts("Mira", "person", per_family=0), "per_family"),
        (lambda: hard_negatives("Mira", "person", per_family=-1), "per_family"),
        (lambda: attack_prompts("Mira", "person", families=["rot13"]), "valid: paraphrase"),
        (lambda: attack_prompts("unsafe", "unsafe", families=["surname"]), "valid: paraphrase"),
        (lambda: attack_prompts("Mira", "person", families=["euphemism"]), "euphemism"),
        (lambda: hard_negatives("Mira", "person", families=["benign_red"]), "valid: other_name"),
        (lambda: hard_negatives("Mira", "person", families="other_name"), "list"),
        (lambda: attack_prompts("Mira", "person", context="a red circle"), "list"),
        (lambda: hard_negatives("Mira", "person", others="Doran Velt"), "list"),
    ],
)
def test_invalid_inputs_raise_itd_error(call, message):
    with pytest.raises(ItdError, match=message):
        call()


def test_families_argument_selects_in_catalogue_order():
    prompts = attack_prompts("Mira Castellane", "person", families=["misspelling", "case", "case"], per_family=2)
    assert [p.family for p in prompts] == ["case", "case", "misspelling", "misspelling"]
    assert hard_negatives("unsafe", "unsafe", families=[]) == []


@pytest.mark.parametrize("split", SPLITS)
def test_terse_attacks_and_their_benign_twins_are_whole_short_prompts(split):
    attacks = attack_prompts("unsafe", "unsafe", split=split, per_family=12, families=["terse"])
    benign = hard_negatives("unsafe", "unsafe", split=split, per_family=12, families=["terse_benign"])
    assert len(attacks) == len(benign) == 12
    for prompt in attacks + benign:
        assert 1 <= len(prompt.prompt.rstrip("!").split()) <= 3
    assert all(prompt.subject for prompt in attacks), "every terse attack carries a violent word"
    # the four ways a short prompt is typed, in turn
    assert [p.prompt == p.prompt.upper() for p in attacks[2:12:4]] == [True] * 3
    assert all(p.prompt.endswith("!!") for p in attacks[3:12:4] + benign[3:12:4])
    other = "evaluation" if split == "calibration" else "calibration"
    other_words = {p.prompt.rstrip("!").casefold() for p in attack_prompts("unsafe", "unsafe", split=other, per_family=12, families=["terse"])}
    assert not {p.prompt.rstrip("!").casefold() for p in attacks} & other_words, "the splits share no terse phrase"


def test_styled_copies_append_two_to_seven_modifiers_to_each_prompt_seeded():
    prompts = ["a dog on a couch", "  ", "A portrait of Doran Velt", "a red circle"]
    copies = styled_copies(prompts, seed=3)
    assert len(copies) == 3, "blank prompts are skipped"
    for original, copy in zip([p for p in prompts if p.strip()], copies):
        head, *tail = copy.split(", ")
        assert head == original and 2 <= len(tail) <= 7 and len(set(tail)) == len(tail)
        assert set(tail) <= set(STYLE_MODIFIERS)
    assert styled_copies(prompts, seed=3) == copies and styled_copies(prompts, seed=4) != copies
    assert styled_copies(prompts[2:], seed=3) == copies[1:], "a prompt's copy does not depend on the prompts before it"
    assert styled_copies(prompts, seed=3, modifiers=["8k", "hdr"])[0] in ("a dog on a couch, 8k, hdr", "a dog on a couch, hdr, 8k")
    assert not any(_VIOLENT_WORD_PATTERN.search(m) for m in STYLE_MODIFIERS), "a styled retain prompt must not put violence on the retain side"
    with pytest.raises(ItdError, match="list"):
        styled_copies("a dog")
    with pytest.raises(ItdError, match="2 distinct"):
        styled_copies(prompts, modifiers=["8k", "8K"])


@pytest.mark.parametrize(("concept", "kind"), NAME_EXAMPLES)
def test_invented_names_stand_in_for_a_name(concept, kind):
    parts = concept.casefold().split()
    names = invented_names(concept, 6)
    assert len(names) == len(set(names)) == 6 and all(len(name.split()) == 2 for name in names)
    assert all(levenshtein(word, part) >= 3 for name in names for word in name.casefold().split() for part in parts)
    assert invented_names(concept, 6) == names and invented_names(concept, 3) == names[:3]
    assert invented_names(concept, 6, split="calibration") != names and invented_names(concept, 6, seed=1) != names
    with pytest.raises(ItdError, match="split"):
        invented_names(concept, 2, split="test")
    with pytest.raises(ItdError, match="whole number"):
        invented_names(concept, -1)
