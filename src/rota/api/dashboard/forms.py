"""Query parameters as the dashboard's filter forms send them: a GET form submits every
field, so an empty one means "no filter" (`blank_is_none`), and a page link (`page_after`)."""

from __future__ import annotations

from typing import Any

from ..params import Param, whole_number


def blank_is_none(param: Param) -> Param:
    """`param`, except that an empty value means "not given" rather than a bad value."""

    def parse(raw: str) -> Any:
        return param.default if raw == "" else param.parse(raw)

    return Param(parse, param.allowed + " (or empty for no filter)", param.default, param.schema)


def page_after() -> Param:
    """The keyset position of a page: the last position of the page above it."""
    number = whole_number(1, 10**15, default=1)
    return Param(number.parse, "the position a 'next page' link gave", None, number.schema)
