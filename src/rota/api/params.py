"""What a caller sends, checked at the boundary: path and query parameters and JSON bodies.

Every parameter an endpoint reads goes through here, so bad input is a 400 whose message names
the parameter and says what it allows, and nothing a caller sends reaches the store unchecked:
PostgreSQL refuses NUL in text and SQLite integers past 64 bits, and either would otherwise
surface as a 5xx.

An endpoint declares what it accepts with `@accepts(query=..., body=...)`, reads it with
`read_query(request)` / `await read_body(request)` after it has authenticated the caller, and
answers unknown query parameters with 400 too (a typo should not silently mean "no filter").
The declaration is kept on the endpoint, so tests and docs can see what each route takes.
"""

from __future__ import annotations

import json
import re
import types
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, Union, get_args, get_origin

import pydantic
from starlette.requests import Request

from .context import ApiError, shown

E = TypeVar("E", bound=Callable[..., Any])

MAX_TEXT = 200  # a text filter; principal names are at most 100 characters
MAX_BODY = 64 * 1024  # a JSON body; the largest one today is a 2,000-character comment
# Real ids are UUIDv7-shaped (lower-case hex and dashes); letters are allowed so that a
# mistyped id is "not found" (404) rather than malformed, as it always was.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: int() also takes "١٢", "1_000" and " 7"
_FREE_TEXT_CONTROLS = frozenset("\t\n\r")


class BadRequest(ApiError):
    """The caller sent something we do not accept: 400, naming what and what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


def unprintable(text: str, *, allow: frozenset[str] = frozenset()) -> str | None:
    """The first character of `text` that no stored text may hold: a control character (NUL
    among them), a lone surrogate, or U+FFFD (what undecodable percent-encoded bytes become)."""
    for char in text:
        if char in allow:
            continue
        if unicodedata.category(char) in ("Cc", "Cs") or char == "\ufffd":
            return char
    return None


# -- single values -------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """How to read one query parameter: `parse` raises ValueError for a value it refuses, and
    `allowed` says what it takes, for the message."""

    parse: Callable[[str], Any]
    allowed: str
    default: Any = None
    # The JSON schema of the raw value, for /openapi.json (api/openapi.py)
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


def whole_number(low: int, high: int, default: int) -> Param:
    def parse(raw: str) -> int:
        if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
            raise ValueError(raw)
        return int(raw)

    schema = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return Param(parse, f"a whole number from {low} to {high}", default, schema)


def one_of(choices: tuple[str, ...], default: str) -> Param:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(raw)
        return raw

    schema = {"type": "string", "enum": list(choices), "default": default}
    named = ", ".join(choice for choice in choices if choice)
    allowed = f"one of {named} (or empty for any)" if "" in choices else f"one of {named}"
    return Param(parse, allowed, default, schema)


def text_filter(max_len: int = MAX_TEXT) -> Param:
    """Free text to match exactly; empty means "no filter"."""

    def parse(raw: str) -> str | None:
        if len(raw) > max_len or unprintable(raw) is not None:
            raise ValueError(raw)
        return raw or None

    allowed = f"text of at most {max_len} characters, without control characters"
    return Param(parse, allowed, schema={"type": "string", "maxLength": max_len})


def instant() -> Param:
    """A point in time: ISO 8601 (`2026-01-31T12:00:00Z`; no offset means UTC), as epoch
    seconds."""

    def parse(raw: str) -> float:
        if len(raw) > 40:
            raise ValueError(raw)
        try:
            moment = datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
        except OverflowError:  # year 1 at +14:00 is before year 1 in UTC
            raise ValueError(raw) from None

    allowed = "an ISO 8601 time, e.g. 2026-01-31T12:00:00Z (no offset means UTC)"
    return Param(parse, allowed, schema={"type": "string", "format": "date-time"})


def an_id(noun: str) -> Param:
    """An id in a query (a cursor, a filter): the shape `path_id` takes."""

    def parse(raw: str) -> str:
        if not _ID.fullmatch(raw):
            raise ValueError(raw)
        return raw

    allowed = f"{noun}: letters, digits and '-', at most 64 characters"
    return Param(parse, allowed, schema={"type": "string", "pattern": _ID.pattern})


def free_text(name: str, value: str | None, *, max_len: int) -> str | None:
    """Text a caller wants stored (a comment): line breaks and tabs are fine, other control
    characters are not."""
    if value is None:
        return None
    bad = unprintable(value, allow=_FREE_TEXT_CONTROLS)
    if bad is not None:
        raise BadRequest(
            f"{name} holds the character {bad!r}, which rota does not store; send text "
            f"without control characters (line breaks and tabs are fine)"
        )
    if len(value) > max_len:
        raise BadRequest(f"{name} is {len(value)} characters; keep it under {max_len}")
    return value


def path_id(request: Request, name: str, noun: str) -> str:
    """A path parameter that is an id: malformed is 400, well-formed but unknown is the
    caller's 404 (from the store)."""
    raw: str = request.path_params[name]
    if not _ID.fullmatch(raw):
        raise BadRequest(
            f"path parameter {name} must be {noun} id: letters, digits and '-', at most 64 "
            f"characters (e.g. 01a2459f-6484-5aa0-dce2-c64967492e67); got '{shown(raw)}'"
        )
    return raw


def path_name(request: Request, name: str, noun: str, *, max_len: int = MAX_TEXT) -> str:
    """A path parameter that is a name (a schedule's, a principal's): malformed is 400,
    well-formed but unknown is the route's 404."""
    raw: str = request.path_params[name]
    if not raw or len(raw) > max_len or unprintable(raw) is not None:
        raise BadRequest(
            f"path parameter {name} must be {noun} name: at most {max_len} characters, "
            f"without control characters; got '{shown(raw)}'"
        )
    return raw


# -- what an endpoint accepts ----------------------------------------------------------------


@dataclass(frozen=True)
class Accepts:
    query: Mapping[str, Param] = field(default_factory=dict)
    body: type[pydantic.BaseModel] | None = None


def accepts(
    *, query: Mapping[str, Param] | None = None, body: type[pydantic.BaseModel] | None = None
) -> Callable[[E], E]:
    """Declare the query parameters and JSON body an endpoint takes (see read_query)."""

    def declare(endpoint: E) -> E:
        endpoint.accepts = Accepts(dict(query or {}), body)  # type: ignore[attr-defined]
        return endpoint

    return declare


def declared(endpoint: object) -> Accepts:
    """What `endpoint` declared with @accepts (nothing, if it did not)."""
    found = getattr(endpoint, "accepts", None)
    return found if isinstance(found, Accepts) else Accepts()


def _declared(request: Request) -> Accepts:
    # Starlette puts the matched route's endpoint in the scope: reading the declaration from
    # there means an endpoint cannot check its query against some other endpoint's list.
    return declared(request.scope.get("endpoint"))


def read_query(request: Request) -> dict[str, Any]:
    """The endpoint's query parameters, parsed, with defaults for those not given."""
    spec = _declared(request).query
    where = f"{request.method} {request.url.path}"
    given: dict[str, str] = {}
    for name, raw in request.query_params.multi_items():
        if name not in spec:
            takes = f"takes {', '.join(spec)}" if spec else "takes no query parameters"
            raise BadRequest(f"unknown query parameter '{shown(name)}': {shown(where)} {takes}")
        if name in given:
            raise BadRequest(f"query parameter {name} is given more than once; send it once")
        given[name] = raw
    values = {}
    for name, param in spec.items():
        if name not in given:
            values[name] = param.default
            continue
        try:
            values[name] = param.parse(given[name])
        except ValueError:
            raise BadRequest(
                f"query parameter {name} must be {param.allowed}; got '{shown(given[name])}'"
            ) from None
    return values


async def read_body(request: Request, *, max_bytes: int = MAX_BODY) -> Any:
    """The endpoint's JSON body as its declared pydantic model; an empty body is the model's
    defaults. Messages name the field and what it takes, never pydantic's own text."""
    model = _declared(request).body
    if model is None:
        raise TypeError("read_body needs @accepts(body=Model) on the endpoint")
    raw = await _capped_body(request, max_bytes)
    shape = _shape(model)
    data = _parse_json(raw, shape) if raw.strip() else {}
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {_json_kind(data)}; send {shape}")
    try:
        return model.model_validate(data, strict=True)
    except pydantic.ValidationError as exc:
        raise BadRequest(_describe(exc.errors(include_url=False)[0], model, shape)) from None


def _parse_json(raw: bytes, shape: str) -> Any:
    try:
        text = raw.decode("utf-8")  # JSON over HTTP is UTF-8 (RFC 8259), without guessing
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 text (byte {exc.start}); send {shape}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise BadRequest(f"the body is not valid JSON ({where}); send {shape}") from None
    except (ValueError, RecursionError):  # a number too long to read; nesting too deep
        raise BadRequest(f"the body is JSON that rota does not read; send {shape}") from None


async def _capped_body(request: Request, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, "too_large", f"the body is over {max_bytes} bytes; send less")
    return bytes(body)


# -- messages of our own for pydantic's errors -------------------------------------------------

# What a field takes, by its Python type; and what a caller sent, by the parsed JSON's type.
_EXPECTED: dict[Any, str] = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
    dict: "an object",
    list: "a list",
    Any: "any JSON value",
}
_SENT: dict[type, str] = {
    str: "a string",
    bool: "true or false",
    int: "a number",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _json_kind(value: Any) -> str:
    return _SENT.get(type(value), "a value")


def _expected(annotation: Any) -> str:
    """`str | None` -> "a string or null"."""
    if get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in get_args(annotation))
    return _EXPECTED.get(get_origin(annotation) or annotation, "a JSON value")


def _shape(model: type[pydantic.BaseModel]) -> str:
    fields = ", ".join(f'"{name}": {_expected(f.annotation)}' for name, f in _fields(model))
    return f"a JSON object like {{{fields}}}"


def _fields(model: type[pydantic.BaseModel]) -> list[tuple[str, Any]]:
    return list(model.model_fields.items())


def _describe(error: Mapping[str, Any], model: type[pydantic.BaseModel], shape: str) -> str:
    where = shown(".".join(str(part) for part in error["loc"])) or "the body"
    known = dict(_fields(model))
    if error["type"] == "extra_forbidden":
        return f"the body has a field '{where}' that it does not take; send {shape}"
    if error["type"] == "missing":
        return f"the body needs the field {where}; send {shape}"
    top = str(error["loc"][0]) if error["loc"] else ""
    expected = _expected(known[top].annotation) if top in known else "something else"
    return f"{where} must be {expected}, not {_json_kind(error.get('input'))}; send {shape}"
