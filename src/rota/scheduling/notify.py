"""on_notify(): run a job when PostgreSQL sends NOTIFY on a channel the user names.

    @app.job(trigger=on_notify("orders_changed"))
    def sync_orders(ctx, payload): ...

    -- in the database, e.g. from a trigger:  SELECT pg_notify('orders_changed', '{"id": 7}');

The scheduler process (`rota scheduler`, `rota dev`) LISTENs on every channel the app names and
stores each notification as an event (name = channel, source = "pg-notify"; a JSON payload is
parsed, any other text is passed as a string), which enqueues the runs. PostgreSQL delivers
NOTIFY only to sessions listening at that moment: a notification sent while no scheduler runs
is not seen. Use it as a low-latency trigger next to a schedule (see combined()), not as a
queue.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..model import Event
from .triggers import NOTIFY_SOURCE, EventFilter, OnEvent, Trigger

log = logging.getLogger("rota.notify")
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class OnNotify(Trigger):
    channel: str
    filter: EventFilter = None
    kind = "notify"

    def matches(self, channel: str, payload: Any) -> bool:
        return OnEvent(self.channel, self.filter).matches(channel, payload)

    def matches_event(self, event: Event) -> bool:
        """Notifications on this channel (stored by the scheduler's listener)."""
        return event.source == NOTIFY_SOURCE and self.matches(event.name, event.payload)

    def channels(self) -> frozenset[str]:
        return frozenset({self.channel})

    def describe(self) -> str:
        return f"pg notify {self.channel}"


def on_notify(channel: str, filter: EventFilter = None) -> OnNotify:
    """Run on PostgreSQL NOTIFY on `channel`, for database changes seen in milliseconds without
    polling; notifications sent while no scheduler listens are lost, so pair it with a schedule."""
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise ConfigError(
            f"on_notify channel {channel!r} must be a lower-case SQL identifier, "
            "e.g. on_notify('orders_changed')"
        )
    return OnNotify(channel, filter)


def parse_payload(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


class NotifyListener:
    """A thread that LISTENs on the channels and hands each notification to `deliver`."""

    def __init__(
        self,
        connect: Callable[[], Any],
        channels: Sequence[str],
        deliver: Callable[[str, Any], None],
    ) -> None:
        self.connect = connect
        self.channels = sorted(set(channels))
        self.deliver = deliver
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rota-notify", daemon=True)

    def start(self) -> NotifyListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.connect() as conn:
                    for channel in self.channels:
                        conn.execute(f'LISTEN "{channel}"')
                    self.ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._deliver(note.channel, note.payload)
            except Exception:
                log.exception("LISTEN connection failed; reconnecting")
                self.ready.clear()
                self._stop.wait(1.0)

    def _deliver(self, channel: str, text: str) -> None:
        try:
            self.deliver(channel, parse_payload(text))
        except Exception:  # one bad notification must not stop the listener
            log.exception("could not store notification on %s", channel)
