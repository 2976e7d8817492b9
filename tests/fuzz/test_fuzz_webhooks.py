"""Fuzzing webhook verification (`rota.scheduling.webhooks.verify`), the parser in front of
`POST /hooks/{name}`: any headers and body either verify or raise WebhookRejected with a
4xx status, a reason code and a message that never holds the secret; a genuine signed
delivery always verifies, and any change to its body is refused."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from fuzzing import FUZZ, clear_message
from hypothesis import given
from hypothesis import strategies as st

from rota.scheduling.webhooks import (
    OnWebhook,
    WebhookRejected,
    on_webhook,
    sign_github,
    sign_standard,
    verify,
)

SECRET = "whsec_" + base64.b64encode(b"fuzzing-webhook-secret-0123456789").decode()
ENVIRON = {"FUZZ_HOOK_SECRET": SECRET}
NOW = 1_800_000_000.0
HOOKS = {
    scheme: on_webhook(
        f"fuzz-{scheme}", None if scheme == "none" else "FUZZ_HOOK_SECRET", scheme=scheme
    )
    for scheme in ("standard", "github", "none")
}
HEADER_NAMES = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "Webhook-Signature",
    "x-hub-signature-256",
    "X-GitHub-Delivery",
    "content-type",
    "idempotency-key",
]
HEADER_VALUES = st.text(max_size=80) | st.sampled_from(
    [
        str(int(NOW)),
        str(int(NOW) - 10_000),
        "v1,AAAA",
        "v1a,abc v1,",
        "sha256=" + "0" * 64,
        "sha256=zz",
        "application/json",
        "application/x-www-form-urlencoded",
        "x" * 300,
    ]
)
HEADERS = st.dictionaries(
    st.sampled_from(HEADER_NAMES) | st.text(max_size=10), HEADER_VALUES, max_size=6
)
BODIES = st.binary(max_size=300) | st.text(max_size=100).map(str.encode) | st.just(b"{}")


def _check_refusal(exc: WebhookRejected) -> None:
    assert 400 <= exc.status < 500, exc.status
    assert exc.reason and " " not in exc.reason, exc.reason
    assert SECRET not in clear_message(exc)


@FUZZ
@given(st.sampled_from(sorted(HOOKS)), HEADERS, BODIES)
def test_any_delivery_verifies_or_is_refused_with_a_4xx(
    scheme: str, headers: dict[str, str], body: bytes
) -> None:
    try:
        delivery = verify(HOOKS[scheme], headers, body, now=NOW, environ=ENVIRON)
    except WebhookRejected as exc:
        _check_refusal(exc)
        return
    assert isinstance(delivery.delivery_id, str) and delivery.delivery_id


PAYLOADS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
DELIVERY_IDS = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64
)


@FUZZ
@given(PAYLOADS, DELIVERY_IDS, st.integers(min_value=-200, max_value=200))
def test_a_signed_standard_delivery_verifies_and_a_changed_one_is_refused(
    payload: Any, delivery_id: str, skew: int
) -> None:
    hook: OnWebhook = HOOKS["standard"]
    body = json.dumps(payload).encode()
    headers = sign_standard(SECRET, delivery_id, NOW + skew, body)
    delivery = verify(hook, headers, body, now=NOW, environ=ENVIRON)
    assert (delivery.delivery_id, delivery.payload) == (delivery_id, payload)
    try:
        verify(hook, headers, body + b" ", now=NOW, environ=ENVIRON)
    except WebhookRejected as exc:
        _check_refusal(exc)
        assert exc.reason == "bad_signature"
    else:
        raise AssertionError("a changed body verified")


@FUZZ
@given(PAYLOADS, DELIVERY_IDS)
def test_a_signed_github_delivery_verifies_and_a_changed_one_is_refused(
    payload: Any, delivery_id: str
) -> None:
    hook = HOOKS["github"]
    body = json.dumps(payload).encode()
    headers = sign_github(SECRET, body, delivery=delivery_id)
    delivery = verify(hook, headers, body, now=time.time(), environ=ENVIRON)
    assert (delivery.delivery_id, delivery.payload) == (delivery_id, payload)
    try:
        verify(hook, headers, body + b"\n ", now=time.time(), environ=ENVIRON)
    except WebhookRejected as exc:
        _check_refusal(exc)
    else:
        raise AssertionError("a changed body verified")
