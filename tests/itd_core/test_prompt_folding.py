import pytest

from itd_core.prompt_folding import fold_prompt


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
