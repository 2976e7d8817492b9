"""Durations as users write them: "30s", "5m", "4h", "1d", "1h30m", a number of seconds,
or a timedelta."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from .errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

Duration = str | int | float | timedelta


def seconds(value: Duration, *, what: str = "duration") -> float:
    """Parse a duration into seconds; a clear ConfigError names what was wrong."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, bool):
        raise ConfigError(f"{what} must be a duration like '30s', got {value!r}")
    elif isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:  # an int too large for a float
            result = math.inf
    elif isinstance(value, str):
        result = _parse(value.strip().lower(), what)
    else:
        raise ConfigError(f"{what} must be a duration like '30s', got {value!r}")
    if result < 0:
        raise ConfigError(f"{what} must not be negative, got {value!r}")
    if not math.isfinite(result):  # NaN, infinity, or digits past a float's range
        raise ConfigError(f"{what} must be a finite duration like '30s', got {_shown(value)}")
    return result


def _shown(value: Duration) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def optional_seconds(value: Duration | None, *, what: str = "duration") -> float | None:
    return None if value is None else seconds(value, what=what)


def _parse(text: str, what: str) -> float:
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ConfigError(
            f"{what} {text!r} is not a duration; write e.g. '500ms', '30s', '5m', '4h', '1d' "
            "or '1h30m'"
        )
    return total


def ago_or_time(text: str, now: float, *, what: str = "--since") -> float:
    """Epoch seconds of a duration ago ("1h", "30m", "2d") or an ISO-8601 time (UTC when
    it has no offset), from 1970 on: a time that no run can have is refused here rather
    than overflow a date later."""
    try:
        at = now - seconds(text, what=what)
    except ConfigError:
        return _iso_time(text, what)
    if at < 0:
        raise ConfigError(
            f"{what} {text!r} reaches back before 1970; give a shorter duration or an ISO time"
        )
    return at


def _iso_time(text: str, what: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        at = moment.timestamp()
    except (ValueError, OverflowError):
        raise ConfigError(
            f"{what} {text!r} is neither a duration (1h, 30m, 2d) nor an ISO time "
            "(2025-01-31T09:00:00Z)"
        ) from None
    if not _FIRST_UTC <= at < _LAST_UTC:
        raise ConfigError(f"{what} {text!r} is out of range: give a time from 0001-01-02 to 9998")
    return at


# The times a UTC datetime can hold, with a day's margin for offsets either side.
_FIRST_UTC = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LAST_UTC = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
