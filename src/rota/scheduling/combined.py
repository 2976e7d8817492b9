"""combined(): a time baseline with event overrides, the hybrid most real systems need.

    combined(cron("0 * * * *"), on_event("inventory.changed"),
             debounce="30s", max_wait="5m", suppress_after_event="10m")

runs hourly, and also when inventory changes; a burst of events becomes one run once they
have been quiet for 30 s (but no later than 5 min after the first), and an hourly tick that
comes within 10 min of an event-run is skipped, recorded with the reason "suppressed".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..durations import Duration, optional_seconds
from ..errors import ConfigError
from ..model import Event
from .triggers import Trigger, fires_on_events, fires_on_time

EXAMPLE = 'e.g. combined(cron("0 * * * *"), on_event("orders.changed"), debounce="30s")'


@dataclass(frozen=True)
class Combined(Trigger):
    schedule: Trigger | None  # a time trigger: cron, every, at
    events: tuple[Trigger, ...]  # event triggers: on_event, on_webhook, on_notify
    debounce_s: float | None = None
    max_wait_s: float | None = None
    suppress_after_event_s: float | None = None
    kind = "combined"

    def schedules(self) -> tuple[tuple[Trigger, float | None], ...]:
        return ((self.schedule, self.suppress_after_event_s),) if self.schedule else ()

    def matches_event(self, event: Event) -> bool:
        return any(trigger.matches_event(event) for trigger in self.events)

    def webhooks(self) -> tuple[Trigger, ...]:
        return tuple(hook for trigger in self.events for hook in trigger.webhooks())

    def channels(self) -> frozenset[str]:
        return frozenset().union(*(trigger.channels() for trigger in self.events))

    @property
    def debounce(self) -> tuple[float, float | None] | None:
        return None if self.debounce_s is None else (self.debounce_s, self.max_wait_s)

    def describe(self) -> str:
        parts = [self.schedule.describe()] if self.schedule else []
        parts += [t.describe() for t in self.events]
        extras = []
        if self.debounce_s is not None:
            extras.append(f"debounce {self.debounce_s:g}s")
        if self.suppress_after_event_s is not None:
            extras.append(f"suppress {self.suppress_after_event_s:g}s after an event")
        return " + ".join(parts) + (f" ({', '.join(extras)})" if extras else "")


def combined(
    schedule: Trigger | None = None,
    *events: Trigger,
    debounce: Duration | None = None,
    max_wait: Duration | None = None,
    suppress_after_event: Duration | None = None,
) -> Combined:
    """A schedule as the baseline and events as overrides, because polling alone is late and
    events alone miss what was never announced: `debounce` turns a burst into one run
    (`max_wait` bounds it), `suppress_after_event` skips a tick that would redo an event-run."""
    if schedule is not None and not _plain_schedule(schedule):
        if _plain_events(schedule):  # events only
            events, schedule = (schedule, *events), None
        else:
            raise ConfigError(f"combined() takes a cron/every/at schedule first; {EXAMPLE}")
    if not events or not all(_plain_events(e) for e in events):
        raise ConfigError(f"combined() needs on_event(...) or on_webhook(...) triggers; {EXAMPLE}")
    debounce_s = optional_seconds(debounce, what="debounce")
    max_wait_s = optional_seconds(max_wait, what="max_wait")
    suppress_s = optional_seconds(suppress_after_event, what="suppress_after_event")
    if max_wait_s is not None and (debounce_s is None or max_wait_s < debounce_s):
        raise ConfigError("max_wait bounds a debounce: give debounce= too, no longer than max_wait")
    if suppress_s is not None and schedule is None:
        raise ConfigError("suppress_after_event skips scheduled ticks: give a schedule first")
    return Combined(schedule, tuple(events), debounce_s, max_wait_s, suppress_s)


def _plain_schedule(trigger: Trigger) -> bool:
    """A trigger with a clock of its own and nothing else (cron, every, at)."""
    return isinstance(trigger, Trigger) and fires_on_time(trigger) and not fires_on_events(trigger)


def _plain_events(trigger: Trigger) -> bool:
    """A trigger that fires on events only, with no schedule or debounce of its own to lose
    (on_event, on_webhook, on_notify)."""
    return (
        isinstance(trigger, Trigger)
        and fires_on_events(trigger)
        and not trigger.schedules()
        and trigger.debounce is None
    )
