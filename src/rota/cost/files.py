"""Reading cost settings files (plans, price overrides): TOML or JSON, checked by pydantic.

This is the only place pydantic meets the cost package's input; everything past it is a
frozen dataclass. Every problem names the file and the field, so a user can fix the file
without reading our code.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from ..errors import ConfigFileError

T = TypeVar("T")


def read_settings(path: str | Path) -> dict[str, Any]:
    """The file's top-level table: `.json` is read as JSON, anything else as TOML."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(str(file), [f"cannot read it: {exc.strerror or exc}"]) from exc
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if file.suffix.lower() == ".json" else "TOML"
        raise ConfigFileError(str(file), [f"not valid {kind}: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigFileError(str(file), ["expected a table (JSON object) at the top level"])
    return data


def validate(adapter: pydantic.TypeAdapter[T], data: Any, source: str, prefix: str = "") -> T:
    """`data` checked against `adapter`; a ConfigFileError listing every bad field."""
    try:
        return adapter.validate_python(data)
    except pydantic.ValidationError as exc:
        raise ConfigFileError(source, [_problem(e, prefix) for e in exc.errors()]) from None


def _problem(error: Mapping[str, Any], prefix: str) -> str:
    where = _where(prefix, error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f"field {where!r} is required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown field {where!r} (see docs/cost.md for the fields)"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = ">= {ge}" if kind == "greater_than_equal" else "<= {le}"
        return f"field {where!r} must be {bound.format(**error['ctx'])}, got {error['input']!r}"
    if kind == "value_error":  # our own checks across fields: their message says it all
        message = str(error["ctx"]["error"])
        return f"{where}: {message}" if where else message
    return f"field {where!r}: {error['msg']} (got {error['input']!r})"


def _where(prefix: str, loc: tuple[Any, ...]) -> str:
    """A location as users write it: `prices[2].input`."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text
