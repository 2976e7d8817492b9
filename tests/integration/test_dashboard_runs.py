"""The Runs list and the Run page through Starlette's TestClient, on SQLite and PostgreSQL:
filters and keyset pages, bulk cancel and retry (CSRF, roles, a bad form changes nothing),
the run page's header, failure, chain, trace totals, redaction, progressive steps and replay,
and a 400 naming the parameter for every bad query string (never a 5xx)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dashboard_client import csrf_of
from starlette.testclient import TestClient

from rota import Agent, App, FakeClock, ToolContext, tool
from rota.api import create_api
from rota.cost import Price
from rota.identity import admin, tokens
from rota.model import RunFilter, RunState
from rota.redaction import redactor
from rota.storage.capped import CappedRun
from rota.testing import ScriptedModel, answer, call

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
Client = Callable[[str], TestClient]


@tool(scopes=["crm:read"])
def lookup(ctx: ToolContext, customer_id: str) -> str:
    """Look up a customer."""
    return f"plan of {customer_id}: gold"


@tool(scopes=["crm:write"])
def wipe(ctx: ToolContext, customer_id: str) -> str:
    """Delete a customer (the agent lacks crm:write)."""
    return "wiped"


@tool(requires_approval=True, approvers="finance")
def refund(ctx: ToolContext, customer_id: str, amount_cents: int) -> str:
    """Refund, once a human approves."""
    return f"refunded {amount_cents}"


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    built = App(database_url, clock=FakeClock(START))
    built.principal("root", kind="user", roles=["admin"])
    built.principal("ops", kind="user", roles=["operator"])
    built.principal("watcher", kind="user", roles=["viewer"])
    built.principal("svc-agent", kind="service", scopes=["crm:read"])

    @built.job
    def hello(ctx: Any, payload: Any) -> str:
        return "hi"

    @built.job(retries=0)
    def boom(ctx: Any, payload: Any) -> None:
        raise RuntimeError("report database unreachable")

    @built.workflow(retries=0)
    async def ingest(ctx: Any, payload: Any) -> None:
        for n in range(int(payload.get("steps", 2))):
            await ctx.step(f"part{n}", str, n)
        if payload.get("fail"):
            await ctx.step("load", _load)

    model = ScriptedModel(
        "runs-triager",
        script=[
            call("lookup", customer_id="acme"),
            call("wipe", customer_id="acme"),
            call("refund", customer_id="acme", amount_cents=1200),
            answer("refunded acme"),
        ],
    )
    triager = Agent(
        "triager", model, "Settle it.", tools=[lookup, wipe, refund], price=Price(3, 15)
    )
    built.agent(triager, run_as="svc-agent")

    def chatty(request: Any, turn: int) -> Any:
        return call("lookup", customer_id=f"c{turn}") if turn <= 60 else answer("done")

    chatty_model = ScriptedModel("runs-chatty", fn=chatty)
    built.agent(
        Agent(
            "chatty", chatty_model, "Look.", tools=[lookup], max_steps=100, max_repeated_calls=100
        ),
        run_as="svc-agent",
    )

    @built.job(escalate_to="triager")
    def intake(ctx: Any, payload: Any) -> Any:
        return ctx.escalate(payload, reason="a refund needs a person")

    try:
        yield built
    finally:
        built.close()


def _load() -> None:
    raise RuntimeError("constraint violated: duplicate key acme")


@pytest.fixture
def signed(app: App) -> Iterator[Client]:
    """`signed(name)`: a TestClient signed in as that principal."""
    opened: list[TestClient] = []

    def sign_in(name: str) -> TestClient:
        token = tokens.issue(app.store, name, admin.Actor("root", "human")).token
        client = TestClient(create_api(app), follow_redirects=False)
        client.__enter__()
        opened.append(client)
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        assert client.post("/login", data={"csrf": csrf[1], "token": token}).status_code == 303
        return client

    yield sign_in
    for client in opened:
        client.__exit__(None, None, None)


def text(answer: Any) -> str:
    """The page's (or a piece of HTML's) text, entities decoded, whitespace squeezed."""
    page = answer if isinstance(answer, str) else answer.text
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def escalated(app: App) -> tuple[str, str]:
    """A job run that escalated to the agent, whose refund root approved: (job, agent) ids."""
    job = app.run_now("intake", {"customer_id": "acme"})
    app.drain()
    agent = job.result()["run_id"]
    (request,) = app.store.approvals()
    app.store.decide_approval(request.id, "root", True, "fine", app.clock.now(), via="test")
    app.drain()
    assert app.get_run(agent).state == RunState.SUCCEEDED
    return job.id, agent


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "names"),
    [
        ("/runs?state=nope", "query parameter state must be one of"),
        ("/runs?kind=robot", "query parameter kind must be one of job, workflow, agent"),
        ("/runs?since=yesterday", "query parameter since must be an ISO 8601 time"),
        ("/runs?until=2026-13-45", "query parameter until must be an ISO 8601 time"),
        ("/runs?cursor=not%20an%20id", "query parameter cursor must be the run id"),
        ("/runs?q=%00", "query parameter q must be text of at most 200 characters"),
        ("/runs?name=" + "x" * 300, "query parameter name must be text of at most 200"),
        ("/runs?page=2", "unknown query parameter 'page'"),
        ("/runs?state=FAILED&state=RUNNING", "query parameter state is given more than once"),
        ("/runs/not%20an%20id", "path parameter id must be a run id"),
        ("/runs/abc/steps?after=-1", "query parameter after must be a whole number"),
        ("/runs/abc/calls?agent=first", "query parameter agent must be a whole number"),
        ("/runs/abc?tab=trace", "unknown query parameter 'tab'"),
        ("/runs?state=dropped&kind=job", "state=dropped takes only the filters name and since"),
        ("/runs?state=dropped&cursor=abc", "state=dropped takes only the filters name and"),
    ],
)
def test_a_bad_query_is_a_400_page_naming_the_parameter(
    signed: Client, target: str, names: str
) -> None:
    answer = signed("watcher").get(target)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    assert names in text(answer)


def test_an_unknown_run_is_a_404_page_pointing_at_the_runs(signed: Client) -> None:
    answer = signed("watcher").get("/runs/01a2459f-6484-5aa0-dce2-c64967492e67")
    assert answer.status_code == 404
    assert "no run 01a2459f-6484-5aa0-dce2-c64967492e67; find runs on the Runs page" in text(answer)


# -- the list --------------------------------------------------------------------------------


def test_the_list_filters_and_pages_by_keyset_without_repeats(app: App, signed: Client) -> None:
    for n in range(60):
        app.run_now("hello", {"n": n})
    app.run_now("boom", {})
    app.drain()
    client = signed("watcher")

    first = client.get("/runs")
    assert first.status_code == 200
    ids = re.findall(r'data-run="([^"]+)"', first.text)
    assert len(ids) == 50
    older = re.search(r'href="(/runs\?cursor=[^"]+)" rel="next"', first.text)
    assert older is not None
    second = client.get(html.unescape(older[1]))
    rest = re.findall(r'data-run="([^"]+)"', second.text)
    assert len(rest) == 11 and not set(ids) & set(rest)
    assert 'rel="next"' not in second.text and 'rel="first"' in second.text
    assert ids + rest == [r.id for r in app.store.list_runs(RunFilter(limit=100))]

    failed = client.get("/runs?state=FAILED&kind=job&name=boom&q=DATABASE&since=2027-01-15")
    assert re.findall(r'data-run="([^"]+)"', failed.text) == [
        r.id for r in app.store.list_runs(RunFilter(states=("FAILED",)))
    ]
    none = client.get("/runs?name=boom&state=SUCCEEDED")
    assert "No run matches these filters." in text(none)
    blank = client.get("/runs?name=&kind=&state=&principal=&trigger=&since=&until=&q=")
    assert len(re.findall(r'data-run="', blank.text)) == 50  # an empty field is no filter


def test_an_empty_list_says_how_to_fire_a_run(signed: Client) -> None:
    page = text(signed("watcher").get("/runs"))
    assert "No runs yet." in page and "rota run boom" in page


def test_bulk_cancel_and_retry_for_an_operator(app: App, signed: Client) -> None:
    queued = [app.run_now("hello", {"n": n}).id for n in range(2)]
    done = app.run_now("boom", {})
    client = signed("ops")
    page = client.get("/runs")
    form = {"csrf": csrf_of(page.text), "action": "cancel", "back": "/runs?state=ENQUEUED"}
    form |= {f"pick-{i}": "1" for i in queued}
    answer = client.post("/runs/bulk", data=form)
    assert answer.status_code == 200
    assert "Cancelled 2 of 2 runs" in text(answer)
    assert 'href="/runs?state=ENQUEUED"' in answer.text
    assert all(app.get_run(i).state == RunState.CANCELLED for i in queued)
    cancels = app.store.audit_records(action="run.cancelled")
    assert sorted(r.run_id or "" for r in cancels) == sorted(queued)
    assert {r.actor for r in cancels} == {"ops"}

    app.drain()  # boom fails
    form = {"csrf": csrf_of(page.text), "action": "retry", f"pick-{done.id}": "1"}
    form[f"pick-{queued[0]}"] = "1"
    answer = client.post("/runs/bulk", data=form)
    assert "Retried 2 of 2 runs" in text(answer)
    assert app.get_run(done.id).state == RunState.ENQUEUED
    form = {"csrf": csrf_of(page.text), "action": "cancel", f"pick-{queued[1]}": "1"}
    refused = text(client.post("/runs/bulk", data=form))
    assert "Cancelled 0 of 1 run" in refused and "nothing to cancel" in refused


def test_bulk_actions_refuse_without_the_csrf_token_and_change_nothing(
    app: App, signed: Client
) -> None:
    run = app.run_now("hello", {})
    client = signed("ops")
    for token in (None, "forged"):
        form = {"action": "cancel", f"pick-{run.id}": "1"}
        if token:
            form["csrf"] = token
        answer = client.post("/runs/bulk", data=form)
        assert answer.status_code == 403
        assert "security token is missing or wrong" in text(answer)
        assert app.get_run(run.id).state == RunState.ENQUEUED


def test_a_viewer_sees_the_buttons_disabled_and_is_refused(app: App, signed: Client) -> None:
    run = app.run_now("hello", {})
    client = signed("watcher")
    page = client.get("/runs")
    assert re.search(
        r'value="cancel" disabled title="cancelling runs needs the operator', page.text
    )
    form = {"csrf": csrf_of(page.text), "action": "cancel", f"pick-{run.id}": "1"}
    answer = client.post("/runs/bulk", data=form)
    assert answer.status_code == 403
    assert "watcher lacks the role 'operator'" in text(answer)
    assert app.get_run(run.id).state == RunState.ENQUEUED
    assert app.store.audit_records(action="auth.denied")[0].actor == "watcher"


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"action": "delete"}, "form field action must be one of cancel, retry"),
        ({"action": "cancel", "back": "https://evil.example"}, "form field back must be a /runs"),
        ({"action": "cancel", "pick-x y": "1"}, "unknown form field 'pick-x y'"),
        ({"action": "cancel", "run": "abc"}, "unknown form field 'run'"),
        ({"action": "cancel"}, "tick at least one run first"),
    ],
)
def test_a_bad_bulk_form_is_a_400_naming_the_field_and_changes_nothing(
    app: App, signed: Client, fields: dict[str, str], names: str
) -> None:
    run = app.run_now("hello", {})
    client = signed("ops")
    form = {"csrf": csrf_of(client.get("/runs").text), f"pick-{run.id}": "1", **fields}
    if fields == {"action": "cancel"}:
        del form[f"pick-{run.id}"]
    answer = client.post("/runs/bulk", data=form)
    assert answer.status_code == 400, answer.text[:300]
    assert names in text(answer)
    assert app.get_run(run.id).state == RunState.ENQUEUED


def test_too_many_ticked_runs_are_refused(app: App, signed: Client) -> None:
    client = signed("ops")
    form = {"csrf": csrf_of(client.get("/runs").text), "action": "retry"}
    form |= {f"pick-run-{n}": "1" for n in range(51)}
    answer = client.post("/runs/bulk", data=form)
    assert answer.status_code == 400 and "tick at most 50 runs at once" in text(answer)


# -- the run page ----------------------------------------------------------------------------


def test_an_escalated_agent_run_shows_its_trace_chain_and_totals(app: App, signed: Client) -> None:
    job_id, agent_id = escalated(app)
    page = signed("watcher").get(f"/runs/{agent_id}")
    assert page.status_code == 200
    shown = text(page)
    calls = app.store.model_calls(agent_id)
    assert len(calls) == 4
    total_in = sum(c.input_tokens for c in calls)
    total_cost = sum(c.cost_pusd for c in calls) / 10**12
    assert f"agent (top level) · 4 model calls · {total_in:,} in" in shown
    assert f"${total_cost:.4f}" in shown
    for tool_name in ("lookup", "wipe", "refund"):
        assert f"tool {tool_name}" in shown
    assert "plan of acme: gold" in shown
    assert re.search(r"tool wipe · \S+ denied", shown)
    assert "approved by root" in shown and "root approved tool:refund/approval" in shown
    chain = re.search(r'<ol class="chain">(.*?)</ol>', page.text, re.S)
    assert chain is not None
    assert f'href="/runs/{job_id}">intake' in chain[1]
    assert "root: " in text(chain[1]) and "state-human" in chain[1]
    assert "started by escalation, as svc-agent" in shown
    job_page = signed("watcher").get(f"/runs/{job_id}")
    assert f'href="/runs/{agent_id}">triager' in job_page.text


def test_a_failed_run_shows_its_error_and_the_failed_step(app: App, signed: Client) -> None:
    run = app.run_now("ingest", {"steps": 2, "fail": True})
    app.drain()
    page = signed("watcher").get(f"/runs/{run.id}")
    failure = re.search(r'<section class="failure" role="alert".*?</section>', page.text, re.S)
    assert failure is not None
    shown = text(failure[0])
    assert "Failed at step load" in shown
    assert "constraint violated: duplicate key acme" in shown
    assert "RuntimeError" in shown


def test_payload_and_result_show_secrets_redacted(app: App, signed: Client) -> None:
    run = app.run_now("hello", {"api_key": "sk-live-4242-abcd"})
    app.drain()
    redactor.register("CRM_KEY", "sk-live-4242-abcd")  # known to the server, after it stored
    page = signed("watcher").get(f"/runs/{run.id}").text
    assert "sk-live-4242-abcd" not in page
    assert "[redacted:CRM_KEY]" in page


def test_a_long_run_renders_its_steps_in_pages(app: App, signed: Client) -> None:
    run = app.run_now("ingest", {"steps": 450})
    app.drain()
    client = signed("watcher")
    page = client.get(f"/runs/{run.id}").text
    assert page.count('class="bar-row') == 100
    more = re.search(r'hx-get="(/runs/[^"]+/steps\?after=\d+)" hx-trigger="revealed"', page)
    assert more is not None
    seen = 100
    url: str | None = more[1]
    while url:
        fragment = client.get(url)
        assert fragment.status_code == 200
        seen += fragment.text.count('class="bar-row')
        found = re.search(r'hx-get="(/runs/[^"]+/steps\?after=\d+)"', fragment.text)
        url = found[1] if found else None
    assert seen == 450


def test_replay_reports_identical_for_an_operator_and_is_refused_to_a_viewer(
    app: App, signed: Client
) -> None:
    _, agent_id = escalated(app)
    answer = signed("ops").get(f"/runs/{agent_id}/replay")
    assert answer.status_code == 200
    assert "Identical: the current code makes the same 4 model requests" in text(answer)
    assert signed("watcher").get(f"/runs/{agent_id}/replay").status_code == 403
    hello = app.run_now("hello", {})
    app.drain()
    refused = signed("ops").get(f"/runs/{hello.id}/replay")
    assert "Not replayable: run" in text(refused) and "only agent runs" in text(refused)


def test_a_long_agent_runs_trace_is_read_after_the_page_in_pages(app: App, signed: Client) -> None:
    run = app.run_now("chatty", {})
    app.drain()
    assert len(app.store.steps(run.id)) == 121  # 61 model calls, 60 tool calls
    client = signed("watcher")
    page = client.get(f"/runs/{run.id}").text
    assert f'hx-get="/runs/{run.id}/trace" hx-trigger="load"' in page
    assert "the first 100 rows; more load as you scroll" in text(page)
    trace = client.get(f"/runs/{run.id}/trace").text
    assert "61 model calls" in text(trace)
    assert trace.count('class="trace-call"') == 20
    more = re.search(r'hx-get="(/runs/[^"]+/calls\?agent=0&amp;start=20)"', trace)
    assert more is not None
    rest = client.get(html.unescape(more[1])).text
    assert rest.count('class="trace-call"') == 41 and "hx-get" not in rest
    assert "c60" in rest
    missing = client.get(f"/runs/{run.id}/calls?agent=3&start=20")
    assert missing.status_code == 404 and "has no agent number 3" in text(missing)


def test_a_reclaimed_run_says_so_in_its_header_and_timeline(app: App, signed: Client) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    run = app.run_now("hello", {})
    (claimed,) = app.store.claim("crashed-worker", ["hello"], 1, clock.now(), 30.0)
    assert claimed.id == run.id
    clock.advance(31)  # the worker stopped: its lease runs out
    assert app.store.reap_expired(clock.now(), max_reclaims=3) == 1
    app.drain()
    assert app.get_run(run.id).reclaims == 1
    shown = text(signed("watcher").get(f"/runs/{run.id}"))
    assert "2 executions, reclaimed 1 time after a worker crashed" in shown
    assert "Reclaimed 1 time after its worker stopped responding" in shown


def test_state_dropped_lists_the_runs_a_cap_dropped_with_their_reasons(
    app: App, signed: Client
) -> None:
    app.store.record_capped(
        [
            CappedRun("d-1", "hello", "ops", "schedule", "dropped", "per_day 5 used up", START),
            CappedRun("d-2", "boom", None, "manual", "dropped", "cooldown 1h", START + 1),
            CappedRun("d-3", "hello", "ops", "schedule", "deferred", "per_hour 2", START + 2),
        ]
    )
    client = signed("watcher")
    page = client.get("/runs?state=dropped&name=hello&since=2027-01-15")
    assert page.status_code == 200
    assert re.findall(r'data-dropped="([^"]+)"', page.text) == ["d-1"]
    assert "per_day 5 used up" in text(page)
    every = client.get("/runs?state=dropped")
    assert re.findall(r'data-dropped="([^"]+)"', every.text) == ["d-2", "d-1"]
    none = client.get("/runs?state=dropped&name=nightly")
    assert "No run was dropped by a cap with these filters." in text(none)


def test_a_pages_event_stream_starts_when_the_page_was_rendered(app: App, signed: Client) -> None:
    page = signed("watcher").get("/runs").text
    found = re.search(r'data-live-url="/live\?last_event_id=(\d{19})\.run\.page\.0"', page)
    assert found is not None
    assert int(found[1]) == round(app.clock.now() * 1e6)  # the fake clock stood still
