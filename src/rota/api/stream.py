"""`GET /api/stream`: run and approval updates as server-sent events, resumable.

The stream polls the store, so it sees what every process does, on either database: each
poll reads the runs created, started or finished and the approvals requested or decided since
its cursor (indexed range reads, at most `BATCH` rows each) and sends one event per change:

    id: 0001767225600123456.run.started.0190a...      <- the cursor: time, kind, change, id
    event: run                                       <- or "approval"
    data: {"change": "started", "at": "...", "run": {...the run, as GET /api/runs/{id}}}

Ids sort in the order events are sent. A client that reconnects with `Last-Event-ID` (browsers'
EventSource do it themselves; or `?last_event_id=`) gets every change after that one; without
it, the stream starts now. Each poll re-reads the last `LOOKBACK_S` seconds, so a change whose
transaction committed a little after a later one is still sent (once: ids already sent are
remembered for that window); across a reconnect, a change committed more than that late may be
missed, and the event carries the whole current record, so the next one corrects it. A comment
line every `KEEPALIVE_S` keeps proxies from closing an idle stream.

A stream outlives the request that opened it, so it checks its caller again before it sends
anything `RECHECK_S` after the last check: `GET /api/stream` its token (a refusal is audited,
as any refused request is), the dashboard's `/live` its session. Once the token is revoked or
expired, the session ended, or the principal disabled or no longer a viewer, the stream ends.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..clock import iso
from ..model import Run
from ..storage.approval_records import ApprovalRequest
from .auth import authorize
from .context import ApiContext, ApiError, context
from .openapi import returns
from .params import BadRequest, Param, accepts, read_query
from .runs import run_out

POLL_S = 1.0
LOOKBACK_S = 5.0
KEEPALIVE_S = 15.0
RECHECK_S = 5.0  # how stale the caller's authorization may be when the stream sends
BATCH = 500
_EVENT_ID = re.compile(r"(\d{19})\.(run|approval)\.([a-z]+)\.([A-Za-z0-9-]{1,64})")


@dataclass(frozen=True, order=True)
class Change:
    id: str  # sorts in time order (fixed-width microseconds first)
    kind: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        body = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {body}\n\n".encode()


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/api/stream", stream, methods=["GET"])]


def event_id_param() -> Param:
    def parse(raw: str) -> str:
        if not _EVENT_ID.fullmatch(raw):
            raise ValueError(raw)
        return raw

    allowed = "the id of an event this stream sent (its `id:` line)"
    return Param(parse, allowed, schema={"type": "string", "pattern": _EVENT_ID.pattern})


@returns(None, media_type="text/event-stream")
@accepts(query={"last_event_id": event_id_param()})
async def stream(request: Request) -> Response:
    """Run and approval updates as server-sent events; resumes after `Last-Event-ID`
    (viewer)."""
    await authorize(request, "viewer")

    async def still_allowed() -> bool:
        try:
            await authorize(request, "viewer")
        except ApiError:
            return False
        return True

    return event_stream(request, read_query(request)["last_event_id"], still_allowed)


Allowed = Callable[[], Awaitable[bool]]


def event_stream(request: Request, after: str | None, allowed: Allowed | None = None) -> Response:
    """The stream after event `after` (or the Last-Event-ID header; neither: from now), for
    a caller already authorized: GET /api/stream, and the dashboard's `/live`. With
    `allowed`, the stream ends when it answers False (checked every `RECHECK_S`)."""
    # The header wins: on a reconnect it is the newest position, and an EventSource repeats
    # its first URL's ?last_event_id= (a dashboard page's: when the page was rendered).
    after = _last_event_id(request) or after
    ctx = context(request)
    start = _at(after) if after else ctx.app.clock.now()
    # Without Last-Event-ID: changes from now on (an id prefix sorts before every full id).
    floor = after or f"{round(start * 1e6):019d}"
    events = _events(request, ctx, start, floor)
    return StreamingResponse(
        events if allowed is None else _while_allowed(events, allowed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _last_event_id(request: Request) -> str | None:
    raw = request.headers.get("last-event-id")
    if raw is None or raw == "":
        return None
    if not _EVENT_ID.fullmatch(raw):
        raise BadRequest(
            "the Last-Event-ID header must be the id of an event this stream sent; "
            "leave it out to start from now"
        )
    return raw


def _at(event_id: str) -> float:
    return int(event_id[:19]) / 1e6


async def _events(
    request: Request, ctx: ApiContext, start: float, after: str
) -> AsyncGenerator[bytes, None]:
    cursor, last_sent = start, after
    sent: dict[str, float] = {}  # ids sent within the look-back window
    idle = 0.0
    yield b": rota stream\n\n"  # headers and a first byte now, so clients know it is open
    while not await request.is_disconnected():
        since = cursor - LOOKBACK_S
        runs, approvals = await ctx.db(_read, ctx, since)
        changes = _changes(runs, approvals, since)
        fresh = [c for c in changes if c.id > after and c.id not in sent]
        for change in sorted(fresh):
            sent[change.id] = _at(change.id)
            last_sent = max(last_sent, change.id)
            yield change.encode()
        if fresh:
            idle = 0.0
            cursor = max(cursor, _at(last_sent))
        sent = {k: at for k, at in sent.items() if at >= cursor - LOOKBACK_S}
        await asyncio.sleep(POLL_S)
        idle += POLL_S
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield b": keepalive\n\n"


async def _while_allowed(
    events: AsyncGenerator[bytes, None], allowed: Allowed
) -> AsyncIterator[bytes]:
    """`events`, until `allowed()` answers False: asked before a chunk is sent when the last
    answer is `RECHECK_S` old (wall time: the app's clock may be a test's fake one)."""
    checked = time.monotonic()
    try:
        async for chunk in events:
            if time.monotonic() - checked >= RECHECK_S:
                if not await allowed():
                    return
                checked = time.monotonic()
            yield chunk
    finally:
        await events.aclose()


def _read(ctx: ApiContext, since: float) -> tuple[list[Run], list[ApprovalRequest]]:
    store = ctx.app.store
    return store.runs_changed(since, BATCH), store.approvals_changed(since, BATCH)


def _changes(
    runs: Sequence[Run], approvals: Sequence[ApprovalRequest], since: float
) -> list[Change]:
    found = []
    for run in runs:
        shown = run_out(run)
        for change, at in (
            ("created", run.created_at),
            ("started", run.started_at),
            ("finished", run.finished_at),
        ):
            if at is not None and at >= since:
                data = {"change": change, "at": iso(at), "run": shown}
                found.append(Change(_id(at, "run", change, run.id), "run", data))
    for request in approvals:
        for change, at in (("requested", request.created_at), ("decided", request.decided_at)):
            if at is not None and at >= since:
                data = {"change": change, "at": iso(at), "approval": request.to_json()}
                found.append(Change(_id(at, "approval", change, request.id), "approval", data))
    return found


def _id(at: float, kind: str, change: str, object_id: str) -> str:
    return f"{max(0, round(at * 1e6)):019d}.{kind}.{change}.{object_id}"
