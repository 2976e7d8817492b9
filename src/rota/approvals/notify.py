"""Telling people about new approval requests: a Slack-compatible webhook, delivered by rota.

`App(approval_webhook="https://hooks.slack.com/services/...")` (or ROTA_APPROVAL_WEBHOOK_URL)
registers an internal job, `rota:approval-webhook`. Each request enqueues one run of it in
the transaction that stores the request, so an announcement is never lost, and a failed
POST is retried by rota's own queue with exponential backoff (`retries`, `backoff`). A run
that exhausts its retries stays FAILED with the error, for `rota runs retry`. The run that
asked never waits for the POST and never fails because of it.

The body is Slack's incoming-webhook JSON (`text` plus `blocks`), which Mattermost, Discord
(`/slack` endpoints), Rocket.Chat and most chat tools also accept. The URL itself is a
secret for most chat tools: it is read from the app's settings when the run posts, and never
stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..clock import iso
from ..durations import Duration, seconds
from ..errors import ConfigError, RotaError
from ..model import NewRun
from ..observability import current_traceparent
from ..storage.approval_records import ApprovalRequest

if TYPE_CHECKING:
    from ..durable import DurableContext
    from ..jobs import Registry

JOB = "rota:approval-webhook"
ENV = "ROTA_APPROVAL_WEBHOOK_URL"
_MAX_TEXT = 2900  # Slack refuses section texts over 3000 characters


@dataclass(frozen=True)
class ApprovalWebhook:
    """Where and how to announce new requests: POSTed to `url` within `timeout`, retried
    up to `retries` times, `backoff` doubling from its value (with jitter)."""

    url: str
    retries: int = 8
    backoff: Duration = "5s"
    timeout: Duration = "10s"

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"approval_webhook must be an http(s) URL, e.g. "
                f"'https://hooks.slack.com/services/...', got {self.url!r}"
            )
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError("approval webhook retries must be a whole number >= 0")
        seconds(self.backoff, what="approval webhook backoff")
        seconds(self.timeout, what="approval webhook timeout")


class WebhookFailed(RotaError):
    """The chat tool did not accept the announcement (retried by the run's retries)."""


def configured(value: str | ApprovalWebhook | None) -> ApprovalWebhook | None:
    """The webhook an App was given, else the one in ROTA_APPROVAL_WEBHOOK_URL, else None."""
    if isinstance(value, ApprovalWebhook):
        return value
    url = value if value is not None else os.environ.get(ENV)
    return ApprovalWebhook(url) if url else None


def announce_job(
    hook: ApprovalWebhook, current: Callable[[], ApprovalWebhook | None]
) -> Callable[[DurableContext, dict[str, Any]], str]:
    """The function of the job that posts announcements (registered by the App with
    `job_options(hook)`): it posts to `current()`, the app's setting when the run posts,
    else to `hook`."""

    def announce(ctx: DurableContext, body: dict[str, Any]) -> str:
        return post(current() or hook, body)

    return announce


def job_options(hook: ApprovalWebhook) -> dict[str, Any]:
    """The options (App.add) of the job that posts announcements: its name and retries."""
    return {
        "kind": "job",
        "name": JOB,
        "retries": hook.retries,
        "retry_backoff": hook.backoff,
        "timeout": seconds(hook.timeout, what="approval webhook timeout") + 5,
    }


def announcement(registry: Registry, request: ApprovalRequest) -> NewRun:
    """The run that announces `request`: at most one per request (idempotency key), in
    the trace of the run that asks (made while its span is current)."""
    run = registry.definition(JOB).new_run(
        message(request),
        now=request.created_at,
        trigger="approval",
        trigger_ref=request.id,
        idempotency_key=f"approval:{request.id}",
        parent_id=request.run_id,
    )
    return replace(run, trace_context=current_traceparent())


def post(hook: ApprovalWebhook, body: dict[str, Any]) -> str:
    """POST the body; anything but a 2xx answer raises WebhookFailed (so the run retries)."""
    import httpx  # noqa: PLC0415  # heavy: httpx imports its own CLI (click, rich, pygments)

    try:
        response = httpx.post(
            hook.url, json=body, timeout=seconds(hook.timeout, what="webhook timeout")
        )
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"approval webhook unreachable: {type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(
            f"approval webhook answered {response.status_code}: {response.text[:200]!r}"
        )
    return f"delivered ({response.status_code})"


def message(request: ApprovalRequest) -> dict[str, Any]:
    """A Slack incoming-webhook body: a plain `text` fallback and Block Kit `blocks`."""
    decide = (
        f"`rota approvals approve {request.id} --comment '...'` or "
        f"`rota approvals reject {request.id} --comment '...'`"
    )
    deadline = f"{iso(request.deadline)}" if request.deadline is not None else "none"
    fields = [
        ("Who may decide", request.who_may_decide()),
        ("Deadline", f"{deadline} (then: {request.on_timeout})"),
        ("Run", f"{request.run_name} `{request.run_id}`"),
        ("Request", f"`{request.id}`"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Approval needed"}},
        {"type": "section", "text": _mrkdwn(f"*{_cut(request.question, 2000)}*")},
        {"type": "section", "fields": [_mrkdwn(f"*{k}*\n{v}") for k, v in fields]},
    ]
    if request.context:
        context = json.dumps(request.context, indent=1, ensure_ascii=False)
        blocks.append({"type": "section", "text": _mrkdwn(f"```{_cut(context, _MAX_TEXT)}```")})
    blocks.append({"type": "context", "elements": [_mrkdwn(decide)]})
    return {
        "text": f"Approval needed: {_cut(request.question, 300)} "
        f"({request.who_may_decide()}; request {request.id})",
        "blocks": blocks,
    }


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
