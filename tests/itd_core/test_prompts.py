import pytest

from itd_core.errors import ItdError
from itd_core.prompts import MAX_PROMPT_CHARS, MAX_PROMPT_FILE_BYTES, MAX_PROMPTS, check_prompt, check_prompts, read_prompts


def test_a_prompt_at_the_limit_passes_and_one_more_character_is_refused_with_the_limit_named():
    assert check_prompt("a" * MAX_PROMPT_CHARS) == "a" * MAX_PROMPT_CHARS
    with pytest.raises(ItdError, match=f"{MAX_PROMPT_CHARS:,}"):
        check_prompt("a" * (MAX_PROMPT_CHARS + 1))


@pytest.mark.parametrize(("prompt", "message"), [("a\x00b", "NUL"), ("Mira \ud800", "lone surrogate"), (42, "not text")])
def test_invalid_text_is_refused(prompt, message):
    with pytest.raises(ItdError, match=message):
        check_prompts(["fine", prompt])


def test_too_many_prompts_at_once():
    with pytest.raises(ItdError, match=f"{MAX_PROMPTS:,}"):
        check_prompts(["a"] * (MAX_PROMPTS + 1))


def test_prompt_file_limits_name_the_file_the_line_and_the_limit(tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_PROMPT_FILE_BYTES + 1)  # sparse: no real disk use
    with pytest.raises(ItdError, match="limit for a prompt file"):
        read_prompts(huge)
    many = tmp_path / "many.txt"
    many.write_text("a\n" * (MAX_PROMPTS + 1))
    with pytest.raises(ItdError, match=f"{MAX_PROMPTS:,} per file"):
        read_prompts(many)
    nul = tmp_path / "nul.txt"
    nul.write_text("a cat\nA portrait of\x00 Mira\n")
    with pytest.raises(ItdError, match="nul.txt: prompt 2 holds a NUL"):
        read_prompts(nul)
    long = tmp_path / "long.txt"
    long.write_text("x" * (MAX_PROMPT_CHARS + 1) + "\n")
    with pytest.raises(ItdError, match="long.txt: prompt 1 has"):
        read_prompts(long)
