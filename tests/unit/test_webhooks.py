"""Webhook verification: Standard Webhooks, GitHub, unsigned; every rejection path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import quote

import pytest

from rota.errors import ConfigError, RotaError
from rota.scheduling import webhooks
from rota.scheduling.webhooks import (
    OnWebhook,
    VerifiedDelivery,
    WebhookRejected,
    on_webhook,
    sign_github,
    sign_standard,
    verify,
)

NOW = 1_700_000_000.0
RAW_KEY = b"0123456789abcdef0123456789abcdef"
WHSEC = "whsec_" + base64.b64encode(RAW_KEY).decode()
ENV = {"HOOK_SECRET": WHSEC}
BODY = b'{"type": "invoice.paid", "data": {"id": "in_1", "amount": 500}}'

standard = on_webhook("payments", secret_env="HOOK_SECRET")
github = on_webhook("gh", secret_env="GH_SECRET", scheme="github")
unsigned = on_webhook("local", scheme="none")


def rejected(trigger: OnWebhook, headers: dict[str, str], body: bytes = BODY, **kw):
    kw.setdefault("now", NOW)
    kw.setdefault("environ", ENV)
    with pytest.raises(WebhookRejected) as info:
        verify(trigger, headers, body, **kw)
    return info.value


# --- Standard Webhooks: accepted --------------------------------------------------------


def test_reference_vector_from_standard_webhooks_libraries():
    # Test vector from the Standard Webhooks reference libraries (same values in all of them):
    # github.com/standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
    # `test_sign_function` and libraries/go/webhook_test.go `TestWebhookSign`.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    headers = sign_standard(secret, msg_id, 1614265330, body)
    assert headers == {
        "webhook-id": msg_id,
        "webhook-timestamp": "1614265330",
        "webhook-signature": expected,
    }
    # and the verifier accepts the reference signature, not only our own
    trigger = on_webhook("ref", secret_env="REF_SECRET")
    got = verify(trigger, headers, body, now=1614265330 + 10, environ={"REF_SECRET": secret})
    assert got == VerifiedDelivery(msg_id, {"test": 2432232314})


def test_valid_standard_delivery_with_whsec_secret():
    headers = sign_standard(WHSEC, "msg_1", NOW, BODY)
    got = verify(standard, headers, BODY, now=NOW, environ=ENV)
    assert got.delivery_id == "msg_1"
    assert got.payload == {"type": "invoice.paid", "data": {"id": "in_1", "amount": 500}}


def test_whsec_secret_is_base64_decoded_not_used_verbatim():
    by_hand = base64.b64encode(
        hmac.new(RAW_KEY, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    ).decode()
    assert sign_standard(WHSEC, "msg_1", NOW, BODY)["webhook-signature"] == "v1," + by_hand


def test_unpadded_whsec_secret_is_accepted():
    padded = "whsec_" + base64.b64encode(b"sixteen-byte-key!").decode()
    assert padded.endswith("=")
    unpadded = padded.rstrip("=")
    headers = sign_standard(padded, "msg_1", NOW, BODY)
    got = verify(standard, headers, BODY, now=NOW, environ={"HOOK_SECRET": unpadded})
    assert got.delivery_id == "msg_1"


def test_secret_without_prefix_is_raw_bytes():
    headers = sign_standard("plain-shared-secret", "msg_2", NOW, BODY)
    expected = hmac.new(b"plain-shared-secret", b"msg_2.1700000000." + BODY, hashlib.sha256)
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected.digest()).decode()
    got = verify(standard, headers, BODY, now=NOW, environ={"HOOK_SECRET": "plain-shared-secret"})
    assert got.delivery_id == "msg_2"


def test_any_one_valid_signature_among_several_is_accepted():
    good = sign_standard(WHSEC, "msg_3", NOW, BODY)
    wrong = sign_standard(
        "whsec_" + base64.b64encode(b"old-rotated-key").decode(), "msg_3", NOW, BODY
    )
    signature = " ".join(
        [
            wrong["webhook-signature"],  # a wrong v1 signature
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
            "v1,not*base64",  # garbage is skipped, not a crash
            "nocomma",
            good["webhook-signature"],
        ]
    )
    got = verify(standard, {**good, "webhook-signature": signature}, BODY, now=NOW, environ=ENV)
    assert got.delivery_id == "msg_3"


def test_header_names_are_case_insensitive_and_values_trimmed():
    headers = {
        k.upper() if i % 2 else k.title(): f" {v} "
        for i, (k, v) in enumerate(sign_standard(WHSEC, "msg_4", NOW, BODY).items())
    }
    assert verify(standard, headers, BODY, now=NOW, environ=ENV).delivery_id == "msg_4"


def test_timestamp_exactly_at_tolerance_is_accepted():
    for ts in (NOW - 300, NOW + 300):
        headers = sign_standard(WHSEC, "msg_5", ts, BODY)
        assert verify(standard, headers, BODY, now=NOW, environ=ENV).delivery_id == "msg_5"


# --- Standard Webhooks: rejected --------------------------------------------------------


def test_bad_signature():
    headers = sign_standard(WHSEC, "msg_1", NOW, BODY)
    tampered = BODY.replace(b"500", b"900")
    exc = rejected(standard, headers, tampered)
    assert (exc.status, exc.reason) == (401, "bad_signature")
    assert str(exc).startswith("signature does not match")
    assert isinstance(exc, RotaError)


def test_signature_is_bound_to_id_and_timestamp():
    headers = sign_standard(WHSEC, "msg_1", NOW, BODY)
    assert rejected(standard, {**headers, "webhook-id": "msg_2"}).reason == "bad_signature"
    moved = {**headers, "webhook-timestamp": str(int(NOW) + 1)}
    assert rejected(standard, moved).reason == "bad_signature"


def test_only_other_versions_present_is_a_bad_signature():
    headers = sign_standard(WHSEC, "msg_1", NOW, BODY)
    v2 = headers["webhook-signature"].replace("v1,", "v2,")
    exc = rejected(standard, {**headers, "webhook-signature": v2})
    assert (exc.status, exc.reason) == (401, "bad_signature")


def test_stale_timestamp():
    headers = sign_standard(WHSEC, "msg_1", NOW - 301, BODY)
    exc = rejected(standard, headers)
    assert (exc.status, exc.reason) == (401, "stale_timestamp")
    assert "301s in the past" in exc.message
    assert "300s tolerance" in exc.message


def test_future_timestamp():
    headers = sign_standard(WHSEC, "msg_1", NOW + 3600, BODY)
    exc = rejected(standard, headers)
    assert (exc.status, exc.reason) == (401, "future_timestamp")
    assert "3600s in the future" in exc.message


def test_tolerance_is_configurable():
    strict = on_webhook("strict", secret_env="HOOK_SECRET", tolerance="30s")
    headers = sign_standard(WHSEC, "msg_1", NOW - 31, BODY)
    exc = rejected(strict, headers)
    assert exc.reason == "stale_timestamp"
    assert "30s tolerance" in exc.message


def test_stale_timestamp_is_rejected_before_signature_work(monkeypatch):
    def boom(key, message):
        raise AssertionError("HMAC computed for a stale delivery")

    headers = sign_standard(WHSEC, "msg_1", NOW - 10_000, BODY)
    monkeypatch.setattr(webhooks, "_hmac_sha256", boom)
    assert rejected(standard, headers).reason == "stale_timestamp"


@pytest.mark.parametrize("value", ["1700000000.5", "-5", "soon", "1e9"])
def test_non_integer_timestamp(value):
    headers = {**sign_standard(WHSEC, "msg_1", NOW, BODY), "webhook-timestamp": value}
    exc = rejected(standard, headers)
    assert (exc.status, exc.reason) == (400, "invalid_header")
    assert "integer unix time" in exc.message


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_standard_header(missing):
    headers = sign_standard(WHSEC, "msg_1", NOW, BODY)
    del headers[missing]
    exc = rejected(standard, headers)
    assert (exc.status, exc.reason) == (400, "missing_header")
    assert exc.message.startswith(f"missing header {missing};")


def test_empty_header_counts_as_missing_and_all_are_named():
    exc = rejected(standard, {"webhook-id": "  "})
    assert exc.reason == "missing_header"
    assert exc.message.startswith(
        "missing headers webhook-id, webhook-timestamp, webhook-signature"
    )


def test_oversized_body_is_rejected_before_any_hmac_work(monkeypatch):
    small = on_webhook("small", secret_env="HOOK_SECRET", max_body=64)
    body = b'{"pad": "' + b"x" * 100 + b'"}'
    headers = sign_standard(WHSEC, "msg_1", NOW, body)

    def boom(key, message):
        raise AssertionError("HMAC computed for an oversized body")

    monkeypatch.setattr(webhooks, "_hmac_sha256", boom)
    exc = rejected(small, headers, body, environ={})  # size comes even before the secret check
    assert (exc.status, exc.reason) == (413, "too_large")
    assert f"body is {len(body)} bytes" in exc.message
    assert "at most 64" in exc.message


def test_body_of_exactly_max_body_is_accepted():
    body = b'{"a": "' + b"y" * 20 + b'"}'
    exact = on_webhook("exact", secret_env="HOOK_SECRET", max_body=len(body))
    headers = sign_standard(WHSEC, "msg_1", NOW, body)
    assert verify(exact, headers, body, now=NOW, environ=ENV).payload == {"a": "y" * 20}


def test_malformed_json_reports_position():
    body = b'{"a": 1,, "b": 2}'
    headers = sign_standard(WHSEC, "msg_1", NOW, body)
    exc = rejected(standard, headers, body)
    assert (exc.status, exc.reason) == (400, "malformed_json")
    assert "line 1 column 9 (char 8)" in exc.message


def test_malformed_json_is_only_reported_after_the_signature_passes():
    body = b"not json"
    headers = sign_standard(WHSEC, "msg_1", NOW, b"something else")
    assert rejected(standard, headers, body).reason == "bad_signature"


@pytest.mark.parametrize(
    ("body", "needle"),
    [(b'{"x": NaN}', "NaN is not valid JSON"), (b'{"x": "\xff"}', "not UTF-8"), (b"", "char 0")],
)
def test_other_unparseable_bodies(body, needle):
    headers = sign_standard(WHSEC, "msg_1", NOW, body)
    exc = rejected(standard, headers, body)
    assert (exc.status, exc.reason) == (400, "malformed_json")
    assert needle in exc.message


def test_deeply_nested_json_is_a_400_not_a_crash():
    body = b"[" * 200_000 + b"]" * 200_000
    trigger = on_webhook("deep", secret_env="HOOK_SECRET", max_body=len(body))
    headers = sign_standard(WHSEC, "msg_1", NOW, body)
    exc = rejected(trigger, headers, body)
    assert (exc.status, exc.reason) == (400, "malformed_json")


def test_missing_secret_env_is_a_server_error():
    headers = sign_standard(WHSEC, "msg_1", NOW, BODY)
    for environ in ({}, {"HOOK_SECRET": ""}, {"HOOK_SECRET": "   "}):
        exc = rejected(standard, headers, environ=environ)
        assert (exc.status, exc.reason) == (500, "missing_secret")
        assert exc.message == "webhook secret env var HOOK_SECRET is not set"


def test_missing_secret_is_reported_before_missing_headers():
    exc = rejected(standard, {}, environ={})
    assert exc.reason == "missing_secret"


def test_undecodable_whsec_secret_is_a_server_error_that_hides_the_secret():
    bad = "whsec_not*base64!"
    exc = rejected(standard, sign_standard(WHSEC, "msg_1", NOW, BODY), environ={"HOOK_SECRET": bad})
    assert (exc.status, exc.reason) == (500, "invalid_secret")
    assert "HOOK_SECRET" in exc.message
    assert bad not in exc.message


def test_secret_is_read_at_delivery_time():
    headers = sign_standard("whsec_" + base64.b64encode(b"rotated-key").decode(), "m", NOW, BODY)
    assert rejected(standard, headers).reason == "bad_signature"
    rotated = {"HOOK_SECRET": "whsec_" + base64.b64encode(b"rotated-key").decode()}
    assert verify(standard, headers, BODY, now=NOW, environ=rotated).delivery_id == "m"


def test_overlong_delivery_id_is_rejected():
    msg_id = "m" * 257
    headers = sign_standard(WHSEC, msg_id, NOW, BODY)
    exc = rejected(standard, headers)
    assert (exc.status, exc.reason) == (400, "invalid_header")
    assert "257 characters" in exc.message


# --- GitHub -------------------------------------------------------------------------------

GH_ENV = {"GH_SECRET": "It's a Secret to Everybody"}


def test_github_documented_example():
    # From GitHub's docs, "Validating webhook deliveries" (docs.github.com/en/webhooks/
    # using-webhooks/validating-webhook-deliveries): secret "It's a Secret to Everybody",
    # payload "Hello, World!".
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign_github("It's a Secret to Everybody", "Hello, World!") == {
        "X-Hub-Signature-256": expected
    }


def test_valid_github_delivery():
    body = json.dumps({"action": "opened", "number": 7}).encode()
    headers = {
        **sign_github(GH_ENV["GH_SECRET"], body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        "X-GitHub-Event": "pull_request",
        "Content-Type": "application/json",
    }
    got = verify(github, headers, body, now=NOW, environ=GH_ENV)
    assert got == VerifiedDelivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", json.loads(body))


def test_github_secret_is_raw_even_if_it_looks_like_whsec():
    secret = "whsec_" + base64.b64encode(b"k").decode()
    body = b"{}"
    headers = sign_github(secret, body, delivery="d1")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected
    got = verify(github, headers, body, now=NOW, environ={"GH_SECRET": secret})
    assert got.delivery_id == "d1"


def test_github_form_encoded_delivery():
    payload = {"zen": "Keep it logically awesome.", "hook_id": 1}
    body = ("payload=" + quote(json.dumps(payload))).encode()
    headers = {
        **sign_github(GH_ENV["GH_SECRET"], body, delivery="d2"),
        "content-type": "application/x-www-form-urlencoded",
    }
    assert verify(github, headers, body, now=NOW, environ=GH_ENV).payload == payload


def test_github_bad_signature():
    body = b'{"action": "opened"}'
    headers = sign_github("wrong secret", body, delivery="d3")
    exc = rejected(github, headers, body, environ=GH_ENV)
    assert (exc.status, exc.reason) == (401, "bad_signature")
    assert exc.message == "signature does not match"


@pytest.mark.parametrize("value", ["sha1=abc", "sha256=xyz", "757107ea0eb2509fc211221c"])
def test_github_malformed_signature_header(value):
    headers = {"X-Hub-Signature-256": value, "X-GitHub-Delivery": "d4"}
    exc = rejected(github, headers, b"{}", environ=GH_ENV)
    assert (exc.status, exc.reason) == (401, "bad_signature")
    assert "sha256=<64 hex digits>" in exc.message


@pytest.mark.parametrize("missing", ["X-Hub-Signature-256", "X-GitHub-Delivery"])
def test_github_missing_header(missing):
    headers = sign_github(GH_ENV["GH_SECRET"], b"{}", delivery="d5")
    del headers[missing]
    exc = rejected(github, headers, b"{}", environ=GH_ENV)
    assert (exc.status, exc.reason) == (400, "missing_header")
    assert f"missing header {missing.lower()};" in exc.message


def test_github_missing_secret():
    headers = sign_github("s", b"{}", delivery="d6")
    exc = rejected(github, headers, b"{}", environ={})
    assert (exc.status, exc.reason) == (500, "missing_secret")
    assert exc.message == "webhook secret env var GH_SECRET is not set"


def test_github_has_no_timestamp_check():
    headers = sign_github(GH_ENV["GH_SECRET"], b"{}", delivery="d7")
    for now in (0.0, NOW * 2):
        assert verify(github, headers, b"{}", now=now, environ=GH_ENV).delivery_id == "d7"


# --- unsigned -----------------------------------------------------------------------------


def test_unsigned_delivery_id_comes_from_headers_or_the_body_hash():
    assert verify(unsigned, {"Webhook-Id": "w1"}, BODY, now=NOW).delivery_id == "w1"
    assert verify(unsigned, {"Idempotency-Key": "k1"}, BODY, now=NOW).delivery_id == "k1"
    got = verify(unsigned, {}, BODY, now=NOW, environ={})
    assert got.delivery_id == "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert got.payload["data"]["id"] == "in_1"


def test_unsigned_ignores_signature_headers_and_form_encoding():
    headers = {
        "webhook-signature": "v1,garbage",
        "content-type": "application/x-www-form-urlencoded",
    }
    exc = rejected(unsigned, headers, b"payload=%7B%7D")
    assert (exc.status, exc.reason) == (400, "malformed_json")


def test_unsigned_still_enforces_size():
    small = on_webhook("tiny", scheme="none", max_body=2)
    exc = rejected(small, {}, b"[1, 2]")
    assert (exc.status, exc.reason) == (413, "too_large")


# --- definition time ----------------------------------------------------------------------


def test_definition_and_describe():
    trig = on_webhook(
        "payments", "PAYMENTS_WEBHOOK_SECRET", tolerance="2m", max_body=10, filter={"t": 1}
    )
    assert isinstance(trig, OnWebhook)
    assert (trig.kind, trig.scheme, trig.tolerance, trig.max_body) == (
        "webhook",
        "standard",
        120,
        10,
    )
    assert trig.path == "/hooks/payments"
    assert trig.describe() == (
        "webhook POST /hooks/payments (standard signature, secret $PAYMENTS_WEBHOOK_SECRET)"
    )
    assert unsigned.describe() == "webhook POST /hooks/local (unsigned)"
    with pytest.raises(AttributeError):
        trig.name = "other"  # type: ignore[misc]


def test_filter_matches_like_on_event():
    by_fields = on_webhook("f", "S", filter={"type": "invoice.paid"})
    assert by_fields.matches({"type": "invoice.paid", "x": 1})
    assert not by_fields.matches({"type": "invoice.voided"})
    assert not by_fields.matches(["not", "a", "dict"])
    by_func = on_webhook("g", "S", filter=lambda p: p.get("amount", 0) > 100)
    assert by_func.matches({"amount": 500})
    assert not by_func.matches({"amount": 5})
    assert on_webhook("h", "S").matches(None)


@pytest.mark.parametrize("name", ["", "Payments", "-x", "a/b", "has space", "pay\n", "é", None])
def test_name_must_be_a_url_safe_slug(name):
    with pytest.raises(ConfigError, match="URL-safe slug"):
        on_webhook(name, "S")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["payments", "a", "0x", "stripe.v2", "git_hub-1"])
def test_valid_names(name):
    assert on_webhook(name, "S").name == name


@pytest.mark.parametrize("scheme", ["standard", "github"])
def test_signed_schemes_need_secret_env_and_show_an_example(scheme):
    with pytest.raises(ConfigError) as info:
        on_webhook("payments", scheme=scheme)
    message = str(info.value)
    assert "on_webhook('payments', secret_env='PAYMENTS_WEBHOOK_SECRET')" in message
    assert "scheme='none'" in message


def test_scheme_none_refuses_a_secret():
    with pytest.raises(ConfigError, match="drop secret_env"):
        on_webhook("local", "LOCAL_SECRET", scheme="none")


def test_unknown_scheme():
    with pytest.raises(ConfigError, match="'stripe' is not one of 'standard', 'github', 'none'"):
        on_webhook("x", "S", scheme="stripe")


def test_secret_env_must_be_a_variable_name_not_the_secret():
    with pytest.raises(ConfigError, match="looks like the secret itself"):
        on_webhook("pay-ments", secret_env=WHSEC)
    with pytest.raises(ConfigError, match="'PAY_MENTS_WEBHOOK_SECRET'"):
        on_webhook("pay-ments", secret_env="MY-SECRET")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tolerance": "0s"}, "tolerance must be positive"),
        ({"tolerance": "soon"}, "not a duration"),
        ({"max_body": 0}, "max_body must be a positive"),
        ({"max_body": True}, "max_body must be a positive"),
        ({"max_body": 1.5}, "max_body must be a positive"),
        ({"filter": "type=paid"}, "filter must be a dict"),
    ],
)
def test_other_definition_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        on_webhook("x", "S", **kwargs)


def test_sign_standard_rejects_a_bad_whsec_secret():
    with pytest.raises(ConfigError, match="base64"):
        sign_standard("whsec_***", "m", NOW, b"{}")
