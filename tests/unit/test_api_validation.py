"""The API's boundary checks on their own: what each parser takes, and what a message shows."""

from __future__ import annotations

import pytest

from rota.api.context import shown
from rota.api.params import one_of, text_filter, unprintable, whole_number

ARABIC_FIVE = "\u0665"  # int() reads it; a limit must not


@pytest.mark.parametrize(
    "raw", ["-1", "0", "1001", str(10**30), "1.5", " 5", "+5", "1_0", ARABIC_FIVE, ""]
)
def test_a_limit_outside_its_bounds_or_not_plain_digits_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        whole_number(1, 1000, default=100).parse(raw)


def test_a_limit_inside_its_bounds_is_read() -> None:
    limit = whole_number(1, 1000, default=100)

    assert [limit.parse(raw) for raw in ("1", "1000", "0042")] == [1, 1000, 42]
    assert limit.allowed == "a whole number from 1 to 1000"


@pytest.mark.parametrize("raw", ["\x00", "a\x00b", "\ufffd", "\ud800", "a\nb", "\x7f", "\x85"])
def test_a_text_filter_refuses_what_no_stored_text_holds(raw: str) -> None:
    with pytest.raises(ValueError):
        text_filter().parse(raw)


def test_a_text_filter_takes_names_and_is_empty_for_no_filter() -> None:
    assert text_filter().parse("alice@example.com") == "alice@example.com"
    assert text_filter().parse("approval.*") == "approval.*"
    assert text_filter().parse("") is None
    with pytest.raises(ValueError):
        text_filter(max_len=3).parse("abcd")


def test_one_of_takes_only_its_choices() -> None:
    status = one_of(("pending", "all"), default="pending")

    assert status.parse("all") == "all"
    with pytest.raises(ValueError):
        status.parse("ALL")


def test_unprintable_finds_the_first_bad_character_and_honours_allowed_ones() -> None:
    assert unprintable("fine text") is None
    assert unprintable("line\nbreak") == "\n"
    assert unprintable("line\nbreak", allow=frozenset("\n")) is None
    assert unprintable("ok\x00\x01") == "\x00"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("plain", 80, "plain"),
        ("a\x00b", 80, "a\\x00b"),
        ("two\nlines", 80, "two\\nlines"),
        ("x" * 10, 4, "xxxx..."),
        ("\x00" * 10, 2, "\\x00\\x00..."),
    ],
)
def test_shown_escapes_and_cuts(text: str, limit: int, expected: str) -> None:
    assert shown(text, limit) == expected
