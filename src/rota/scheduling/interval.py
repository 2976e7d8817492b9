"""every() and at(): triggers on elapsed time and on one instant.

Both work on instants, never on wall-clock time, so DST does not touch them (at() with a naive
datetime and `tz=` is the one place a wall time is read, with the cron DST policy).
Times are kept as whole microseconds since the Unix epoch so that every process, on any
machine, computes exactly the same fire times.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..durations import Duration, seconds
from ..errors import ConfigError
from .cron import as_utc, resolve_zone, wall_to_instant
from .triggers import Trigger

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_EVERY_EXAMPLE = "e.g. every('30s'), every('5m', jitter='10s') or every(timedelta(hours=1))"
_AT_EXAMPLE = (
    "e.g. at(datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)) or "
    "at(datetime(2026, 6, 1, 9, 0), tz='Europe/London')"
)


@dataclass(frozen=True)
class Every(Trigger):
    """Fires at start, start + interval, start + 2 * interval, ... (elapsed time, UTC).

    With jitter, each fire is delayed by an offset in [0, jitter) derived from a hash of the
    trigger's key and the nominal fire time, so every scheduler computes the same delays.
    Build it with every().
    """

    interval: timedelta
    start: datetime = _EPOCH
    jitter: timedelta = timedelta(0)
    kind = "every"

    def __post_init__(self) -> None:
        if not isinstance(self.interval, timedelta) or self.interval <= timedelta(0):
            raise ConfigError(
                f"every() needs an interval greater than zero, got {self.interval!r}; "
                f"{_EVERY_EXAMPLE}"
            )
        object.__setattr__(self, "start", as_utc(self.start, what="every() start"))
        if not isinstance(self.jitter, timedelta) or self.jitter < timedelta(0):
            raise ConfigError(f"every() jitter must be a duration >= 0, got {self.jitter!r}")
        if self.jitter > self.interval:
            raise ConfigError(
                f"every() jitter ({_format(self._jitter_us)}) must not exceed the interval "
                f"({_format(self._interval_us)}), or runs would change order; "
                f"{_EVERY_EXAMPLE}"
            )

    @property
    def _interval_us(self) -> int:
        return self.interval // _MICROSECOND

    @property
    def _jitter_us(self) -> int:
        return self.jitter // _MICROSECOND

    @property
    def _start_us(self) -> int:
        return (self.start - _EPOCH) // _MICROSECOND

    def describe(self) -> str:
        text = f"every {_format(self._interval_us)}"
        if self._start_us != 0:
            text += f" from {self.start.isoformat()}"
        if self._jitter_us:
            text += f" (jitter {_format(self._jitter_us)})"
        return text

    def key(self) -> str:
        return (
            f"every:interval_us={self._interval_us}:start_us={self._start_us}"
            f":jitter_us={self._jitter_us}"
        )

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Fire times in [start, end), in UTC, ascending."""
        low = _to_us(as_utc(start, what="fire_times start"))
        high = _to_us(as_utc(end, what="fire_times end"))
        result: list[datetime] = []
        index = self._first_index(low)
        while True:
            fire = self._fire_us(index)
            if fire >= high:
                return result
            if fire >= low:
                try:
                    result.append(_from_us(fire))
                except OverflowError:
                    return result
            index += 1

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after`."""
        low = _to_us(as_utc(after, what="next_fire after")) + 1
        index = self._first_index(low)
        while self._fire_us(index) < low:
            index += 1
        try:
            return _from_us(self._fire_us(index))
        except OverflowError:
            return None

    def _delay(self, nominal_us: int) -> int:
        """The delay (microseconds) of the fire whose nominal time is `nominal_us`."""
        if not self._jitter_us:
            return 0
        digest = hashlib.sha256(f"{self.key()}|{nominal_us}".encode()).digest()
        return int.from_bytes(digest[:8], "big") * self._jitter_us >> 64

    def _fire_us(self, index: int) -> int:
        nominal = self._start_us + index * self._interval_us
        return nominal + self._delay(nominal)

    def _first_index(self, low: int) -> int:
        """An index at or before the first fire at or after `low` (never before 0)."""
        # A fire is at most jitter late, so nominal times before low - jitter cannot reach low.
        return max(0, (low - self._jitter_us - self._start_us) // self._interval_us)


@dataclass(frozen=True)
class At(Trigger):
    """Fires once, at `when` (UTC). Build it with at()."""

    when: datetime
    kind = "at"

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", as_utc(self.when, what="at()"))

    def describe(self) -> str:
        return f"at {self.when.isoformat()}"

    def key(self) -> str:
        return f"at:{self.when.isoformat(timespec='microseconds')}"

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        low = as_utc(start, what="fire_times start")
        high = as_utc(end, what="fire_times end")
        return [self.when] if low <= self.when < high else []

    def next_fire(self, after: datetime) -> datetime | None:
        return self.when if self.when > as_utc(after, what="next_fire after") else None


def every(
    interval: Duration, start: datetime | None = None, jitter: Duration | None = None
) -> Every:
    """Fire every `interval` ("30s", "5m", a timedelta) of elapsed time, from `start`.

    `start` (timezone-aware) is the first fire time and the anchor of all others; by default
    the Unix epoch, so that every process computes the same fire times. `jitter` delays each
    fire by a deterministic amount in [0, jitter).
    """
    interval_us = _duration_us(interval, what="every() interval")
    if interval_us <= 0:
        raise ConfigError(
            f"every() needs an interval greater than zero, got {interval!r}; {_EVERY_EXAMPLE}"
        )
    jitter_us = 0 if jitter is None else _duration_us(jitter, what="every() jitter")
    return Every(
        timedelta(microseconds=interval_us),
        _EPOCH if start is None else start,
        timedelta(microseconds=jitter_us),
    )


def at(when: datetime | str, tz: Any = None) -> At:
    """Fire once at `when`: a timezone-aware datetime, or a naive one with `tz=` (IANA name).

    An ISO 8601 string is read as a datetime. A naive time that the zone skips (spring
    forward) fires at the first instant after the jump; one that occurs twice (fall back)
    fires at its first occurrence - the same rule as cron with specific hours.
    """
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            raise ConfigError(
                f"at() cannot read {when!r} as an ISO 8601 time; {_AT_EXAMPLE}"
            ) from None
    if not isinstance(when, datetime):
        raise ConfigError(f"at() takes a datetime, got {when!r}; {_AT_EXAMPLE}")
    if when.tzinfo is None:
        if tz is None:
            raise ConfigError(
                f"at() got the naive datetime {when.isoformat()}; give it a tzinfo or pass "
                f"tz=; {_AT_EXAMPLE}"
            )
        return At(wall_to_instant(when, resolve_zone(tz, example=_AT_EXAMPLE)))
    if tz is not None:
        raise ConfigError(
            f"at() got a timezone-aware datetime ({when.isoformat()}) and tz={tz!r}; "
            "give one or the other"
        )
    return At(when)


def _duration_us(value: Duration, *, what: str) -> int:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ConfigError(f"{what} must not be negative, got {value!r}")
        return value // _MICROSECOND
    return round(seconds(value, what=what) * 1_000_000)


def _to_us(dt: datetime) -> int:
    return (dt - _EPOCH) // _MICROSECOND


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_UNITS = (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000))


def _format(us: int) -> str:
    """Microseconds as a duration users write: 90s -> "1m30s", 0.5s -> "500ms"."""
    if us == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, us = divmod(us, size)
        if count:
            parts.append(f"{count}{unit}")
    if us:
        parts.append(f"{us // 1000}ms" if us % 1000 == 0 else f"{us}us")
    return "".join(parts)
