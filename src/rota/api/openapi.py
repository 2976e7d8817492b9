"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the routes that are mounted.

The document is built from what each endpoint declares, never written by hand, so it cannot
drift from what the server answers. A route declares three things:

    class RunPage(pydantic.BaseModel): ...            # what a 200 carries (schemas.py)

    @returns(RunPage, errors=(404,))                 # the answer; errors beyond the usual
    @accepts(query={"limit": whole_number(1, 500, default=50)}, body=None)
    async def list_runs(request: Request) -> Response:
        '''List runs, newest first.'''               # 1st paragraph: the summary

- path parameters come from the route's path: `{id}` is a string parameter;
- query parameters and the JSON body come from `@accepts` (api/params.py);
- the answer comes from `@returns(Model, status=200)`: a pydantic model or anything pydantic
  can describe (`list[Run]`, `dict[str, Any]`); `returns(None, status=204)` for no body;
  `media_type="text/event-stream"` for a stream; `more={200: Model}` for a second success;
- errors all share the `Error` schema (`{"error": code, "message": text}`). Every route may
  answer 400 and 503; one that is not `public=True` also 401 and 403; one with a path parameter
  also 404; one with a body also 413; `errors=(409, 422)` adds others.

A route without `@returns` is still listed (with an untyped answer), and a test requires every
`/api/...` route to declare one. Route models must have distinct names across modules:
building the document fails loudly when two different schemas share a name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..version import __version__
from .context import ApiContext
from .params import Accepts, accepts, declared, read_query

E = TypeVar("E", bound=Callable[..., Any])

ERROR_TEXT: dict[int, str] = {
    400: "Malformed input: the message names the parameter or field and what it takes",
    401: "No API token, or one that does not authenticate",
    403: "The token's principal lacks the role or scope this route needs",
    404: "No such resource: the message names the id",
    409: "The resource is in a state that refuses this action",
    413: "The body is larger than the route accepts",
    422: "Well-formed input that cannot be acted on",
    503: "The database did not answer; retry later",
}
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
_REF = "#/components/schemas/{model}"


class Error(pydantic.BaseModel):
    """Every error the API answers. Some add fields (a 409 may add `state`)."""

    model_config = pydantic.ConfigDict(extra="allow")

    error: str = pydantic.Field(description="A machine-readable code, e.g. not_found")
    message: str = pydantic.Field(description="What went wrong and what to do instead")


@dataclass(frozen=True)
class Returns:
    model: Any  # a type pydantic can describe, or None for no body
    status: int = 200
    errors: tuple[int, ...] = ()
    public: bool = False
    media_type: str = "application/json"
    more: Mapping[int, Any] = field(default_factory=dict)


def returns(
    model: Any,
    *,
    status: int = 200,
    errors: Sequence[int] = (),
    public: bool = False,
    media_type: str = "application/json",
    more: Mapping[int, Any] | None = None,
) -> Callable[[E], E]:
    """Declare what an endpoint answers (see the module docstring)."""

    def declare(endpoint: E) -> E:
        endpoint.returns = Returns(  # type: ignore[attr-defined]
            model, status, tuple(errors), public, media_type, dict(more or {})
        )
        return endpoint

    return declare


def returned(endpoint: object) -> Returns | None:
    found = getattr(endpoint, "returns", None)
    return found if isinstance(found, Returns) else None


def dump(model: Any, value: Any) -> Any:
    """`value` as the JSON that `model` describes (pydantic models, lists of them, ...)."""
    return pydantic.TypeAdapter(model).dump_python(value, mode="json")


# -- the route -------------------------------------------------------------------------------


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/openapi.json", openapi_json, methods=["GET"])]


@returns(dict[str, Any], public=True)
@accepts()
async def openapi_json(request: Request) -> Response:
    """This document: OpenAPI 3.1, generated from the mounted routes."""
    read_query(request)
    document = getattr(request.app.state, "openapi", None)
    if document is None:  # built once per API: the routes do not change after startup
        document = request.app.state.openapi = build_document(request.app.routes)
    return JSONResponse(document)


# -- building the document -------------------------------------------------------------------


def build_document(mounted: Sequence[BaseRoute]) -> dict[str, Any]:
    schemas = _Schemas()
    schemas.add(Error, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for path, route in _walk(mounted):
        for method in sorted(route.methods or ()):
            if method == "HEAD":  # Starlette answers HEAD for every GET
                continue
            paths.setdefault(path, {})[method.lower()] = _operation(path, route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rota",
            "version": __version__,
            "description": "rota's HTTP API. Errors share one body: {error, message}.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.found.items())),
            "responses": {
                str(code): {
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": _ref("Error")}}},
                }
                for code, text in ERROR_TEXT.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from `rota tokens create PRINCIPAL`",
                }
            },
        },
    }


def _walk(mounted: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in mounted:
        if isinstance(route, Route) and route.include_in_schema:  # not the dashboard's pages
            yield prefix + route.path, route
        elif isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)


def _operation(path: str, route: Route, schemas: _Schemas) -> dict[str, Any]:
    endpoint = route.endpoint
    takes = declared(endpoint)
    answer = returned(endpoint) or Returns(None, status=200, public=True)
    module = endpoint.__module__.rsplit(".", 1)[-1]
    names = _PATH_PARAM.findall(path)
    operation: dict[str, Any] = {
        "operationId": f"{module}.{endpoint.__name__}",
        "summary": _summary(endpoint),
        "tags": [module],
        "parameters": [*_path_parameters(names), *_query_parameters(takes)],
        "responses": _responses(answer, takes, bool(names), schemas),
    }
    if takes.body is not None:
        operation["requestBody"] = _request_body(takes.body, schemas)
    operation["security"] = [] if answer.public else [{"bearer": []}]
    return operation


def _summary(endpoint: object) -> str:
    """The first paragraph of the docstring, on one line."""
    doc = (getattr(endpoint, "__doc__", None) or "").strip()
    paragraph = doc.split("\n\n", 1)[0]
    return " ".join(paragraph.split()) or getattr(endpoint, "__name__", "")


def _path_parameters(names: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]


def _query_parameters(takes: Accepts) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": param.allowed,
            "schema": dict(param.schema),
        }
        for name, param in takes.query.items()
    ]


def _request_body(model: type[pydantic.BaseModel], schemas: _Schemas) -> dict[str, Any]:
    required = any(f.is_required() for f in model.model_fields.values())
    return {
        "required": required,
        "content": {"application/json": {"schema": schemas.add(model, "validation")}},
    }


def _responses(
    answer: Returns, takes: Accepts, has_path: bool, schemas: _Schemas
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for status, model in {answer.status: answer.model, **answer.more}.items():
        found[str(status)] = _success(status, model, answer.media_type, schemas)
    errors = {400, 503, *answer.errors}
    if not answer.public:
        errors |= {401, 403}
    if has_path:
        errors.add(404)
    if takes.body is not None:
        errors.add(413)
    for code in sorted(errors):
        found[str(code)] = {"$ref": f"#/components/responses/{code}"}
    return found


def _success(status: int, model: Any, media_type: str, schemas: _Schemas) -> dict[str, Any]:
    described: dict[str, Any] = {"description": "Success"}
    if model is None and media_type == "application/json":
        return described
    schema = {"type": "string"} if model is None else schemas.add(model, "serialization")
    described["content"] = {media_type: {"schema": schema}}
    return described


def _ref(name: str) -> str:
    return _REF.format(model=name)


class _Schemas:
    """components/schemas, filled as routes are described."""

    def __init__(self) -> None:
        self.found: dict[str, Any] = {}

    def add(self, model: Any, mode: str) -> dict[str, Any]:
        schema = pydantic.TypeAdapter(model).json_schema(
            mode=mode,  # type: ignore[arg-type]
            ref_template=_REF,
        )
        for name, definition in schema.pop("$defs", {}).items():
            self._keep(name, definition)
        if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
            self._keep(model.__name__, schema)
            return {"$ref": _ref(model.__name__)}
        return schema

    def _keep(self, name: str, definition: Any) -> None:
        if self.found.setdefault(name, definition) != definition:
            raise ValueError(
                f"two API models named {name!r} describe different schemas; rename one "
                "(every model in /openapi.json needs a distinct name)"
            )
