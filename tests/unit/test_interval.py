"""every() and at(): elapsed-time intervals, deterministic jitter, one-off times."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rota.errors import ConfigError
from rota.scheduling.interval import At, Every, at, every
from rota.scheduling.triggers import Trigger

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --------------------------------------------------------------------------- every


def test_every_fires_on_the_epoch_grid_by_default() -> None:
    trigger = every("30s")
    assert isinstance(trigger, Trigger)
    assert trigger.fire_times(utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 1, 40)) == [
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 1, 0),
        utc(2026, 1, 1, 0, 1, 30),
    ]
    # 7 minutes does not divide an hour: the grid is still anchored at the Unix epoch, so
    # every process agrees on it whenever it starts.
    times = every("7m").fire_times(utc(2026, 5, 1), utc(2026, 5, 1, 2))
    assert len(times) == 17
    assert all((t - EPOCH) % timedelta(minutes=7) == timedelta(0) for t in times)
    assert every("7m").fire_times(utc(2026, 5, 1), utc(2026, 5, 1, 2)) == times


def test_every_start_inclusive_end_exclusive() -> None:
    trigger = every("1m")
    assert trigger.fire_times(utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 3)) == [
        utc(2026, 1, 1, 0, 1),
        utc(2026, 1, 1, 0, 2),
    ]
    assert trigger.fire_times(utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 1)) == []


def test_every_anchored_at_start_and_not_before_it() -> None:
    start = utc(2026, 1, 1, 0, 30)
    trigger = every("1h", start=start)
    assert trigger.fire_times(utc(2025, 12, 31), utc(2026, 1, 1, 3)) == [
        utc(2026, 1, 1, 0, 30),
        utc(2026, 1, 1, 1, 30),
        utc(2026, 1, 1, 2, 30),
    ]
    assert trigger.next_fire(utc(2020, 1, 1)) == start


def test_every_follows_elapsed_time_across_dst() -> None:
    # Anchored at 00:30 London time on the day clocks go forward (2026-03-29 01:00 GMT).
    trigger = every("1h", start=datetime(2026, 3, 29, 0, 30, tzinfo=LONDON))
    times = trigger.fire_times(utc(2026, 3, 29), utc(2026, 3, 29, 4))
    assert times == [
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 2, 30),
        utc(2026, 3, 29, 3, 30),
    ]
    assert [t.astimezone(LONDON).hour for t in times] == [0, 2, 3, 4]  # wall clock jumps
    assert trigger.start == utc(2026, 3, 29, 0, 30) and trigger.start.tzinfo is UTC


def test_every_accepts_timedelta_numbers_and_sub_second_intervals() -> None:
    assert every(timedelta(minutes=5)) == every("5m") == every(300)
    times = every("500ms").fire_times(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 2))
    assert [t.microsecond for t in times] == [0, 500_000, 0, 500_000]


def test_every_next_fire_strictly_after() -> None:
    trigger = every("10s")
    assert trigger.next_fire(utc(2026, 1, 1, 0, 0, 10)) == utc(2026, 1, 1, 0, 0, 20)
    assert trigger.next_fire(utc(2026, 1, 1, 0, 0, 9, 999_999)) == utc(2026, 1, 1, 0, 0, 10)


def test_every_describe_and_key() -> None:
    assert every("90s").describe() == "every 1m30s"
    assert every("500ms").describe() == "every 500ms"
    assert every("1d", jitter="10m").describe() == "every 1d (jitter 10m)"
    anchored = every("1h", start=utc(2026, 1, 1, 0, 30))
    assert anchored.describe() == "every 1h from 2026-01-01T00:30:00+00:00"
    assert every("5m").key() == every(300).key() == every(timedelta(minutes=5)).key()
    keys = {every("5m").key(), every("5m", jitter="1m").key(), anchored.key(), every("6m").key()}
    assert len(keys) == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        anchored.interval = timedelta(1)  # type: ignore[misc]


def test_jitter_is_deterministic_bounded_and_varied() -> None:
    window = (utc(2026, 1, 1), utc(2026, 1, 1, 5))
    trigger = every("5m", jitter="1m")
    times = trigger.fire_times(*window)
    # A second scheduler building the same definition computes the same times.
    assert every("5m", jitter=timedelta(minutes=1)).fire_times(*window) == times
    assert len(times) == 60
    delays = [(t - EPOCH) % timedelta(minutes=5) for t in times]
    assert all(timedelta(0) <= d < timedelta(minutes=1) for d in delays)
    assert len(set(delays)) > 50  # spread out, not one constant offset
    # The delay depends on the definition too.
    other = every("5m", jitter="1m", start=utc(2000, 1, 1)).fire_times(*window)
    assert other != times


def test_jitter_window_edges() -> None:
    trigger = every("5m", jitter="1m")
    times = trigger.fire_times(utc(2026, 1, 1), utc(2026, 1, 2))
    delayed = next(t for t in times if t.second or t.microsecond)
    # A fire whose nominal time is before the window still belongs to the window it lands in.
    assert trigger.fire_times(delayed, delayed + timedelta(microseconds=1)) == [delayed]
    assert trigger.fire_times(delayed - timedelta(seconds=1), delayed) == []
    assert trigger.next_fire(delayed - timedelta(microseconds=1)) == delayed


@settings(max_examples=60, deadline=None)
@given(
    interval=st.integers(1, 10_000_000),
    jitter_share=st.floats(0, 1),
    offset=st.integers(-(10**12), 10**12),
    periods=st.floats(0, 120),
)
def test_every_next_fire_chain_reproduces_fire_times(
    interval: int, jitter_share: float, offset: int, periods: float
) -> None:
    jitter = timedelta(microseconds=int(interval * jitter_share))
    trigger = every(timedelta(microseconds=interval), jitter=jitter)
    length = int(interval * periods)
    start = utc(2026, 1, 1) + timedelta(microseconds=offset)
    end = start + timedelta(microseconds=length)
    expected = trigger.fire_times(start, end)[:100]
    assert expected == sorted(set(expected))
    assert all(start <= t < end for t in expected)
    chained, cursor = [], start - timedelta(microseconds=1)
    while len(chained) < len(expected):
        fire = trigger.next_fire(cursor)
        assert fire is not None
        chained.append(fire)
        cursor = fire
    assert chained == expected


def test_every_errors() -> None:
    for bad in (0, "0s", timedelta(0), 1e-7):
        with pytest.raises(ConfigError, match="greater than zero"):
            every(bad)
    for negative in (-5, timedelta(seconds=-5)):
        with pytest.raises(ConfigError, match="negative"):
            every(negative)
    with pytest.raises(ConfigError, match="not a duration"):
        every("soon")
    with pytest.raises(ConfigError, match="must not exceed the interval"):
        every("1m", jitter="2m")
    with pytest.raises(ConfigError, match="timezone-aware"):
        every("1m", start=datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="timezone-aware"):
        every("1m").fire_times(datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ConfigError, match="timezone-aware"):
        every("1m").next_fire(datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="greater than zero"):
        Every(timedelta(seconds=-1))


# --------------------------------------------------------------------------- at


def test_at_fires_once() -> None:
    when = utc(2026, 6, 1, 9)
    trigger = at(when)
    assert isinstance(trigger, Trigger)
    assert trigger.fire_times(utc(2026, 1, 1), utc(2027, 1, 1)) == [when]
    assert trigger.fire_times(when, when + timedelta(microseconds=1)) == [when]
    assert trigger.fire_times(utc(2026, 1, 1), when) == []
    assert trigger.next_fire(when - timedelta(microseconds=1)) == when
    assert trigger.next_fire(when) is None
    assert trigger.next_fire(utc(2030, 1, 1)) is None  # in the past
    assert trigger.describe() == "at 2026-06-01T09:00:00+00:00"
    assert trigger.key() == "at:2026-06-01T09:00:00.000000+00:00"


def test_at_normalises_to_utc() -> None:
    trigger = at(datetime(2026, 6, 1, 10, tzinfo=LONDON))
    assert trigger == at(utc(2026, 6, 1, 9))
    assert trigger.when.tzinfo is UTC
    assert at("2026-06-01T10:00:00+01:00") == trigger


def test_at_naive_with_tz_and_the_dst_policy() -> None:
    assert at(datetime(2026, 6, 1, 10), tz="Europe/London").when == utc(2026, 6, 1, 9)
    assert at("2026-06-01T10:00", tz=LONDON).when == utc(2026, 6, 1, 9)
    # Skipped by the jump forward: the first instant after it (03:00 EDT).
    assert at(datetime(2026, 3, 8, 2, 30), tz="America/New_York").when == utc(2026, 3, 8, 7)
    # Repeated by the fall back: the first occurrence (01:30 EDT).
    assert at(datetime(2026, 11, 1, 1, 30), tz="America/New_York").when == utc(2026, 11, 1, 5, 30)
    assert at(datetime(2026, 11, 1, 1, 30, fold=1), tz="America/New_York").when == utc(
        2026, 11, 1, 5, 30
    )


def test_at_errors() -> None:
    with pytest.raises(ConfigError, match="naive"):
        at(datetime(2026, 6, 1, 9))
    with pytest.raises(ConfigError, match="one or the other"):
        at(utc(2026, 6, 1, 9), tz="Europe/London")
    with pytest.raises(ConfigError, match="unknown time zone"):
        at(datetime(2026, 6, 1, 9), tz="Europe/Lundon")
    with pytest.raises(ConfigError, match="ISO 8601"):
        at("next tuesday")
    with pytest.raises(ConfigError, match="takes a datetime"):
        at(1234)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timezone-aware"):
        At(datetime(2026, 6, 1))
    with pytest.raises(ConfigError, match="timezone-aware"):
        at(utc(2026, 6, 1)).fire_times(datetime(2026, 1, 1), utc(2027, 1, 1))
