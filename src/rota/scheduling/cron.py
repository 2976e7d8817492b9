"""cron(): calendar schedules in a time zone, with an explicit DST policy.

cronsim (Debian cron semantics, seconds-first 6-field expressions) parses the expression and
finds the matching *wall-clock* times on a plain calendar; this module decides which real
instants those wall times become. cronsim's own DST handling is not used: it follows Debian's
rule (only 5-field expressions whose minute and hour fields are both specific), while ours
depends on the hour field alone and applies to 6-field expressions too. docs/scheduling.md
states the policy; tests/unit/test_cron_properties.py checks it against a brute-force reference.

The mapping works on stretches of constant UTC offset. Along one stretch a wall time and an
instant differ by the offset, so cronsim's calendar search carries over unchanged; at the end of
a stretch (a zone transition) the policy decides what the jump or the repeat means:

- hour field a wildcard or step (`*`, `*/n`): fire at every instant whose wall time matches, so
  a repeated hour fires twice and skipped wall times not at all;
- any other hour field: fire when the clock first shows a matching wall time *or a later one*:
  a wall time skipped by a jump fires at the first instant after the jump, a repeated one only
  the first time. The "high-water mark" below is the latest wall time the clock has shown.
"""

from __future__ import annotations

import difflib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from cronsim import CronSim, CronSimError

from ..errors import ConfigError
from .triggers import Trigger

EXAMPLES = 'e.g. cron("*/5 * * * *") or cron("0 9 * * 1-5", tz="Europe/London")'

_FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_LAYOUT = (
    "5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first "
    "(second minute hour day-of-month month day-of-week)"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)

# Offset changes are found by probing the zone every _PROBE seconds and bisecting where the
# offset differs. That is exact as long as a zone never changes its offset twice within one
# probe interval: across every zone in tzdata 2025/2026 the closest two offset changes are
# ~95 hours apart (Africa/Freetown, 1939), and ~167 hours in modern rules (Asia/Gaza).
_PROBE = 12 * 3600
# The largest backward jump in tzdata is 23 hours (Pacific/Kwajalein); looking back two days
# finds the latest wall time the clock has shown before any instant.
_LOOKBACK = 2 * 86400


# --------------------------------------------------------------------------- public helpers
# (also used by interval.py for every() and at())


def resolve_zone(tz: Any, *, example: str = EXAMPLES) -> zoneinfo.ZoneInfo:
    """An IANA zone from a name (or a ZoneInfo, or datetime.timezone.utc)."""
    if tz is UTC:
        return zoneinfo.ZoneInfo("UTC")
    if isinstance(tz, zoneinfo.ZoneInfo):
        if tz.key is None:  # ZoneInfo.from_file(): no name to store in the definition
            raise ConfigError(f"tz must be a named IANA zone, got {tz!r}; {example}")
        return tz
    if not isinstance(tz, str) or not tz.strip():
        raise ConfigError(
            f"tz must be an IANA time zone name such as 'Europe/London' or 'UTC', got {tz!r}; "
            f"{example}"
        )
    try:
        return zoneinfo.ZoneInfo(tz.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    close = difflib.get_close_matches(tz.strip(), zoneinfo.available_timezones(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"unknown time zone {tz!r}{hint}; use an IANA zone name such as 'Europe/London', "
        f"'America/New_York' or 'UTC'; {example}"
    ) from None


def as_utc(value: Any, *, what: str) -> datetime:
    """A timezone-aware datetime converted to UTC; naive datetimes are refused."""
    if not isinstance(value, datetime):
        raise ConfigError(
            f"{what} must be a timezone-aware datetime, e.g. "
            f"datetime(2026, 1, 1, tzinfo=timezone.utc); got {value!r}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(
            f"{what} must be timezone-aware, got the naive datetime {value.isoformat()}; "
            "write e.g. datetime(2026, 1, 1, tzinfo=timezone.utc) or "
            "datetime(2026, 1, 1, tzinfo=ZoneInfo('Europe/London'))"
        )
    return value.astimezone(UTC)


def wall_to_instant(wall: datetime, zone: tzinfo) -> datetime:
    """The first instant (UTC) at which a clock in `zone` shows `wall` or a later time.

    A wall time that exists once maps to that instant, one that exists twice (fall back) to its
    first occurrence, and one skipped by a jump forward to the instant of the jump.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: the jump lies between the readings of `wall` under the offsets after (fold=1)
    # and before (fold=0) it.
    after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo = _floor_seconds(min(first, after))
    hi = _floor_seconds(max(first, after)) + 1
    change = _first_change(zone, lo, hi, _offset(zone, lo))
    if change is None:  # pragma: no cover - zoneinfo called it nonexistent, so a jump is there
        return first
    return _utc(change)


# --------------------------------------------------------------------------- the trigger


@dataclass(frozen=True)
class Cron(Trigger):
    """A cron expression in a time zone. Build it with cron(), which validates both."""

    expr: str
    tz: str = "UTC"
    kind = "cron"

    _fields: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _zone: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)
    _hour_wildcard: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise ConfigError(
                f"cron() takes the expression as a string, got {self.expr!r}; {EXAMPLES}"
            )
        zone = resolve_zone(self.tz)
        fields = _parse(self.expr)
        object.__setattr__(self, "expr", " ".join(self.expr.split()))
        object.__setattr__(self, "tz", zone.key)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_hour_wildcard", is_wildcard_hour(fields[2]))

    # -- the Trigger answers

    def describe(self) -> str:
        return f"cron {self.expr} ({self.tz})"

    def key(self) -> str:
        """Canonical definition: 6 fields (5-field expressions get second 0), upper case, zone.

        Two definitions with the same key fire at the same times.
        """
        return f"cron:{' '.join(self._fields)}@{self.tz}"

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Fire times in [start, end), in UTC, ascending, each once."""
        first = _ceil_seconds(as_utc(start, what="fire_times start"))
        stop = _ceil_seconds(as_utc(end, what="fire_times end"))
        result: list[datetime] = []
        if first >= stop:
            return result
        for instant in self._iter_fires(first):
            if instant >= stop:
                break
            result.append(_utc(instant))
        return result

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after`; None if there is none within 50 years."""
        first = _floor_seconds(as_utc(after, what="next_fire after")) + 1
        for instant in self._iter_fires(first):
            try:
                return _utc(instant)
            except OverflowError:
                return None
        return None

    # -- the policy

    def _walls(self, lowest: int) -> Iterator[int]:
        """Matching wall times (local seconds since 1970-01-01 00:00) from `lowest` on."""
        for wall in CronSim(" ".join(self._fields), _naive(lowest - 1)):
            yield _local(wall)

    def _iter_fires(self, first: int) -> Iterator[int]:
        """Fire instants (Unix seconds) from `first` on, ascending, each once."""
        zone = self._zone
        specific = not self._hour_wildcard
        try:
            start = first  # start of the current stretch of constant offset
            offset = _offset(zone, start)
            clear = start  # the offset is known to be constant on [start, clear]
            # Specific hours only: wall times before `high` were shown (or jumped over).
            high = _high_water(zone, first) if specific else 0
            last: int | None = None
            while True:
                lowest = start + offset  # the first wall time this stretch shows
                if specific:
                    if high < lowest:  # a jump forward skipped the wall times [high, lowest)
                        skipped = next(self._walls(high), None)
                        if skipped is None:
                            return
                        if skipped < lowest:
                            yield start
                            last = start
                    lowest = max(lowest, high)
                for wall in self._walls(lowest):
                    instant = wall - offset
                    if instant > clear:
                        change = _first_change(zone, clear, instant, offset)
                        if change is not None:  # the stretch ends before this wall time
                            if specific:
                                high = max(high, change + offset)
                            start, offset, clear = change, _offset(zone, change), change
                            break
                        clear = instant
                    if last is None or instant > last:
                        yield instant
                        last = instant
                    if specific:
                        high = max(high, wall + 1)
                else:
                    return  # cronsim found no match within 50 years
        except OverflowError:  # past year 9999
            return


def cron(expr: str, tz: str | tzinfo = "UTC") -> Cron:
    """A cron schedule: 5 fields, or 6 with seconds first; wall times in `tz` (IANA name).

    Invalid expressions and unknown zones fail here, at definition time.
    """
    return Cron(expr, tz if isinstance(tz, str) else resolve_zone(tz).key)


def is_wildcard_hour(hour_field: str) -> bool:
    """`*` or `*/n`: such schedules fire at every matching real instant (see module doc)."""
    if hour_field == "*":
        return True
    base, slash, step = hour_field.partition("/")
    return base == "*" and bool(slash) and _is_number(step)


# --------------------------------------------------------------------------- parsing


def _parse(expr: str) -> tuple[str, ...]:
    """Validate; return the canonical 6 fields (upper case, `?` as `*`)."""
    parts = expr.split()
    if len(parts) not in (5, 6):
        extra = ""
        if len(parts) == 7:
            extra = " (a seventh, year field as in Quartz is not supported)"
        raise ConfigError(
            f"cron expression {expr!r} has {len(parts)} fields{extra}; it needs {_LAYOUT}, "
            f'e.g. cron("*/5 * * * *") for every 5 minutes or cron("*/5 * * * * *") for every '
            "5 seconds"
        )
    if len(parts) == 5:
        parts.insert(0, "0")
    # Quartz and Spring write `?` for "no specific value" in the day fields; that is `*` here.
    for index in (3, 5):
        if parts[index] == "?":
            parts[index] = "*"
    for index, token in enumerate(parts):
        problem = _field_problem(index, token)
        if problem:
            raise ConfigError(_bad_field(expr, index, token, problem))
    parts = [_fix_single_range(index, part.upper()) for index, part in enumerate(parts)]
    try:
        CronSim(" ".join(parts), datetime(2000, 1, 1))
    except CronSimError as exc:
        name = str(exc).removeprefix("Bad ").strip()
        index = _FIELD_NAMES.index(name) if name in _FIELD_NAMES else -1
        if index == 3:
            problem = "no month allowed by the month field has that many days"
        else:
            problem = "it is not valid cron syntax"
        token = parts[index] if index >= 0 else expr
        raise ConfigError(_bad_field(expr, index, token, problem)) from None
    return tuple(parts)


def _fix_single_range(index: int, token: str) -> str:
    """Write a one-value range with a step (`6-6/2`) as the value itself (`6`).

    cronsim 2.8 reads such a term as "from 6 to the end of the field in steps of 2", because
    it takes any single-value base before '/' as a start value (`6/2`); cron means just 6.
    """
    terms = []
    for term in token.split(","):
        base, slash, _ = term.partition("/")
        first, dash, last = base.partition("-")
        if slash and dash and _value(index, first) == _value(index, last):
            term = first
        terms.append(term)
    return ",".join(terms)


def _bad_field(expr: str, index: int, token: str, problem: str) -> str:
    where = f"the {_FIELD_NAMES[index]} field {token!r}" if index >= 0 else "it"
    return (
        f"invalid cron expression {expr!r}: {where} is wrong: {problem}. "
        f"A cron expression has {_LAYOUT}; {EXAMPLES}"
    )


def _field_problem(index: int, token: str) -> str | None:
    """Why a field is invalid, in words, or None if it looks valid."""
    for term in token.split(","):
        if not term:
            return "it has an empty list item"
        base, slash, step = term.partition("/")
        if slash:
            if not _is_number(step):
                return f"the step {step!r} in {term!r} must be a whole number"
            if int(step) == 0:
                return f"the step in {term!r} must be at least 1"
        if base == "*":
            continue
        if index == 3 and base.upper() in ("L", "LW"):
            continue
        if index == 5 and "#" in base and not slash:
            day, _, nth = base.partition("#")
            if not _is_number(nth) or not 1 <= int(nth) <= 5:
                return f"in {term!r} the week number after '#' must be 1 to 5"
            problem = _value_problem(index, day)
            if problem:
                return problem
            continue
        if index == 5 and base.upper().endswith("L") and not slash:
            if not _is_number(base[:-1]):
                return f"{term!r}: 'L' (last) needs a day number before it, e.g. 5L"
            problem = _value_problem(index, base[:-1])
            if problem:
                return problem
            continue
        first, dash, last = base.partition("-")
        for value in (first, last) if dash else (first,):
            problem = _value_problem(index, value)
            if problem:
                return problem
        if dash and _value(index, first) > _value(index, last):
            return f"the range {base!r} runs backwards; write {last}-{first} or a list"
    return None


def _value_problem(index: int, value: str) -> str | None:
    low, high = _BOUNDS[index]
    if not value:
        return "a value is missing"
    if (index == 4 and value.upper() in _MONTHS) or (index == 5 and value.upper() in _DAYS):
        return None
    if not _is_number(value):
        names = {4: " or a month name (JAN-DEC)", 5: " or a day name (SUN-SAT)"}.get(index, "")
        return f"{value!r} is not a number{names}"
    if not low <= int(value) <= high:
        return f"{int(value)} is out of range {low}-{high}"
    return None


def _value(index: int, value: str) -> int:
    if index == 4 and value.upper() in _MONTHS:
        return _MONTHS.index(value.upper()) + 1
    if index == 5 and value.upper() in _DAYS:
        return _DAYS.index(value.upper())
    return int(value)


def _is_number(text: str) -> bool:
    return bool(text) and all(ch in "0123456789" for ch in text)


# --------------------------------------------------------------------------- time arithmetic


def _utc(ts: int) -> datetime:
    return _EPOCH + timedelta(seconds=ts)


def _floor_seconds(dt: datetime) -> int:
    return (dt - _EPOCH) // _SECOND


def _ceil_seconds(dt: datetime) -> int:
    return -(-((dt - _EPOCH) // _MICROSECOND) // 1_000_000)


def _naive(local: int) -> datetime:
    return _EPOCH_NAIVE + timedelta(seconds=local)


def _local(wall: datetime) -> int:
    return (wall - _EPOCH_NAIVE) // _SECOND


def _offset(zone: tzinfo, ts: int) -> int:
    """UTC offset of `zone` at the instant `ts`, in whole seconds."""
    offset = _utc(ts).astimezone(zone).utcoffset()
    assert offset is not None
    return offset // _SECOND


def _first_change(zone: tzinfo, low: int, high: int, offset: int) -> int | None:
    """The first instant in (low, high] whose offset is not `offset` (the offset at `low`)."""
    probe = low
    while probe < high:
        nxt = min(probe + _PROBE, high)
        if _offset(zone, nxt) != offset:
            before, after = probe, nxt  # offset(before) == offset != offset(after)
            while after - before > 1:
                middle = (before + after) // 2
                if _offset(zone, middle) == offset:
                    before = middle
                else:
                    after = middle
            return after
        probe = nxt
    return None


def _high_water(zone: tzinfo, first: int) -> int:
    """One past the latest wall time (local seconds) the clock showed before `first`."""
    high = first + _offset(zone, first - 1)
    probe = first - _LOOKBACK
    offset = _offset(zone, probe)
    while True:
        change = _first_change(zone, probe, first - 1, offset)
        if change is None:
            return high
        high = max(high, change + offset)
        probe, offset = change, _offset(zone, change)
