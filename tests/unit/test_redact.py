from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote

import pytest

from rota.redaction import RedactingFilter, Redactor

VALUE = 'hunter2/"quoted"+é'


@pytest.fixture
def r() -> Redactor:
    red = Redactor()
    red.register("db_password", VALUE)
    return red


def test_nothing_registered_is_a_no_op() -> None:
    assert Redactor().redact("hunter2") == "hunter2"
    assert Redactor().redact_json({"a": ["hunter2"]}) == {"a": ["hunter2"]}


def test_plain_value(r: Redactor) -> None:
    assert r.redact(f"password={VALUE};") == "password=[redacted:db_password];"


def test_json_escaped_value(r: Redactor) -> None:
    for text in (json.dumps({"pw": VALUE}), json.dumps({"pw": VALUE}, ensure_ascii=False)):
        out = r.redact(text)
        assert out == '{"pw": "[redacted:db_password]"}'


def test_base64_and_url_encoded_value(r: Redactor) -> None:
    padded = base64.b64encode(VALUE.encode()).decode()
    urlsafe = base64.urlsafe_b64encode(VALUE.encode()).decode().rstrip("=")
    assert (
        r.redact(f"Authorization: Basic {padded}") == "Authorization: Basic [redacted:db_password]"
    )
    assert r.redact(f"t={urlsafe}.") == "t=[redacted:db_password]."
    assert r.redact(f"?pw={quote(VALUE, safe='')}&x=1") == "?pw=[redacted:db_password]&x=1"


def test_longest_value_wins_and_several_names() -> None:
    red = Redactor()
    red.register("short", "abcd")
    red.register("long", "abcdefgh")
    assert red.redact("abcdefgh abcd") == "[redacted:long] [redacted:short]"


def test_redact_json_walks_keys_values_lists_and_tuples(r: Redactor) -> None:
    obj = {"out": [VALUE, {"k": (1, VALUE)}], VALUE: None, "n": 3}
    assert r.redact_json(obj) == {
        "out": ["[redacted:db_password]", {"k": (1, "[redacted:db_password]")}],
        "[redacted:db_password]": None,
        "n": 3,
    }


def test_log_records_are_redacted(r: Redactor, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("rota.test.redact")
    filt = RedactingFilter(r)
    caplog.handler.addFilter(filt)
    try:
        log.warning("connecting with %s", VALUE)
        try:
            raise RuntimeError(f"bad password {VALUE}")
        except RuntimeError:
            log.exception("failed")
    finally:
        caplog.handler.removeFilter(filt)
    assert VALUE not in caplog.text
    assert "connecting with [redacted:db_password]" in caplog.text
    assert "RuntimeError: bad password [redacted:db_password]" in caplog.text
