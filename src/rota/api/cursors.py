"""Cursor pagination for lists: `?cursor=&limit=`, answered as `{"items": [...],
"next_cursor": "..." | null}`.

A cursor is opaque to callers: the sort key of the last item of a page, as base64url JSON.
The next page is the items strictly after that key, so a page never repeats or skips an item
because others were added meanwhile (keyset pagination). A cursor that does not decode, or
holds a key of another shape, is a 400 like any other bad parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .params import BadRequest, Param, unprintable

T = TypeVar("T")
Key = tuple[str | float, ...]

MAX_CURSOR = 600  # characters: a key of two 200-character names fits, base64-encoded
_ALLOWED = "a cursor from the next_cursor of a previous page of this list"


def cursor() -> Param:
    """The `cursor` query parameter: a decoded key (a tuple), or None for the first page."""
    return Param(
        _decode,
        _ALLOWED,
        None,
        {"type": "string", "maxLength": MAX_CURSOR, "description": _ALLOWED},
    )


def encode(key: Key) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str) -> Key | None:
    if not text:
        return None
    if len(text) > MAX_CURSOR:
        raise ValueError(text)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError(text) from None
    if not isinstance(value, list) or not value or not all(_part(v) for v in value):
        raise ValueError(text)
    return tuple(value)


def _part(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 200 and unprintable(value) is None
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def shaped(key: Key | None, *kinds: type) -> Key | None:
    """`key` when it has this list's shape (one part of each kind: str, or float for a
    number); a 400 otherwise (a cursor of another list, or made up)."""
    if key is None:
        return None
    fits = len(key) == len(kinds) and all(
        isinstance(part, int | float) if kind is float else isinstance(part, kind)
        for part, kind in zip(key, kinds, strict=False)
    )
    if not fits:
        raise BadRequest(f"query parameter cursor must be {_ALLOWED}")
    return key


def page(
    items: Sequence[T], key: Callable[[T], Key], after: Key | None, limit: int
) -> tuple[list[T], str | None]:
    """One page of `items` (sorted by `key`, ascending) after the key `after`: the items and
    the cursor of the next page (None on the last page)."""
    rest = [item for item in items if after is None or key(item) > after]
    chunk = rest[:limit]
    more = len(rest) > limit
    return chunk, encode(key(chunk[-1])) if more and chunk else None
