"""A routine's `triggers:` as rota triggers, and the fixed-offset jitter of its cron ones."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..durations import seconds
from ..scheduling import cron, every, on_event, on_webhook
from ..scheduling.triggers import Trigger
from .spec import ApiTrigger, CronTrigger, EventTrigger, EveryTrigger, TriggerSpec


@dataclass(frozen=True)
class Jittered(Trigger):
    """`inner`'s fire times, each moved later by the same `offset` (seconds): a spread
    chosen once per routine (from its name), so every scheduler computes the same times."""

    inner: Trigger
    offset: float
    kind = "jittered"

    def describe(self) -> str:
        return f"{self.inner.describe()} (+{self.offset:g}s jitter)"

    def key(self) -> str:
        return f"{self.inner.key()}+{self.offset!r}s"

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        shift = timedelta(seconds=self.offset)
        return [t + shift for t in self.inner.fire_times(start - shift, end - shift)]

    def next_fire(self, after: datetime) -> datetime | None:
        shift = timedelta(seconds=self.offset)
        found = self.inner.next_fire(after - shift)
        return None if found is None else found + shift


def offset_for(name: str, jitter_s: float) -> float:
    """A whole number of seconds in [0, jitter), the same for a name every time."""
    if jitter_s < 1:
        return 0.0
    digest = hashlib.sha256(name.encode()).digest()
    return float(int.from_bytes(digest[:8], "big") % int(jitter_s))


def build(name: str, spec: TriggerSpec) -> Trigger | None:
    """The rota trigger of one `triggers:` entry; None for `api` (fired over HTTP)."""
    if isinstance(spec, CronTrigger):
        base = cron(spec.cron, tz=spec.timezone)
        if spec.jitter is None:
            return base
        return Jittered(base, offset_for(name, seconds(spec.jitter, what="jitter")))
    if isinstance(spec, EveryTrigger):
        return every(spec.every)
    if isinstance(spec, EventTrigger):
        return on_event(spec.event, spec.match)
    if isinstance(spec, ApiTrigger):
        return None
    return on_webhook(spec.webhook, spec.secret_env)
