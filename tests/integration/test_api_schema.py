"""/openapi.json against a live `rota serve` on loopback (uvicorn in a thread), on SQLite and
PostgreSQL: schemathesis generates requests from the document, valid and invalid, with an
admin token and without one, and every answer must be no 5xx, a status the document lists,
and a body its schema describes. The document itself: every `/api` route declares its answer,
the error body is published, and docs/api.md lists exactly the document's routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from live_api import serving
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route
from starlette.testclient import TestClient

from rota import Agent, App, ToolContext, on_event, tool
from rota.api import create_api
from rota.api.openapi import build_document, returned, returns
from rota.identity import admin, tokens
from rota.testing import ScriptedModel, answer, call

DOCS = Path(__file__).parents[2] / "docs" / "api.md"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 8  # per operation, mode and caller: enough to reach every refusal path


def seeded(database_url: str) -> App:
    """An app with something behind every route: runs of each kind, an approval, events."""
    app = App(database_url)
    app.principal("root", roles=["admin"])
    app.principal("svc", kind="service", scopes=["crm:read"])

    @app.job(trigger=on_event("invoice.paid"))
    def book(ctx: Any, event: Any) -> Any:
        return event

    @app.workflow
    async def refund(ctx: Any, payload: Any) -> Any:
        return (await ctx.approval("Refund?", approvers="finance", timeout="1d")).approved

    @tool(scopes=["crm:read"])
    def lookup(ctx: ToolContext, customer_id: str) -> str:
        """Look up a customer."""
        return "gold"

    model = ScriptedModel("schema", script=[call("lookup", customer_id="acme"), answer("ok")])
    app.agent(Agent("reviewer", model, "Review.", tools=[lookup]), run_as="svc")
    app.emit("invoice.paid", {"id": 1})
    app.run_now("refund", {})
    app.run_now("reviewer", {})
    app.drain()
    return app


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    app = seeded(database_url)
    try:
        yield app
    finally:
        app.close()


def test_live_server_answers_as_its_document_says(app: App) -> None:
    token = tokens.issue(app.store, "root", admin.Actor("root", "human")).token
    callers = {"admin": {"Authorization": f"Bearer {token}"}, "anonymous": {}}
    failures: list[str] = []
    with serving(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 20
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for who, headers in callers.items():
                    if operation.path == "/api/stream" and who == "admin":
                        continue  # an open stream never ends: test_api_stream.py reads it
                    failures += drive(operation, mode, url, headers, f"{who} {mode.value}")
    assert not failures, "\n\n".join(failures[:10])
    # a token is never echoed: nothing it sent came back with its secret
    assert token not in str(failures)


def drive(
    operation: Any, mode: GenerationMode, url: str, headers: dict[str, str], who: str
) -> list[str]:
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        try:
            case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=30)
        except AssertionError as exc:  # schemathesis' failures; collected, not shrunk
            found.append(f"{operation.method.upper()} {operation.path} ({who}): {exc}")
        except Exception as exc:  # a grouped failure or a transport error
            found.append(f"{operation.method.upper()} {operation.path} ({who}): {exc!r:.2000}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid: a route that takes no parameters
        assert mode == GenerationMode.NEGATIVE, operation.path
    return found[:3]


# -- the document ------------------------------------------------------------------------------


@pytest.fixture
def document(sqlite_url: str) -> Iterator[dict[str, Any]]:
    app = App(sqlite_url)
    try:
        with TestClient(create_api(app)) as client:
            answer_ = client.get("/openapi.json")
            assert answer_.status_code == 200
            yield answer_.json()
    finally:
        app.close()


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}


def test_every_api_route_declares_its_answer(sqlite_url: str) -> None:
    app = App(sqlite_url)
    try:
        undeclared = [
            f"{sorted(r.methods or ())} {r.path}"
            for r in create_api(app).routes
            if isinstance(r, Route) and r.path.startswith("/api/") and returned(r.endpoint) is None
        ]
    finally:
        app.close()
    assert undeclared == [], "add @returns (api/openapi.py) to these endpoints"


def test_the_document_publishes_the_error_body(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message"}
    published = document["components"]["responses"]
    for code in ("400", "401", "403", "404", "409", "413", "422", "503"):
        assert published[code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    runs = document["paths"]["/api/runs/{id}"]["get"]
    assert {"200", "400", "401", "403", "404", "503"} <= set(runs["responses"])
    assert runs["security"] == [{"bearer": []}]
    fire = document["paths"]["/api/jobs/{name}/runs"]["post"]
    assert "413" in fire["responses"] and "requestBody" in fire
    names = [p["name"] for p in document["paths"]["/api/runs"]["get"]["parameters"]]
    assert {"name", "kind", "state", "principal", "trigger", "since", "until", "error"} <= set(
        names
    )
    assert {"cursor", "limit"} <= set(names)


def test_docs_list_exactly_the_documented_routes(document: dict[str, Any]) -> None:
    row = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| (/\S*) \|", re.MULTILINE)
    listed = set(row.findall(DOCS.read_text()))
    documented = operations(document)
    assert sorted(documented - listed) == [], "routes missing from docs/api.md"
    assert sorted(listed - documented) == [], "docs/api.md lists routes the API does not serve"


def test_two_models_with_one_name_are_refused() -> None:
    class Thing(pydantic.BaseModel):
        a: int

    first = Thing

    class Thing(pydantic.BaseModel):  # type: ignore[no-redef]
        b: str

    @returns(first)
    async def one(request: Any) -> Any: ...

    @returns(Thing)
    async def two(request: Any) -> Any: ...

    with pytest.raises(ValueError, match="two API models named 'Thing'"):
        build_document([Route("/a", one), Route("/b", two)])
