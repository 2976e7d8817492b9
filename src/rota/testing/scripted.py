"""The offline model for tests and demos: scripted replies, marked as simulated.

from rota.testing import ScriptedModel, answer, call, register_scripted, say

register_scripted("demo", ScriptedModel("demo", script=[
    call("lookup_customer", customer_id="acme"),
    answer({"approve": True, "amount_cents": 500}),
]))
reviewer = Agent(name="reviewer", model="scripted:demo", instructions="...", ...)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..agents.models.scripted import (
    Reply,
    ScriptedModel,
    answer,
    call,
    get_scripted,
    register_scripted,
    say,
    unregister_scripted,
)
from ..agents.types import Model


@contextmanager
def scripted(name: str, model: Model | None = None, **options: Any) -> Iterator[Model]:
    """Register `scripted:NAME` for the duration of a `with` block (a test)."""
    registered = register_scripted(name, model, **options)
    try:
        yield registered
    finally:
        unregister_scripted(name)


__all__ = [
    "Reply",
    "ScriptedModel",
    "answer",
    "call",
    "get_scripted",
    "register_scripted",
    "say",
    "scripted",
    "unregister_scripted",
]
