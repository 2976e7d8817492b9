"""`POST /hooks/{name}`: webhook deliveries in, runs out.

The body is read under the hook's `max_body` cap (a larger Content-Length is refused before
reading, a streamed body is cut off once it passes the cap), then `App.receive_webhook`
verifies it, stores the event and enqueues its runs in one transaction, before we answer:

- 202 new delivery: `{"event_id", "runs", "duplicate": false}`
- 200 a delivery id seen before (replay protection): `"duplicate": true`, nothing enqueued
- 4xx/500 refused (`WebhookRejected`): `{"error": reason, "message"}`, and recorded, so
  operators can see it with `rota events rejected`; hostile input (a name, header or body
  that no hook could accept) is a 4xx like any other refusal, recorded with its text escaped
- 503 the database did not answer: nothing was stored, the sender should retry
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..app import Emitted
from ..errors import UnknownWebhook
from ..ids import new_id
from ..model import Rejection
from ..observability.metrics import observe_rejection
from ..scheduling.webhooks import MAX_DELIVERY_ID, OnWebhook, WebhookRejected
from .context import DB_ERRORS, ApiContext, context, database_unavailable, problem, shown
from .openapi import returns
from .schemas import HookAccepted

log = logging.getLogger("rota.api")

_MAX_RECORDED_NAME = 200  # an unknown hook's name comes from the URL: keep what we store small
_MAX_RECORDED_SIZE = 2**31 - 1  # body_bytes is a 32-bit column; a claimed size may be larger
_CONTENT_LENGTH = re.compile(r"[0-9]+")  # ASCII digits; str.isdigit() also takes "²"
# A Content-Length with more digits is over any cap, and int() may not even read it.
_HUGE_DIGITS = 18
_HUGE = 10**_HUGE_DIGITS
# C0 controls and DEL; bytes past 0x7f are legal in a header (Starlette reads them as Latin-1)
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/hooks/{name}", receive, methods=["POST"])]


class _Refused(WebhookRejected):
    """Refused before `receive_webhook` saw it; `size` is what we know of the body's length."""

    def __init__(self, status: int, reason: str, message: str, size: int) -> None:
        super().__init__(status, reason, message)
        self.size = size


@returns(
    HookAccepted,
    status=202,
    more={200: HookAccepted},  # a delivery id seen before: nothing stored or run again
    public=True,
    errors=(401, 403, 409, 413, 422),
)
async def receive(request: Request) -> Response:
    """Deliver a webhook: verified, stored as an event, and its runs enqueued."""
    ctx = context(request)
    name: str = request.path_params["name"]
    headers = dict(request.headers.items())  # lower-case names, as verify() expects
    try:
        hook = _hook(ctx, name)
        _check_headers(headers)
        body = await _read_body(request, hook)
    except _Refused as exc:
        await _record(ctx, name, headers, exc)
        known = name if name in ctx.app.webhooks() else None  # a URL's name is no label
        observe_rejection(known, exc.status, exc.reason)
        log.info("webhook %s refused (%s %s): %s", shown(name), exc.status, exc.reason, exc)
        # Closing the connection stops the server from reading (and discarding) the rest
        # of a body we refused without reading it.
        close = {"Connection": "close"} if exc.status == 413 else None
        return problem(exc.status, exc.reason, exc.message, headers=close)
    except ClientDisconnect:
        log.info("webhook %s: the sender hung up before the body arrived", shown(name))
        return Response(status_code=400)  # nobody is left to read it

    try:
        emitted = await ctx.db(ctx.app.receive_webhook, name, headers, body)
    except WebhookRejected as exc:  # already recorded by receive_webhook
        observe_rejection(name, exc.status, exc.reason)
        log.info("webhook %s refused (%s %s): %s", shown(name), exc.status, exc.reason, exc)
        return problem(exc.status, exc.reason, exc.message)
    except UnknownWebhook as exc:  # the app's definitions changed under us: rare
        return problem(404, "unknown_hook", str(exc))
    except DB_ERRORS as exc:
        return database_unavailable(
            request,
            exc,
            "the database did not answer, so the delivery was not stored; send it again later",
            headers={"Retry-After": "5"},
        )
    except Exception:
        # e.g. a user's filter function raised; the event and runs are stored together or
        # not at all, so nothing is half-stored.
        log.exception("webhook %s: the delivery could not be processed", name)
        return problem(
            500,
            "internal_error",
            "the delivery could not be processed and was not stored; see the server log",
        )
    return _accepted(name, emitted)


def _hook(ctx: ApiContext, name: str) -> OnWebhook:
    hooks = ctx.app.webhooks()
    if name in hooks:
        return hooks[name]
    if name.isprintable() and len(name) <= _MAX_RECORDED_NAME:
        raise _Refused(404, "unknown_hook", str(UnknownWebhook(name, list(hooks))), 0)
    # Not a name any hook could have: say so without echoing all of it.
    known = ", ".join(sorted(hooks)) or "none are defined"
    raise _Refused(404, "unknown_hook", f"no webhook named '{shown(name)}'; known: {known}", 0)


def _declared_length(request: Request) -> int | None:
    """Content-Length, if sent; _HUGE stands for any length with more digits than that."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    digits = declared.strip()
    if not _CONTENT_LENGTH.fullmatch(digits):
        raise _Refused(
            400,
            "invalid_header",
            f"Content-Length must be a number of bytes, got '{shown(declared, 40)}'",
            0,
        )
    return int(digits) if len(digits) <= _HUGE_DIGITS else _HUGE


def _check_headers(headers: Mapping[str, str]) -> None:
    """HTTP servers refuse control characters in headers; an ASGI server that does not would
    hand us a delivery id that PostgreSQL cannot store (NUL), so refuse it here."""
    for name, value in headers.items():
        if _HEADER_CONTROL.search(name) or _HEADER_CONTROL.search(value):
            raise _Refused(
                400,
                "invalid_header",
                f"header '{shown(name)}' holds a control character; header names and values "
                "must be printable text",
                0,
            )


async def _read_body(request: Request, hook: OnWebhook) -> bytes:
    """The whole body, or _Refused as soon as it is known to be over the hook's cap."""
    cap = hook.max_body
    declared = _declared_length(request)
    if declared is not None and declared > cap:
        size = f"at least {_HUGE}" if declared == _HUGE else str(declared)
        raise _Refused(
            413,
            "too_large",
            f"body is {size} bytes (Content-Length); webhook {hook.name!r} accepts "
            f"at most {cap} (raise max_body in on_webhook to allow more)",
            declared,
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:  # stop reading: a sender that lied or streams without a length
            raise _Refused(
                413,
                "too_large",
                f"body is over {cap} bytes (stopped reading at {len(body)}); webhook "
                f"{hook.name!r} accepts at most {cap} (raise max_body in on_webhook to allow "
                "more)",
                len(body),
            )
    return bytes(body)


async def _record(ctx: ApiContext, name: str, headers: Mapping[str, str], exc: _Refused) -> None:
    delivery = headers.get("webhook-id") or headers.get("x-github-delivery")
    rejection = Rejection(
        new_id(),
        shown(name, _MAX_RECORDED_NAME),  # escaped: PostgreSQL stores no NUL
        exc.status,
        exc.reason,
        exc.message,
        shown(delivery, MAX_DELIVERY_ID) if delivery else None,
        min(exc.size, _MAX_RECORDED_SIZE),
        ctx.app.clock.now(),
    )
    try:
        await ctx.db(lambda: ctx.app.store.record_rejection(rejection))
    except DB_ERRORS as failure:  # the refusal stands; only its record is lost
        log.warning(
            "could not record a refused delivery to webhook %s: %s: %s",
            shown(name),
            type(failure).__name__,
            shown(str(failure), 200),
        )


def _accepted(name: str, emitted: Emitted) -> JSONResponse:
    runs = [run.id for run in emitted.runs]
    if not emitted.created:
        message = (
            f"this delivery id was received before, as event {emitted.event_id}; "
            "it was not stored or run again"
        )
        return JSONResponse(
            {"event_id": emitted.event_id, "runs": runs, "duplicate": True, "message": message}
        )
    log.info("webhook %s: event %s, %d run(s) enqueued", name, emitted.event_id, len(runs))
    if runs:
        message = f"stored as event {emitted.event_id}; enqueued {len(runs)} run(s)"
    else:
        message = (
            f"stored as event {emitted.event_id}; no job or workflow matched its payload, "
            "so no run was enqueued"
        )
    return JSONResponse(
        {"event_id": emitted.event_id, "runs": runs, "duplicate": False, "message": message},
        status_code=202,
    )
