"""Payloads and results are stored as JSON. Values are round-tripped on the first run too,
so that code sees the same value whether a step ran now or was replayed from its checkpoint.

`dumps` is the one door to storage (payloads, step and run results, errors, audit details),
so it is where secret values read in this process are redacted: what is stored, and what
code sees after a round trip, holds `[redacted:NAME]` instead of the value."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import SerializationError
from .redaction import redactor

# Built once: json.dumps with any option builds an encoder per call, which was a fifth of
# the cost of a small payload's dumps (every enqueued run, result and checkpoint goes here).
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_CANONICAL = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, sort_keys=True, ensure_ascii=False
)


def dumps(value: Any, *, what: str, canonical: bool = False) -> str:
    """JSON text, redacted. `canonical` sorts keys and keeps non-ASCII as is (for hashing)."""
    if value is None:  # what most jobs return: no encoder, nothing to redact
        return "null"
    try:
        text = (_CANONICAL if canonical else _COMPACT).encode(value)
        return redactor.redact(text)
    except ValueError:
        raise SerializationError(
            f"{what} contains NaN or Infinity, which JSON cannot represent; use null or a "
            "string instead"
        ) from None
    except TypeError as exc:
        raise SerializationError(
            f"{what} is not JSON-serialisable ({exc}); return or pass only dict, list, str, "
            "int, float, bool or None (convert objects first, e.g. model.model_dump())"
        ) from None


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def roundtrip(value: Any, *, what: str) -> Any:
    return json.loads(dumps(value, what=what))


def parse_json_text(text: str, *, what: str) -> Any:
    """Parse JSON typed by a user (CLI, HTTP) with an error that shows where it broke."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SerializationError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            """example: '{"customer": "acme", "amount": 5}'"""
        ) from None


def fingerprint(*parts: Any) -> str:
    """A stable hash of inputs, for spotting a step called with different inputs on resume."""
    text = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
