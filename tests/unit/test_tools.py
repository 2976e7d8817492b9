"""@tool: schemas from type hints and docstrings, argument validation, calling, guards."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from enum import Enum
from typing import Annotated, Any, Literal

import pydantic
import pytest

from rota import ConfigError, ToolContext, tool
from rota.agents.tools import Tool, ToolDenied, parse_docstring
from rota.agents.types import ToolCall, ToolResult


class Currency(Enum):
    EUR = "eur"
    USD = "usd"


class LineItem(pydantic.BaseModel):
    sku: str
    quantity: int = 1


@tool(scopes=["billing:write"], requires_approval=True)
def create_billing_event(
    ctx: ToolContext[dict[str, str]],
    customer_id: str,
    amount_cents: int,
    currency: Currency = Currency.EUR,
    items: list[LineItem] | None = None,
    note: Annotated[str, pydantic.Field(max_length=20, description="shown on the invoice")] = "",
) -> dict[str, Any]:
    """Create a billing event for one customer.

    Used after a plan change; the amount may be negative for credits.

    Args:
        customer_id: The customer's id
            as the CRM knows it.
        amount_cents (int): Amount in cents.
    """
    return {"customer": customer_id, "amount": amount_cents, "key": ctx.idempotency_key}


def _context(**overrides: Any) -> ToolContext[Any]:
    values: dict[str, Any] = {
        "deps": {"db": "fake"},
        "run_id": "run-1",
        "principal": "svc-billing",
        "idempotency_key": "run-1:tool:x",
        "agent": "reviewer",
        "tool": "x",
        "call_id": "c1",
    }
    return ToolContext(**{**values, **overrides})


def _run(t: Tool, arguments: dict[str, Any], **kw: Any) -> ToolResult:
    return asyncio.run(t.run(ToolCall("c1", t.name, arguments), _context(), **kw))


# -- schema --------------------------------------------------------------------------------


def test_schema_comes_from_hints_and_docstring_without_the_context_parameter() -> None:
    spec = create_billing_event.spec
    assert spec.name == "create_billing_event"
    assert spec.description == "Create a billing event for one customer."
    schema = spec.input_schema
    assert list(schema["properties"]) == [
        "customer_id",
        "amount_cents",
        "currency",
        "items",
        "note",
    ]
    assert schema["required"] == ["customer_id", "amount_cents"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["customer_id"] == {
        "type": "string",
        "description": "The customer's id as the CRM knows it.",
    }
    assert schema["properties"]["amount_cents"] == {
        "type": "integer",
        "description": "Amount in cents.",
    }
    assert schema["properties"]["note"] == {
        "type": "string",
        "default": "",
        "maxLength": 20,
        "description": "shown on the invoice",
    }
    assert schema["$defs"]["Currency"]["enum"] == ["eur", "usd"]
    assert schema["$defs"]["LineItem"]["required"] == ["sku"]
    assert "title" not in str(schema)  # generated titles are dropped
    assert create_billing_event.scopes == ("billing:write",)
    assert create_billing_event.requires_approval is True
    assert create_billing_event.takes_context is True


def test_numpy_and_sphinx_docstrings_describe_parameters() -> None:
    @tool(name="find-orders")
    def numpy_style(customer: str, status: str = "open") -> list[str]:
        """Find a customer's orders.

        Parameters
        ----------
        customer : str
            Whose orders.
        status : str
            Only orders in this state.

        Returns
        -------
        list of str
        """
        return []

    @tool
    def sphinx_style(order_id: str) -> str:
        """Cancel an order.

        :param order_id: The order to cancel,
            by id.
        :returns: a confirmation
        """
        return "ok"

    props = numpy_style.spec.input_schema["properties"]
    assert numpy_style.name == "find-orders"
    assert numpy_style.spec.description == "Find a customer's orders."
    assert props["customer"]["description"] == "Whose orders."
    assert props["status"]["description"] == "Only orders in this state."
    assert sphinx_style.spec.description == "Cancel an order."
    assert sphinx_style.spec.input_schema["properties"]["order_id"]["description"] == (
        "The order to cancel, by id."
    )


def test_parse_docstring_takes_the_first_paragraph_only() -> None:
    summary, params = parse_docstring(
        """Refund a payment
        in full.

        Only for card payments.

        Args:
            payment_id: Which payment.

        Raises:
            KeyError: unknown payment.
        """
    )
    assert summary == "Refund a payment in full."
    assert params == {"payment_id": "Which payment."}
    assert parse_docstring(None) == ("", {})


def test_parameter_names_that_clash_with_pydantic_attributes_still_work() -> None:
    @tool
    def export(json: bool, schema: str, model_config: int = 0) -> str:
        return f"{json}/{schema}/{model_config}"

    assert set(export.spec.input_schema["properties"]) == {"json", "schema", "model_config"}
    assert _run(export, {"json": True, "schema": "v2"}).content == "True/v2/0"


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (lambda: tool(name="has space")(lambda x: x), "tool name 'has space' is not allowed"),
        (lambda: tool(name="t")(lambda *args: None), "no \\*args, \\*\\*kwargs"),
        (lambda: tool(name="t", scopes="billing:write")(lambda: None), "scopes must be a list"),
        (lambda: tool(_context_second), "ToolContext must be the first parameter"),
        (lambda: tool(_opaque), "cannot be described as JSON Schema"),
    ],
)
def test_definition_mistakes_are_config_errors(define: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        define()


def _context_second(x: int, ctx: ToolContext[None]) -> None: ...


class _Opaque:
    pass


def _opaque(thing: _Opaque) -> None: ...


# -- calling -------------------------------------------------------------------------------


def test_arguments_are_validated_and_converted_before_the_call() -> None:
    result = _run(
        create_billing_event,
        {"customer_id": "acme", "amount_cents": "1200", "currency": "usd"},
    )
    assert result == ToolResult("c1", '{"customer":"acme","amount":1200,"key":"run-1:tool:x"}')


def test_invalid_arguments_come_back_as_an_error_naming_each_problem() -> None:
    result = _run(
        create_billing_event,
        {"customer_id": 42, "currency": "gbp", "note": "x" * 30, "amount": 5},
    )
    assert result.is_error
    text = result.content
    assert text.startswith("invalid arguments for tool 'create_billing_event': ")
    assert "customer_id: Input should be a valid string (got 42)" in text
    assert "amount_cents: Field required" in text
    assert "currency: Input should be 'eur' or 'usd' (got 'gbp')" in text
    assert "note: String should have at most 20 characters" in text
    assert "amount: Extra inputs are not permitted" in text
    assert text.endswith("Call it again with arguments that match its schema.")


def test_sync_tools_run_in_a_thread_and_async_tools_on_the_loop() -> None:
    threads: list[str] = []

    @tool
    def sync_tool(n: int) -> int:
        threads.append(threading.current_thread().name)
        return n * 2

    @tool
    async def async_tool(n: int) -> int:
        await asyncio.sleep(0)
        threads.append(threading.current_thread().name)
        return n * 3

    assert _run(sync_tool, {"n": 2}).content == "4"
    assert _run(async_tool, {"n": 2}).content == "6"
    assert threads[0] != threading.current_thread().name
    assert threads[1] == threading.current_thread().name
    assert sync_tool(5) == 10  # a Tool still calls like the function it wraps


def test_exceptions_in_a_tool_become_error_results() -> None:
    @tool
    async def flaky(order_id: str) -> str:
        raise LookupError(f"no order {order_id}")

    result = _run(flaky, {"order_id": "o-9"})
    assert result == ToolResult("c1", "tool 'flaky' failed: LookupError: no order o-9", True)


def test_control_flow_is_not_swallowed() -> None:
    @tool
    async def cancelled() -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        _run(cancelled, {})


def test_the_tool_context_is_passed_in_and_not_asked_of_the_model() -> None:
    seen: list[ToolContext[Any]] = []

    @tool
    def who(ctx: ToolContext[dict[str, str]]) -> str:
        seen.append(ctx)
        return ctx.deps["db"]

    assert who.spec.input_schema["properties"] == {}
    assert _run(who, {}).content == "fake"
    assert seen == [_context()]


def test_return_values_are_rendered_as_json_for_the_model() -> None:
    @tool
    def many() -> dict[str, Any]:
        return {"item": LineItem(sku="a"), "when": dt.date(2026, 1, 2), "n": None}

    assert _run(many, {}).content == (
        '{"item":{"sku":"a","quantity":1},"when":"2026-01-02","n":null}'
    )


# -- guards --------------------------------------------------------------------------------


def test_guards_see_validated_arguments_and_can_refuse_the_call() -> None:
    calls: list[str] = []
    seen: list[tuple[str, dict[str, Any], str | None]] = []

    @tool(scopes=["orders:write"])
    def cancel(order_id: str, mode: Literal["soft", "hard"] = "soft") -> str:
        calls.append(order_id)
        return "cancelled"

    def record(t: Tool, args: dict[str, Any], ctx: ToolContext[Any]) -> None:
        seen.append((t.name, args, ctx.principal))

    async def deny_hard(t: Tool, args: dict[str, Any], ctx: ToolContext[Any]) -> None:
        if args["mode"] == "hard":
            raise ToolDenied(f"{ctx.principal} may not hard-cancel")

    guards = [record, deny_hard]
    assert _run(cancel, {"order_id": "o1"}, guards=guards).content == "cancelled"
    refused = _run(cancel, {"order_id": "o2", "mode": "hard"}, guards=guards)
    assert refused == ToolResult(
        "c1", "tool 'cancel' was not run: ToolDenied: svc-billing may not hard-cancel", True
    )
    assert calls == ["o1"]
    assert seen == [
        ("cancel", {"order_id": "o1", "mode": "soft"}, "svc-billing"),
        ("cancel", {"order_id": "o2", "mode": "hard"}, "svc-billing"),
    ]
