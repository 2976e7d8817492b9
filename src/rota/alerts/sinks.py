"""Sending one alert to one sink: the body each kind of sink takes, the Standard Webhooks
signature, and secrets looked up by name when the alert is sent."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from ..clock import iso
from ..durations import seconds
from ..errors import ConfigError, RotaError
from ..scheduling.webhooks import sign_standard
from ..storage.alerts import AlertRecord
from .config import Sink, SlackSink

SecretLookup = Callable[[str], str | None]
"""A secret's value by name (None: there is none)."""


class DeliveryFailed(RotaError):
    """The sink did not accept the alert (the delivery run retries it with backoff)."""


def env_secrets(name: str) -> str | None:
    return os.environ.get(name) or None


def body(alert: AlertRecord) -> dict[str, Any]:
    """What a generic webhook receives: the alert as JSON."""
    return {
        "type": "rota.alert",
        "id": alert.id,
        "key": alert.key,
        "kind": alert.kind,
        "subject": alert.subject,
        "text": alert.text,
        "detail": dict(alert.detail),
        "created_at": iso(alert.created_at),
    }


def deliver(sink: Sink, alert: AlertRecord, *, now: float, secrets: SecretLookup) -> int:
    """POST the alert; returns the status, or raises DeliveryFailed for anything but 2xx.
    The webhook-id is the alert's id, the same on every retry, so a receiver can drop a
    delivery it has seen."""
    if isinstance(sink, SlackSink):
        url = sink.url or _secret(sink, sink.url_secret or "", secrets)
        raw = json.dumps({"text": alert.text}).encode()
        headers = {"content-type": "application/json"}
    else:
        url = sink.url
        raw = json.dumps(body(alert), separators=(",", ":")).encode()
        key = _secret(sink, sink.secret, secrets)
        try:
            headers = {
                "content-type": "application/json",
                **sign_standard(key, alert.id, now, raw),
            }
        except ConfigError:
            raise DeliveryFailed(
                f"sink {sink.name!r}: the secret {sink.secret} is not a valid whsec_ secret"
            ) from None
    return _post(sink, url, raw, headers)


def _post(sink: Sink, url: str, raw: bytes, headers: dict[str, str]) -> int:
    import httpx  # noqa: PLC0415  # heavy: httpx imports its own CLI (click, rich, pygments)

    timeout = seconds(sink.timeout, what="sink timeout")
    try:
        response = httpx.post(url, content=raw, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        # The URL may be a secret (Slack's): name the sink, not the address.
        raise DeliveryFailed(f"sink {sink.name!r} unreachable: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(
            f"sink {sink.name!r} answered {response.status_code}: {response.text[:200]!r}"
        )
    return response.status_code


def _secret(sink: Sink, name: str, secrets: SecretLookup) -> str:
    value = secrets(name)
    if not value:
        raise DeliveryFailed(
            f"sink {sink.name!r}: no secret named {name} (set the environment variable, or "
            f"`rota secrets set {name} --grant rota:alerts`)"
        )
    return value
