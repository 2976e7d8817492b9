"""Triggers say when a job or workflow runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


class Trigger:
    """Base of every trigger; `describe()` is what the CLI and dashboard show."""

    kind = "trigger"

    def describe(self) -> str:
        return self.kind


EventFilter = Mapping[str, Any] | Callable[[Any], bool] | None


@dataclass(frozen=True)
class OnEvent(Trigger):
    """Run once per stored event of this name (app.emit, webhooks) that passes the filter."""

    name: str
    filter: EventFilter = None
    kind = "event"

    def matches(self, name: str, payload: Any) -> bool:
        if name != self.name:
            return False
        if self.filter is None:
            return True
        if callable(self.filter):
            return bool(self.filter(payload))
        return isinstance(payload, Mapping) and all(
            payload.get(k) == v for k, v in self.filter.items()
        )

    def describe(self) -> str:
        return f"event {self.name}"


def on_event(name: str, filter: EventFilter = None) -> OnEvent:
    """`filter` is a dict of fields the payload must equal, or a predicate on the payload."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("on_event needs an event name, e.g. on_event('billing.event')")
    if filter is not None and not (callable(filter) or isinstance(filter, Mapping)):
        raise ConfigError(
            "on_event filter must be a dict of payload fields or a function of the payload"
        )
    return OnEvent(name, filter)
