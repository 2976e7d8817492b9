"""Fuzzing the parsers of outside input: each either parses or raises rota's own error
(a RotaError subclass) with a message, never anything else.

Cron expressions and time zones, durations, plan files, routine files, and the tool-call
arguments a model sends. Webhooks are in test_fuzz_webhooks.py; the HTTP API is fuzzed by
schemathesis (tests/e2e/test_api_schema.py) and walked with hostile input
(tests/integration/test_api_hostile_input.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzing import FUZZ, clear_message
from hypothesis import example, given
from hypothesis import strategies as st

from rota import ToolContext, cron, tool
from rota.agents.models.openai import RAW_ARGUMENTS_KEY
from rota.agents.models.openai import _arguments as openai_arguments
from rota.agents.tools import run_tool
from rota.agents.types import ToolCall
from rota.cost.plans import KINDS, load_plans, parse_plan
from rota.durations import seconds
from rota.errors import ConfigError, ConfigFileError, RotaError
from rota.routines.errors import RoutineError
from rota.routines.loader import load_text

# JSON values, as bodies, files and models produce them.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

# -- cron ------------------------------------------------------------------------------------

CRON_ALPHABET = "0123456789*/,-?LW# JANFEBMARSUNMONTUEWEDjanmon@"
CRON_FIELD = st.text(alphabet="0123456789*/,-?LW#", min_size=1, max_size=6) | st.sampled_from(
    ["*", "*/5", "1-5", "MON-FRI", "JAN", "L", "15W", "5#2", "?", "0", "59", "60", "-1", "*/0"]
)


@FUZZ
@given(st.text(max_size=40) | st.text(alphabet=CRON_ALPHABET, max_size=40))
def test_a_cron_expression_parses_or_says_why(expr: str) -> None:
    try:
        cron(expr)
    except ConfigError as exc:
        clear_message(exc)


@FUZZ
@given(st.lists(CRON_FIELD, min_size=4, max_size=7).map(" ".join))
def test_a_cron_made_of_cron_fields_parses_or_says_why(expr: str) -> None:
    try:
        cron(expr)
    except ConfigError as exc:
        clear_message(exc)


@FUZZ
@given(st.text(max_size=30) | st.sampled_from(["UTC", "Europe/London", "Mars/Olympus", ""]))
def test_a_cron_time_zone_resolves_or_says_why(zone: str) -> None:
    try:
        cron("0 7 * * *", zone)
    except ConfigError as exc:
        clear_message(exc)


# -- durations -------------------------------------------------------------------------------

DURATION_TEXT = st.text(alphabet="0123456789.smhdw -+e", max_size=16)


@FUZZ
@example(float("nan"))
@example(float("inf"))
@example("9" * 400 + "s")  # past a float's range
@example(10**400)  # an int too large for a float
@given(
    st.text(max_size=20)
    | DURATION_TEXT
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
    | st.lists(st.integers(), max_size=2)
)
def test_a_duration_is_a_finite_number_of_seconds_or_says_why(value: Any) -> None:
    try:
        parsed = seconds(value)
    except ConfigError as exc:
        clear_message(exc)
        return
    assert math.isfinite(parsed) and parsed >= 0, (value, parsed)


def test_durations_that_are_no_number_of_seconds_are_refused_by_name() -> None:
    # Found by the property above: these passed as NaN or infinite seconds, or overflowed.
    for value in (float("nan"), float("inf"), "9" * 400 + "s", 10**400):
        with pytest.raises(ConfigError, match=r"^lease must be a finite duration like '30s'"):
            seconds(value, what="lease")


# -- plan files ------------------------------------------------------------------------------

PLAN_FIELDS = ["kind", "name", "price", "monthly", "limit", "period", "model", "models", "plans"]
PLAN_TABLE = st.dictionaries(
    st.sampled_from(PLAN_FIELDS) | st.text(max_size=8),
    st.sampled_from(sorted(KINDS)) | JSON,
    max_size=6,
)


@FUZZ
@example({"kind": []})
@example({"kind": {"api": 1}})
@given(PLAN_TABLE | JSON)
def test_a_plan_table_parses_or_names_the_field(data: Any) -> None:
    try:
        parse_plan(data, "fuzz.toml")
    except ConfigFileError as exc:
        assert clear_message(exc).startswith("fuzz.toml: ")


def test_a_plan_kind_that_is_not_a_name_is_refused_by_name() -> None:
    # Found by the property above: a list or table as the kind raised TypeError.
    with pytest.raises(ConfigFileError, match=r"field 'kind': unknown plan kind \[\]; one of"):
        parse_plan({"kind": [], "name": "x"}, "plans.toml")


@FUZZ
@given(st.sampled_from([".toml", ".json"]), st.text(max_size=200) | PLAN_TABLE.map(json.dumps))
def test_a_plan_file_loads_or_names_the_file(suffix: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"plans{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            load_plans(path)
        except ConfigFileError as exc:
            assert str(path) in clear_message(exc)


# -- routine files ---------------------------------------------------------------------------

ROUTINE_FIELDS = [
    "name", "description", "owner", "run_as", "mode", "job", "triggers", "cooldown",
    "stop_after", "model", "tools", "secrets", "max_steps", "timeout", "output", "success",
    "budget", "caps", "billing",
]  # fmt: skip
ROUTINE_VALUES = JSON | st.sampled_from(
    [
        "daily-digest",
        "scripted:digest",
        [{"cron": "0 7 * * 1-5", "timezone": "Europe/London"}],
        [{"every": "5m"}],
        [{"api": True}],
        [{"cron": "not a cron"}],
        {"per_day": 3, "over": "drop"},
        "2m",
        "-5m",
        4,
    ]
)
FRONT_MATTER = st.dictionaries(
    st.sampled_from(ROUTINE_FIELDS) | st.text(max_size=8), ROUTINE_VALUES, max_size=8
)


@FUZZ
@given(st.text(max_size=300))
def test_a_routine_file_of_any_text_loads_or_lists_its_problems(text: str) -> None:
    try:
        load_text(text, "fuzz.md")
    except RoutineError as exc:
        clear_message(exc)


@FUZZ
@given(FRONT_MATTER, st.text(max_size=60))
def test_a_routine_file_of_any_fields_loads_or_lists_its_problems(
    front: dict[str, Any], prompt: str
) -> None:
    text = f"---\n{yaml.safe_dump(front)}---\n{prompt}\n"
    try:
        load_text(text, "fuzz.md")
    except RoutineError as exc:
        assert "fuzz.md" in clear_message(exc)


# -- tool-call arguments from the model -------------------------------------------------------


@tool
def refund(ctx: ToolContext, order: str, cents: int, tags: list[str] | None = None) -> str:
    """Refund an order.

    Args:
        order: The order id.
        cents: How much, in cents.
        tags: Labels for the refund.
    """
    return f"refunded {cents} on {order}"


CONTEXT = ToolContext(
    deps=None,
    run_id=None,
    principal=None,
    idempotency_key="fuzz:1",
    agent="fuzz",
    tool="refund",
    call_id="c1",
)
ARGUMENTS = st.dictionaries(
    st.sampled_from(["order", "cents", "tags", RAW_ARGUMENTS_KEY]) | st.text(max_size=8),
    JSON,
    max_size=4,
)


@FUZZ
@given(ARGUMENTS | JSON)
def test_tool_arguments_from_a_model_run_the_tool_or_tell_the_model_why(arguments: Any) -> None:
    result = asyncio.run(run_tool(refund, ToolCall("c1", "refund", arguments), CONTEXT))
    assert result.call_id == "c1"
    if result.is_error:
        assert "invalid arguments for tool 'refund'" in result.content, result.content
    else:
        assert result.content.startswith("refunded "), result.content


@FUZZ
@given(st.text(max_size=80) | JSON.map(json.dumps))
def test_raw_tool_arguments_from_openai_become_a_mapping(raw: str) -> None:
    value, ok = openai_arguments(raw)
    assert isinstance(value, dict)
    assert ok or value == {RAW_ARGUMENTS_KEY: raw}


def test_rota_errors_are_what_the_properties_accept() -> None:
    # The properties above catch ConfigError and its kin: all of them are rota's own.
    assert issubclass(ConfigFileError, RotaError) and issubclass(RoutineError, RotaError)
