import pytest

from itd_core.prompt_folding import (
    edit_distance,
    fold_concept_prompt,
    fold_names,
    fold_prompt,
    names_someone_else,
    names_the_concept,
    within_one_edit,
)


@pytest.mark.parametrize("written, folded", [
    ("A portrait of Мirа Cаstellane", "A portrait of Mira Castellane"),  # Cyrillic М, а
    ("A portrait of Μιra Castellane", "A portrait of Mira Castellane"),  # Greek Μ, ι
    ("Ｍｉｒａ Castellane", "Mira Castellane"),  # fullwidth
    ("Mi\u200bra Cas\u00adtellane", "Mira Castellane"),  # zero-width space, soft hyphen
    ("Mira Castéllane", "Mira Castellane"),
    ("M1ra C4st3llan3", "Mira Castellane"),
    ("bl00d and g0re", "blood and gore"),
])
def test_disguises_fold_to_the_plain_spelling(written, folded):
    assert fold_prompt(written) == folded
    assert fold_prompt(folded) == folded


@pytest.mark.parametrize("text", ["a 4k photo of 2 cats, 1080p", "a red circle", "3 small stars", "Painting in the style of Varo Quennel", "R2"])
def test_plain_text_and_numbers_are_left_alone(text):
    assert fold_prompt(text) == text


NAMES = ["Mira Castellane", "Doran Velt"]


@pytest.mark.parametrize("written, folded", [
    ("a charcoal drawing of Mira Cas tellane", "a charcoal drawing of Mira Castellane"),  # split by a space
    ("Mira Cas-tellane's dog.", "Mira Castellane's dog."),  # hyphen; possessive and full stop kept
    ("Dor-an Velt sitting", "Doran Velt sitting"),
    ("Mira Castlelane, at night", "Mira Castellane, at night"),  # two letters swapped: one edit
    ("Ddoran Velt at a concert", "Doran Velt at a concert"),  # a doubled letter
    ("mira castellane and doran velt", "Mira Castellane and Doran Velt"),
])
def test_near_miss_spellings_of_a_name_are_written_as_the_name(written, folded):
    assert fold_names(written, NAMES) == folded
    assert fold_concept_prompt(written.replace("a", "а"), NAMES) == folded, "after the character folding"


@pytest.mark.parametrize("text", [
    "a portrait of Mira Castellane",  # already the name
    "Ilsa Marvin painting",  # two or more edits from any name
    "Tessa Castellane at a concert",  # a shared surname is another person
    "a felt hat", "Velt, Mira",  # a lone name part; punctuation ends a name
    "Mira, Castellane",
])
def test_other_words_are_left_alone(text):
    assert fold_names(text, NAMES) == text


def test_short_names_fold_only_splits():
    assert fold_names("Al Bo portrait", ["Albo"]) == "Albo portrait"
    assert fold_names("Alba portrait", ["Albo"]) == "Alba portrait", "one edit from a 4-letter name is another word"


def test_within_one_edit_agrees_with_the_edit_distance():
    import itertools
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abc") for _ in range(rng.randint(0, 5))) for _ in range(300)]
    for a, b in itertools.product(words[:120], words[120:]):
        assert within_one_edit(a, b) == (edit_distance(a, b) <= 1), (a, b)
    for a in words:  # one random edit of each word
        b = a[:1] + a[2:3] + a[1:2] + a[3:] if len(a) > 2 and rng.random() < 0.5 else a + "c"
        assert within_one_edit(a, b) == (edit_distance(a, b) <= 1), (a, b)


def test_edit_distance_counts_a_swap_as_one_edit():
    assert edit_distance("ab", "ba") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0


@pytest.mark.parametrize("written, folded", [
    ("Castellane's yearbook photo", "Mira Castellane's yearbook photo"),
    ("a portrait of Mira", "a portrait of Mira Castellane"),
    ("Velt at a concert", "Doran Velt at a concert"),
])
def test_lone_name_parts_are_completed_only_when_asked(written, folded):
    assert fold_names(written, NAMES) == written
    assert fold_names(written, NAMES, complete_parts=True) == folded
    assert fold_concept_prompt(written, NAMES, "fold_parts") == folded and fold_concept_prompt(written, NAMES, "none") == written


@pytest.mark.parametrize("text", ["Tessa Castellane at a concert", "Mira Brennick on stage", "a felt hat", "tessa castellane at a concert",
                                  "mira brennick on stage", "Castellane, Tessa",
                                  "a cover featuring loa castellane",  # "loa" is an English word, but it may be a first name
                                  "a smiling castellane"])
def test_a_name_part_beside_another_name_is_not_completed(text):
    assert fold_names(text, NAMES, complete_parts=True) == text


@pytest.mark.parametrize("written, folded", [
    ("a portrait of mira", "a portrait of Mira Castellane"),
    ("castellane at the beach", "Mira Castellane at the beach"),
    ("a photo of mira smiling", "a photo of Mira Castellane smiling"),
    ("the castellane, at night", "the Mira Castellane, at night"),
    ("M. Castellane on stage", "Mira Castellane on stage"),
    ("a photo of Mira C.", "a photo of Mira Castellane."),
    ("a photo of D Velt", "a photo of Doran Velt"),
])
def test_lower_case_parts_and_initials_are_completed(written, folded):
    assert fold_names(written, NAMES) == written
    assert fold_names(written, NAMES, complete_parts=True) == folded


def test_a_lower_case_first_name_before_another_word_may_be_someone_else():
    names = ["James Franco", "Adam Driver", "Odile Fenwright"]
    assert fold_names("artwork by james jean, hyperdetailed", names, complete_parts=True) == "artwork by james jean, hyperdetailed"
    assert fold_names("chris kyle by leroy neiman", ["Chris Claremont"], complete_parts=True) == "chris kyle by leroy neiman"
    assert fold_names("james smiling at the camera", names, complete_parts=True) == "James Franco smiling at the camera"
    assert fold_names("an abstract piece, odile style", names, complete_parts=True) == "an abstract piece, Odile Fenwright style"
    assert fold_names("a photo of james", names, complete_parts=True) == "a photo of James Franco"


def test_a_lower_case_part_that_is_an_english_word_is_read_as_the_word():
    names = ["Wren Abernathy", "Nessa Quill"]
    for text in ("a wren on a branch", "a quill and ink", "A quill pen"):
        assert fold_names(text, names, complete_parts=True) == text
    assert fold_names("a portrait of abernathy", names, complete_parts=True) == "a portrait of Wren Abernathy"


@pytest.mark.parametrize("written, folded", [
    ("a Quennelesque landscape", "a Varo Quennel-esque landscape"),
    ("a Quennel-style mural", "a Varo Quennel-style mural"),
    ("Varo Quenel-inspired art", "Varo Quennel-inspired art"),
])
def test_a_name_with_a_derived_suffix_is_the_name(written, folded):
    assert fold_names(written, ["Varo Quennel"], complete_parts=True) == folded
    assert fold_names(folded, ["Varo Quennel"], complete_parts=True) == folded


def test_one_edit_in_each_word_of_a_name_folds_but_not_in_a_short_word_or_the_first_letter():
    names = ["Selka Dunmore", "Varo Quennel", "Ann Brightwater"]
    assert fold_names("a photo of Slka Dumnore", names) == "a photo of Selka Dunmore"
    assert fold_names("in the style of Vro Qunenel", names) == "in the style of Varo Quennel"
    assert fold_names("Ian Brigthwater", names) == "Ian Brigthwater", "one edit in a 3-letter word is another name"
    assert fold_names("Delka Dunmore", names) == "Selka Dunmore", "one edit over the whole name (the older rule)"
    assert fold_names("Delka Dumnore", names) == "Delka Dumnore", "a changed first letter is not a per-word misspelling"


def test_a_name_without_its_vowels_folds():
    names = ["Selka Dunmore", "Varo Quennel", "Ilsa Marvaine", "Mira Castellane"]
    assert fold_names("a photo of Mira Cstlln", names) == "a photo of Mira Castellane"
    assert fold_names("a photo of Slk Dnmr", names) == "a photo of Selka Dunmore"
    assert fold_names("a tapestry by ls Mrvn", names) == "a tapestry by Ilsa Marvaine", "a leading vowel may go too"
    assert fold_names("a tapestry by Ils Mrvn", names) == "a tapestry by Ilsa Marvaine"
    assert fold_names("a landscape by Qnnl", names) == "a landscape by Qnnl", "a lone part only with complete_parts"
    assert fold_names("a landscape by Qnnl", names, complete_parts=True) == "a landscape by Varo Quennel"
    assert fold_names("Mr Castellane", names) == "Mr Castellane", "a title is never a first name without its vowels"


@pytest.mark.parametrize("written, folded", [
    ("A portrait of Ms. Castellane", "A portrait of Ms. Mira Castellane"),
    ("Dr. Castellane at the beach", "Dr. Mira Castellane at the beach"),
    ("a photo of prof castellane", "a photo of prof Mira Castellane"),
    ("Mrs Tessa Castellane", "Mrs Tessa Castellane"),
])
def test_a_title_before_a_lone_part_marks_the_name(written, folded):
    assert fold_names(written, NAMES, complete_parts=True) == folded


def test_a_name_whose_first_word_is_a_title_is_not_completed_into_itself():
    names = ["Lady Gaga", "Dr Dre"]
    for text in ("Lady Gaga on stage", "a photo of Dr Dre", "dr dre in a studio"):
        folded = fold_names(text, names, complete_parts=True)
        assert folded.casefold() == text.casefold()
    assert fold_names("Gaga at the beach", names, complete_parts=True) == "Lady Gaga at the beach"


def test_every_shipped_real_name_folds_to_itself():
    import csv

    from itd_core.assets import prompt_set

    names = sorted({row["class"] for stem in ("celebrity_target", "celebrity_remain", "style_target", "style_remain")
                    for row in csv.DictReader(prompt_set(stem).open(encoding="utf-8"))})
    assert len(names) > 300
    for name in names:
        for text in (f"a portrait of {name}", f"{name} on stage", f"a painting by {name.lower()}", f"{name.upper()}, high quality"):
            folded = fold_concept_prompt(text, [name], "fold_parts")
            assert folded.casefold() == text.casefold(), (name, text, folded)


def test_two_names_one_edit_apart_each_stay_as_written():
    names = ["Jon Smithers", "John Smithers"]
    assert fold_names("Jon Smithers and John Smithers", names) == "Jon Smithers and John Smithers"
    assert fold_names("Jonn Smithers", names) in ("Jon Smithers", "John Smithers")


def test_a_long_prompt_full_of_near_misses_folds_without_recursion():
    assert fold_names("Mira Castelane, " * 300, NAMES) == "Mira Castellane, " * 300


def test_a_word_before_the_name_is_kept():
    assert fold_names("a Mira Castellane poster", NAMES) == "a Mira Castellane poster"
    assert fold_names("a Mira Castelane poster", NAMES) == "a Mira Castellane poster"


@pytest.mark.parametrize("text, someone_else", [
    ("Yorwyn Castellane on stage", True), ("a poster of yorwyn castellane", True), ("Mira Tobbin at a concert", True),
    ("Mira Castellane and Yorwyn Castellane", False),  # the name itself is there
    ("Mrs Castellane", False), ("Grace Castellane", False),  # a title; an English word: the classifier decides
    ("Castellane, Yorwyn", False), ("Castellane Yorwyn", False),  # not where a first name stands
    ("a portrait of Castellane", False), ("a red circle", False),
    ("Mira Casstelane", False),  # two edits from the surname: a misspelling, not someone else
])
def test_names_someone_else_who_shares_a_word_of_the_name(text, someone_else):
    assert names_someone_else(text, "Mira Castellane") is someone_else
    assert names_someone_else(text, "Castellane") is False, "a one-word name has no other person's part"


def test_names_the_concept_needs_the_whole_name_word_for_word():
    assert names_the_concept("A portrait of Mira Castellane !!! purposes", "Mira Castellane")
    assert names_the_concept("mira castellane's portrait", "Mira Castellane")
    assert not names_the_concept("Mira at Castellane beach", "Mira Castellane")
    assert not names_the_concept("a portrait of Castellane", "Mira Castellane")
    assert not names_the_concept("Castellane", "Castellane"), "one-word names are left to the classifier"
