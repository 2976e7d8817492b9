"""Triggers say when a job or workflow runs: the Trigger interface, and on_event().

Every trigger kind subclasses `Trigger` and answers the questions below; the runtime (the
scheduler, the event router in App, the webhook endpoint, the NOTIFY listener) asks only these
and never which class a trigger is. So a new kind is one module implementing its part, plus
its export in scheduling/__init__.py and rota/__init__.py; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ..errors import ConfigError
from ..model import Event

WEBHOOK_SOURCE = "webhook"  # Event.source of a verified webhook delivery (App.receive_webhook)
NOTIFY_SOURCE = "pg-notify"  # Event.source of a PostgreSQL notification (on_notify)


class Trigger:
    """When a job runs: on time (`fire_times`, `next_fire`) and/or on events (`matches_event`).

    Time. A trigger that fires on a clock overrides `fire_times` and `next_fire` (and `key`):
    the scheduler keeps one schedule for it, decides its fire times since the schedule's cursor
    and enqueues one run per fire time. `key()` identifies the definition: a schedule whose key
    changed is registered afresh. `schedules()` lists the time triggers the scheduler keeps a
    schedule for; the default is the trigger itself when it overrides `fire_times`.

    Events. A trigger that fires on events overrides `matches_event`: every stored event
    (app.emit, a webhook delivery, a NOTIFY) enqueues one run of each job with a trigger that
    matches it. `webhooks()` are the HTTP endpoints to serve (POST /hooks/{name}), `channels()`
    the PostgreSQL channels to LISTEN on, and `debounce` (seconds quiet, longest wait) turns a
    burst of matching events into one run.

    `describe()` is what the CLI and dashboard show.
    """

    kind: ClassVar[str] = "trigger"

    def describe(self) -> str:
        return self.kind

    # -- time

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Fire times in [start, end), in UTC, ascending, each once; none by default."""
        return []

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after`; None when there is none."""
        return None

    def key(self) -> str:
        """The canonical definition: two triggers with the same key fire at the same times."""
        return self.describe()

    def schedules(self) -> tuple[tuple[Trigger, float | None], ...]:
        """(time trigger, suppress_after_event seconds) for each schedule this trigger needs."""
        return ((self, None),) if fires_on_time(self) else ()

    # -- events

    def matches_event(self, event: Event) -> bool:
        """Whether this stored event fires the trigger; never, by default."""
        return False

    def webhooks(self) -> tuple[Trigger, ...]:
        """The webhook triggers (OnWebhook) whose endpoints must be served for this one."""
        return ()

    def channels(self) -> frozenset[str]:
        """The PostgreSQL NOTIFY channels to LISTEN on for this trigger."""
        return frozenset()

    @property
    def debounce(self) -> tuple[float, float | None] | None:
        """(quiet seconds, longest wait or None): matching events are coalesced into one run."""
        return None


def fires_on_time(trigger: Trigger) -> bool:
    """Whether the trigger's kind implements fire_times (it has a clock of its own)."""
    return type(trigger).fire_times is not Trigger.fire_times


def fires_on_events(trigger: Trigger) -> bool:
    """Whether the trigger's kind implements matches_event."""
    return type(trigger).matches_event is not Trigger.matches_event


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

    def matches_event(self, event: Event) -> bool:
        """Events stored by app.emit (not webhook deliveries or notifications) of this name."""
        return event.source not in (WEBHOOK_SOURCE, NOTIFY_SOURCE) and self.matches(
            event.name, event.payload
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
