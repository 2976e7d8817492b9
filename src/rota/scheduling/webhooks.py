"""Webhook triggers: who may start a run over HTTP, and how we know the request is genuine.

This module is pure logic. The HTTP server mounts each `OnWebhook` at `POST /hooks/{name}`,
hands the raw headers and body to `verify()`, and turns a `WebhookRejected` into a response
with its `status`. Replay protection is not done here: `verify()` returns the delivery id and
the store uses it as the idempotency key, so a resent delivery becomes at most one run.

Schemes:

- ``standard``: Standard Webhooks 1.0 (https://www.standardwebhooks.com,
  github.com/standard-webhooks/standard-webhooks ``spec/standard-webhooks.md``). Headers
  ``webhook-id``, ``webhook-timestamp`` (integer unix seconds) and ``webhook-signature``, a
  space-separated list of ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``; any one
  valid ``v1`` signature is accepted (that is how senders rotate secrets), other versions
  (``v1a``, asymmetric) are skipped. The secret is ``whsec_<base64>``, as the spec serialises
  it, or, without that prefix, the raw bytes of the string.
- ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of body>`` with the secret's
  raw bytes; the delivery id is ``X-GitHub-Delivery``. GitHub signs no timestamp, so there
  is no freshness check; redelivery is caught by the delivery id.
- ``none``: no verification, for local development and trusted networks only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import parse_qs

from ..durations import Duration, seconds
from ..errors import ConfigError, RotaError
from ..model import Event
from .triggers import WEBHOOK_SOURCE, EventFilter, OnEvent, Trigger

__all__ = [
    "OnWebhook",
    "VerifiedDelivery",
    "WebhookRejected",
    "on_webhook",
    "sign_github",
    "sign_standard",
    "verify",
]

Scheme = Literal["standard", "github", "none"]
SCHEMES: tuple[str, ...] = ("standard", "github", "none")

SECRET_PREFIX = "whsec_"
MAX_DELIVERY_ID = 256

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_GITHUB_SIG = re.compile(r"sha256=([0-9a-fA-F]{64})")

_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_GITHUB_HEADERS = ("x-hub-signature-256", "x-github-delivery")


class WebhookRejected(RotaError):
    """A delivery was refused; the server answers with `status` and logs `reason`.

    `reason` is a short machine code (``bad_signature``, ``stale_timestamp``,
    ``future_timestamp``, ``too_large``, ``malformed_json``, ``missing_header``,
    ``invalid_header``, ``missing_secret``, ``invalid_secret``); the message is for a human and
    never contains the secret or the expected signature.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class VerifiedDelivery:
    delivery_id: str
    payload: Any


@dataclass(frozen=True)
class OnWebhook(Trigger):
    """Run once per verified delivery to ``POST /hooks/{name}`` whose payload passes the filter.

    `tolerance` is in seconds (parsed from the duration the user wrote).
    """

    name: str
    secret_env: str | None = None
    scheme: Scheme = "standard"
    tolerance: float = 300.0
    max_body: int = 1_048_576
    filter: EventFilter = None
    kind = "webhook"

    @property
    def path(self) -> str:
        return f"/hooks/{self.name}"

    def matches(self, payload: Any) -> bool:
        # Same filter semantics as on_event, defined once there.
        return OnEvent(self.name, self.filter).matches(self.name, payload)

    def matches_event(self, event: Event) -> bool:
        """Verified deliveries to this webhook (App.receive_webhook) that pass the filter."""
        return (
            event.source == WEBHOOK_SOURCE
            and event.name == self.name
            and self.matches(event.payload)
        )

    def webhooks(self) -> tuple[Trigger, ...]:
        return (self,)

    def describe(self) -> str:
        if self.scheme == "none":
            return f"webhook POST {self.path} (unsigned)"
        return f"webhook POST {self.path} ({self.scheme} signature, secret ${self.secret_env})"


def on_webhook(
    name: str,
    secret_env: str | None = None,
    *,
    scheme: str = "standard",
    tolerance: Duration = "5m",
    max_body: int = 1_048_576,
    filter: EventFilter = None,
) -> OnWebhook:
    """A trigger fed by HTTP deliveries to ``POST /hooks/{name}``.

    `secret_env` names the environment variable holding the signing secret (never the secret
    itself, so it stays out of code and config). It is read at delivery time, so rotating it
    needs no redefinition.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"webhook name {name!r} must be a URL-safe slug: lowercase letters, digits, '_', "
            "'.' or '-', starting with a letter or digit, e.g. on_webhook('payments', ...)"
        )
    if scheme not in SCHEMES:
        raise ConfigError(
            f"webhook scheme {scheme!r} is not one of {', '.join(map(repr, SCHEMES))}"
        )
    if scheme == "none":
        if secret_env is not None:
            raise ConfigError(
                f"on_webhook({name!r}) has scheme='none' (no verification) but also "
                f"secret_env={secret_env!r}; drop secret_env, or pick scheme='standard' or "
                "'github' so the secret is checked"
            )
    else:
        if secret_env is None:
            raise ConfigError(
                f"on_webhook({name!r}, scheme={scheme!r}) needs secret_env, the name of the "
                "environment variable holding the signing secret, e.g. "
                f"on_webhook({name!r}, secret_env={_example_env(name)!r}); for an unsigned "
                f"local hook write on_webhook({name!r}, scheme='none')"
            )
        if not isinstance(secret_env, str) or not _ENV_NAME.fullmatch(secret_env):
            hint = (
                " (it looks like the secret itself; put it in an environment variable and "
                "pass that variable's name)"
                if isinstance(secret_env, str) and secret_env.startswith(SECRET_PREFIX)
                else ""
            )
            raise ConfigError(
                f"secret_env must be an environment variable name such as "
                f"{_example_env(name)!r}, got {secret_env!r}{hint}"
            )
    tolerance_s = seconds(tolerance, what="webhook tolerance")
    if tolerance_s <= 0:
        raise ConfigError(f"webhook tolerance must be positive, e.g. '5m', got {tolerance!r}")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0:
        raise ConfigError(
            f"max_body must be a positive number of bytes, e.g. 1_048_576, got {max_body!r}"
        )
    if filter is not None and not (callable(filter) or isinstance(filter, Mapping)):
        raise ConfigError(
            "on_webhook filter must be a dict of payload fields or a function of the payload"
        )
    return OnWebhook(name, secret_env, cast(Scheme, scheme), tolerance_s, max_body, filter)


def verify(
    trigger: OnWebhook,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    environ: Mapping[str, str] = os.environ,
) -> VerifiedDelivery:
    """Check one delivery and return its id and parsed payload, or raise WebhookRejected.

    Checks run cheapest and least revealing first: size, then server configuration, then the
    headers, the timestamp, the signature (constant-time), and only then the body is parsed,
    so nothing unauthenticated reaches the JSON parser.
    """
    if len(body) > trigger.max_body:
        raise WebhookRejected(
            413,
            "too_large",
            f"body is {len(body)} bytes; webhook {trigger.name!r} accepts at most "
            f"{trigger.max_body} (raise max_body in on_webhook to allow more)",
        )
    lower = {k.lower(): v.strip() for k, v in headers.items()}

    if trigger.scheme == "standard":
        key = _secret_from_env(trigger, environ)
        msg_id, timestamp, signatures = _require(lower, _STANDARD_HEADERS)
        _check_timestamp(timestamp, now=now, tolerance=trigger.tolerance)
        _check_standard_signature(key, msg_id, timestamp, body, signatures)
        delivery_id = msg_id
    elif trigger.scheme == "github":
        key = _secret_from_env(trigger, environ)
        signature, delivery_id = _require(lower, _GITHUB_HEADERS)
        _check_github_signature(key, body, signature)
    else:
        delivery_id = ""  # decided after parsing, so a malformed body is reported first

    payload = _parse_payload(body, lower, form_ok=trigger.scheme == "github")

    if trigger.scheme == "none":
        delivery_id = (
            lower.get("webhook-id")
            or lower.get("idempotency-key")
            or "sha256:" + hashlib.sha256(body).hexdigest()
        )
    if len(delivery_id) > MAX_DELIVERY_ID:
        raise WebhookRejected(
            400,
            "invalid_header",
            f"delivery id is {len(delivery_id)} characters; at most {MAX_DELIVERY_ID} allowed",
        )
    return VerifiedDelivery(delivery_id, payload)


def sign_standard(
    secret: str | bytes, msg_id: str, timestamp: float, body: bytes | str
) -> dict[str, str]:
    """Headers a Standard Webhooks sender would send; for tests and rota's own clients."""
    try:
        key = _secret_bytes(secret)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    ts = str(int(timestamp))
    raw = body.encode() if isinstance(body, str) else body
    digest = _hmac_sha256(key, f"{msg_id}.{ts}.".encode() + raw)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def sign_github(
    secret: str | bytes, body: bytes | str, *, delivery: str | None = None
) -> dict[str, str]:
    """Headers GitHub would send (plus X-GitHub-Delivery when `delivery` is given)."""
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else body
    headers = {"X-Hub-Signature-256": "sha256=" + _hmac_sha256(key, raw).hex()}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


# --- internals -------------------------------------------------------------------------


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _example_env(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") + "_WEBHOOK_SECRET"


def _secret_bytes(secret: str | bytes) -> bytes:
    """`whsec_<base64>` decodes to its bytes (padding optional); anything else is raw bytes."""
    if isinstance(secret, bytes):
        key = secret
    elif secret.startswith(SECRET_PREFIX):
        text = secret[len(SECRET_PREFIX) :].strip()
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"a secret starting with {SECRET_PREFIX!r} must be followed by base64"
            ) from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _secret_from_env(trigger: OnWebhook, environ: Mapping[str, str]) -> bytes:
    env = trigger.secret_env or ""
    value = environ.get(env, "")
    if not value.strip():
        raise WebhookRejected(500, "missing_secret", f"webhook secret env var {env} is not set")
    if trigger.scheme == "github":
        return value.encode()
    try:
        return _secret_bytes(value)
    except ValueError as exc:
        raise WebhookRejected(
            500, "invalid_secret", f"webhook secret env var {env} is invalid: {exc}"
        ) from None


def _require(lower: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    missing = [n for n in names if not lower.get(n)]
    if missing:
        raise WebhookRejected(
            400,
            "missing_header",
            f"missing header{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"this webhook expects {', '.join(names)}",
        )
    return [lower[n] for n in names]


def _check_timestamp(header: str, *, now: float, tolerance: float) -> None:
    if not _TIMESTAMP.fullmatch(header):
        raise WebhookRejected(
            400,
            "invalid_header",
            f"webhook-timestamp must be an integer unix time in seconds, got {header[:40]!r}",
        )
    skew = now - int(header)
    if skew > tolerance:
        raise WebhookRejected(
            401,
            "stale_timestamp",
            f"webhook-timestamp is {skew:.0f}s in the past, beyond the {tolerance:.0f}s "
            "tolerance (a replayed delivery, or the sender's clock is behind)",
        )
    if -skew > tolerance:
        raise WebhookRejected(
            401,
            "future_timestamp",
            f"webhook-timestamp is {-skew:.0f}s in the future, beyond the {tolerance:.0f}s "
            "tolerance (the sender's clock is ahead)",
        )


def _check_standard_signature(
    key: bytes, msg_id: str, timestamp: str, body: bytes, header: str
) -> None:
    expected = _hmac_sha256(key, f"{msg_id}.{timestamp}.".encode() + body)
    matched = False
    for item in header.split():
        version, sep, value = item.partition(",")
        if version != "v1" or not sep:
            continue  # v1a (asymmetric) and future versions are not ours to check
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        # No early exit: every candidate costs the same, whichever one matches.
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise WebhookRejected(
            401,
            "bad_signature",
            "signature does not match: no v1 signature in webhook-signature is valid for "
            "this body with the configured secret",
        )


def _check_github_signature(key: bytes, body: bytes, header: str) -> None:
    match = _GITHUB_SIG.fullmatch(header)
    given = bytes.fromhex(match.group(1)) if match else b""
    if not hmac.compare_digest(_hmac_sha256(key, body), given):
        detail = "" if match else " (X-Hub-Signature-256 must look like sha256=<64 hex digits>)"
        raise WebhookRejected(401, "bad_signature", "signature does not match" + detail)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_payload(body: bytes, lower: Mapping[str, str], *, form_ok: bool) -> Any:
    data = body
    content_type = lower.get("content-type", "").split(";")[0].strip().lower()
    if form_ok and content_type == "application/x-www-form-urlencoded":
        # GitHub's "application/x-www-form-urlencoded" content type: payload=<url-encoded json>
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookRejected(400, "malformed_json", f"form body is malformed: {exc}") from None
        if len(fields.get("payload", ())) != 1:
            raise WebhookRejected(
                400, "malformed_json", "form body must have exactly one 'payload' field"
            )
        data = fields["payload"][0].encode("utf-8")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise WebhookRejected(
            400,
            "malformed_json",
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos})",
        ) from None
    except UnicodeDecodeError as exc:
        raise WebhookRejected(
            400, "malformed_json", f"body is not UTF-8 text: invalid byte at position {exc.start}"
        ) from None
    except RecursionError:
        raise WebhookRejected(400, "malformed_json", "body JSON is nested too deeply") from None
    except ValueError as exc:  # NaN / Infinity, rejected by _reject_constant
        raise WebhookRejected(400, "malformed_json", f"body is not valid JSON: {exc}") from None
