"""cron(): worked examples of the syntax and the DST policy (docs/scheduling.md), and errors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rota.errors import ConfigError
from rota.scheduling.cron import Cron, cron
from rota.scheduling.triggers import Trigger

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    """Fire times as local wall clock with offset, e.g. '2026-03-08 03:00 -0400'."""
    return [t.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %z") for t in times]


# --------------------------------------------------------------------------- basics


def test_every_five_seconds_with_seconds_first() -> None:
    trigger = cron("*/5 * * * * *")
    assert trigger.fire_times(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 20)) == [
        utc(2026, 1, 1, 0, 0, 0),
        utc(2026, 1, 1, 0, 0, 5),
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 15),
    ]


def test_fire_times_start_inclusive_end_exclusive_and_utc() -> None:
    trigger = cron("*/5 * * * * *", tz="Europe/London")
    times = trigger.fire_times(utc(2026, 7, 1, 12, 0, 5), utc(2026, 7, 1, 12, 0, 15))
    assert times == [utc(2026, 7, 1, 12, 0, 5), utc(2026, 7, 1, 12, 0, 10)]
    assert all(t.tzinfo is UTC for t in times)
    # A start with microseconds rounds up to the next whole second.
    later = trigger.fire_times(
        utc(2026, 7, 1, 12, 0, 5) + timedelta(microseconds=1), utc(2026, 7, 1, 12, 0, 15)
    )
    assert later == [utc(2026, 7, 1, 12, 0, 10)]
    assert trigger.fire_times(utc(2026, 7, 1, 12), utc(2026, 7, 1, 12)) == []
    assert trigger.fire_times(utc(2026, 7, 1, 13), utc(2026, 7, 1, 12)) == []


def test_five_fields_fire_on_the_minute() -> None:
    trigger = cron("*/20 * * * *")
    assert trigger.fire_times(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11)) == [
        utc(2026, 1, 1, 10, 0),
        utc(2026, 1, 1, 10, 20),
        utc(2026, 1, 1, 10, 40),
    ]


def test_aware_bounds_in_any_zone_are_instants() -> None:
    trigger = cron("0 12 * * *")
    start = datetime(2026, 7, 1, 13, 0, tzinfo=LONDON)  # 12:00 UTC
    assert trigger.fire_times(start, start + timedelta(days=1)) == [utc(2026, 7, 1, 12)]


def test_next_fire_is_strictly_after() -> None:
    trigger = cron("0 9 * * 1-5", tz="Europe/London")
    # Friday 2026-07-03 09:00 BST (08:00 UTC) -> Monday 2026-07-06 09:00 BST
    assert trigger.next_fire(utc(2026, 7, 3, 7, 59, 59)) == utc(2026, 7, 3, 8)
    assert trigger.next_fire(utc(2026, 7, 3, 8)) == utc(2026, 7, 6, 8)
    assert trigger.next_fire(utc(2026, 7, 3, 8) - timedelta(microseconds=1)) == utc(2026, 7, 3, 8)


def test_next_fire_none_when_no_time_is_left() -> None:
    assert cron("0 0 1 1 *").next_fire(utc(9999, 6, 1)) is None
    assert cron("0 0 1 1 *").next_fire(utc(9998, 6, 1)) == utc(9999, 1, 1)


def test_sparse_schedule_next_fire() -> None:
    leap = cron("0 12 29 2 *", tz="Europe/London")
    assert leap.next_fire(utc(2026, 3, 1)) == utc(2028, 2, 29, 12)


def test_day_names_month_names_last_day_and_question_mark() -> None:
    assert cron("0 0 12 ? * mon").fire_times(utc(2026, 6, 1), utc(2026, 6, 15)) == [
        utc(2026, 6, 1, 12),
        utc(2026, 6, 8, 12),
    ]
    assert cron("0 0 L feb *").fire_times(utc(2028, 1, 1), utc(2028, 12, 31)) == [utc(2028, 2, 29)]


def test_day_of_month_and_day_of_week_are_or_when_both_restricted() -> None:
    # Debian/Vixie cron: the 13th OR a Friday (neither field starts with '*').
    times = cron("0 0 13 * 5").fire_times(utc(2026, 2, 1), utc(2026, 3, 1))
    assert [t.day for t in times] == [6, 13, 20, 27]  # 2026-02-13 is itself a Friday
    times = cron("0 0 13 * 1").fire_times(utc(2026, 2, 1), utc(2026, 3, 1))
    assert [t.day for t in times] == [2, 9, 13, 16, 23]


def test_single_value_range_with_step_is_that_value() -> None:
    # cronsim alone reads 6-6/1 as 6/1 (6 to 23); cron means hour 6 only.
    times = cron("0 6-6/1 * * *").fire_times(utc(2026, 1, 1), utc(2026, 1, 3))
    assert times == [utc(2026, 1, 1, 6), utc(2026, 1, 2, 6)]
    assert cron("0 6-6/1,8 * * *").key() == "cron:0 0 6,8 * * *@UTC"


def test_trigger_value_describe_and_key() -> None:
    trigger = cron("*/5  *  * * * *", tz="Europe/London")
    assert isinstance(trigger, Trigger)
    assert trigger.describe() == "cron */5 * * * * * (Europe/London)"
    assert trigger.key() == "cron:*/5 * * * * *@Europe/London"
    with pytest.raises(dataclasses.FrozenInstanceError):
        trigger.expr = "* * * * *"  # type: ignore[misc]
    # Same definition, same key and equal values; 5 fields are 6 with second 0.
    assert cron("0 9 * * mon-fri", "UTC").key() == cron("0 0 9 * * MON-FRI").key()
    assert cron("*/5 * * * * *", tz=LONDON) == trigger
    assert hash(cron("*/5 * * * * *", tz=LONDON)) == hash(trigger)
    assert cron("*/5 * * * * *").key() != trigger.key()
    assert cron("*/5 * * * * *").key() != cron("*/5 * * * *").key()


# --------------------------------------------------------------------------- DST examples


def test_nine_am_weekdays_in_london_across_both_2026_changes() -> None:
    trigger = cron("0 9 * * 1-5", tz="Europe/London")
    # Clocks go forward on Sunday 2026-03-29: 09:00 is 09:00 UTC before, 08:00 UTC after.
    spring = trigger.fire_times(utc(2026, 3, 26), utc(2026, 4, 1))
    assert spring == [
        utc(2026, 3, 26, 9),
        utc(2026, 3, 27, 9),
        utc(2026, 3, 30, 8),
        utc(2026, 3, 31, 8),
    ]
    # Clocks go back on Sunday 2026-10-25.
    autumn = trigger.fire_times(utc(2026, 10, 22), utc(2026, 10, 28))
    assert autumn == [
        utc(2026, 10, 22, 8),
        utc(2026, 10, 23, 8),
        utc(2026, 10, 26, 9),
        utc(2026, 10, 27, 9),
    ]
    assert {t.astimezone(LONDON).hour for t in spring + autumn} == {9}


def test_new_york_spring_forward_runs_skipped_times_at_the_jump() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:00-02:59 do not exist.
    window = (utc(2026, 3, 7), utc(2026, 3, 10))
    assert local(cron("0 2 * * *", tz="America/New_York").fire_times(*window), NEW_YORK) == [
        "2026-03-07 02:00:00 -0500",
        "2026-03-08 03:00:00 -0400",
        "2026-03-09 02:00:00 -0400",
    ]
    assert local(cron("30 2 * * *", tz="America/New_York").fire_times(*window), NEW_YORK) == [
        "2026-03-07 02:30:00 -0500",
        "2026-03-08 03:00:00 -0400",  # at the first instant after the jump, not 03:30
        "2026-03-09 02:30:00 -0400",
    ]


def test_new_york_fall_back_runs_repeated_times_once() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00-01:59 happen twice.
    window = (utc(2026, 10, 31), utc(2026, 11, 3))
    assert local(cron("30 1 * * *", tz="America/New_York").fire_times(*window), NEW_YORK) == [
        "2026-10-31 01:30:00 -0400",
        "2026-11-01 01:30:00 -0400",  # the first occurrence only
        "2026-11-02 01:30:00 -0500",
    ]
    # 02:00 and 02:30 exist once that day (after the repeated hour), in EST.
    assert local(cron("0 2 * * *", tz="America/New_York").fire_times(*window), NEW_YORK) == [
        "2026-10-31 02:00:00 -0400",
        "2026-11-01 02:00:00 -0500",
        "2026-11-02 02:00:00 -0500",
    ]
    assert cron("30 2 * * *", tz="America/New_York").fire_times(
        utc(2026, 11, 1), utc(2026, 11, 2)
    ) == [utc(2026, 11, 1, 7, 30)]


def test_wildcard_hour_fires_in_both_occurrences_of_the_repeated_hour() -> None:
    trigger = cron("*/15 * * * *", tz="America/New_York")
    times = trigger.fire_times(utc(2026, 11, 1, 4), utc(2026, 11, 1, 7))
    # Every 15 minutes of real time: 00:00-01:45 EDT, then 01:00-01:45 EST again.
    assert times == [utc(2026, 11, 1, 4) + timedelta(minutes=15 * i) for i in range(12)]
    assert local(times, NEW_YORK)[4:10] == [
        "2026-11-01 01:00:00 -0400",
        "2026-11-01 01:15:00 -0400",
        "2026-11-01 01:30:00 -0400",
        "2026-11-01 01:45:00 -0400",
        "2026-11-01 01:00:00 -0500",
        "2026-11-01 01:15:00 -0500",
    ]


def test_specific_hour_with_minute_steps_runs_the_repeated_hour_once() -> None:
    trigger = cron("*/15 1 * * *", tz="America/New_York")
    assert local(trigger.fire_times(utc(2026, 11, 1), utc(2026, 11, 2)), NEW_YORK) == [
        "2026-11-01 01:00:00 -0400",
        "2026-11-01 01:15:00 -0400",
        "2026-11-01 01:30:00 -0400",
        "2026-11-01 01:45:00 -0400",
    ]
    # On the spring-forward day the whole hour is skipped: one run, at the jump.
    assert local(trigger.fire_times(utc(2026, 3, 8), utc(2026, 3, 9)), NEW_YORK) == [
        "2026-03-08 01:00:00 -0500",
        "2026-03-08 01:15:00 -0500",
        "2026-03-08 01:30:00 -0500",
        "2026-03-08 01:45:00 -0500",
    ]
    skipped = cron("*/15 2 * * *", tz="America/New_York")
    assert local(skipped.fire_times(utc(2026, 3, 8), utc(2026, 3, 9)), NEW_YORK) == [
        "2026-03-08 03:00:00 -0400",
    ]


def test_skipped_and_existing_times_landing_on_the_jump_fire_once() -> None:
    # 02:00 and 02:30 are skipped and run at 03:00, which is itself a fire time.
    trigger = cron("0,30 2,3 * * *", tz="America/New_York")
    assert local(trigger.fire_times(utc(2026, 3, 8), utc(2026, 3, 9)), NEW_YORK) == [
        "2026-03-08 03:00:00 -0400",
        "2026-03-08 03:30:00 -0400",
    ]


def test_hourly_across_spring_forward_has_no_extra_or_missing_run() -> None:
    for expr in ("0 * * * *", "30 * * * *"):
        trigger = cron(expr, tz="America/New_York")
        times = trigger.fire_times(utc(2026, 3, 8, 5), utc(2026, 3, 8, 9))
        minute = int(expr.split()[0])
        # Local 00, 01, (02 does not exist), 03, 04 - one run per real hour.
        assert times == [utc(2026, 3, 8, h, minute) for h in (5, 6, 7, 8)]
        assert [t.astimezone(NEW_YORK).hour for t in times] == [0, 1, 3, 4]


def test_hourly_across_fall_back_runs_every_real_hour() -> None:
    times = cron("0 * * * *", tz="America/New_York").fire_times(
        utc(2026, 11, 1, 4), utc(2026, 11, 1, 8)
    )
    assert times == [utc(2026, 11, 1, h) for h in (4, 5, 6, 7)]
    assert local(times, NEW_YORK) == [
        "2026-11-01 00:00:00 -0400",
        "2026-11-01 01:00:00 -0400",
        "2026-11-01 01:00:00 -0500",
        "2026-11-01 02:00:00 -0500",
    ]


def test_the_hour_field_as_written_decides_the_policy() -> None:
    # Same wall times, but only '*' and '*/n' count as wildcard hours (as in Debian cron).
    window = (utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    wildcard = cron("0 * * * *", tz="America/New_York").fire_times(*window)
    written_out = cron("0 0-23 * * *", tz="America/New_York").fire_times(*window)
    assert wildcard == [utc(2026, 11, 1, h) for h in (4, 5, 6, 7)]
    assert written_out == [utc(2026, 11, 1, h) for h in (4, 5, 7)]  # 01:00 EST not again
    every_other = cron("0 */2 * * *", tz="America/New_York").fire_times(*window)
    assert local(every_other, NEW_YORK) == [
        "2026-11-01 00:00:00 -0400",
        "2026-11-01 02:00:00 -0500",
    ]


def test_lord_howe_thirty_minute_shift() -> None:
    # Lord Howe Island: +10:30 standard, +11 summer; the clock moves by 30 minutes.
    # 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11), so 02:15 does not exist.
    trigger = cron("15 2 * * *", tz="Australia/Lord_Howe")
    assert local(trigger.fire_times(utc(2026, 10, 2), utc(2026, 10, 5)), LORD_HOWE) == [
        "2026-10-03 02:15:00 +1030",
        "2026-10-04 02:30:00 +1100",  # at the jump
        "2026-10-05 02:15:00 +1100",
    ]
    # 2026-04-05: 02:00 (+11) falls back to 01:30 (+10:30); 02:15 exists once, 01:45 twice.
    assert local(trigger.fire_times(utc(2026, 4, 3), utc(2026, 4, 6)), LORD_HOWE) == [
        "2026-04-04 02:15:00 +1100",
        "2026-04-05 02:15:00 +1030",
        "2026-04-06 02:15:00 +1030",
    ]
    repeated = cron("45 1 * * *", tz="Australia/Lord_Howe")
    assert local(repeated.fire_times(utc(2026, 4, 4), utc(2026, 4, 5)), LORD_HOWE) == [
        "2026-04-05 01:45:00 +1100",
    ]


def test_lord_howe_wildcard_hour_follows_real_time() -> None:
    trigger = cron("*/15 * * * *", tz="Australia/Lord_Howe")
    back = trigger.fire_times(utc(2026, 4, 4, 14), utc(2026, 4, 4, 16))
    assert back == [utc(2026, 4, 4, 14) + timedelta(minutes=15 * i) for i in range(8)]
    assert local(back, LORD_HOWE)[2:6] == [
        "2026-04-05 01:30:00 +1100",
        "2026-04-05 01:45:00 +1100",
        "2026-04-05 01:30:00 +1030",
        "2026-04-05 01:45:00 +1030",
    ]
    forward = trigger.fire_times(utc(2026, 10, 3, 15), utc(2026, 10, 3, 16, 30))
    assert local(forward, LORD_HOWE) == [
        "2026-10-04 01:30:00 +1030",
        "2026-10-04 01:45:00 +1030",
        "2026-10-04 02:30:00 +1100",  # 02:00 and 02:15 do not exist: nothing extra
        "2026-10-04 02:45:00 +1100",
        "2026-10-04 03:00:00 +1100",
        "2026-10-04 03:15:00 +1100",
    ]


def test_sao_paulo_midnight_that_did_not_exist() -> None:
    # 2018-11-04 in Sao Paulo: 00:00 (-03) jumped to 01:00 (-02).
    zone = ZoneInfo("America/Sao_Paulo")
    daily = cron("0 0 * * *", tz="America/Sao_Paulo")
    assert local(daily.fire_times(utc(2018, 11, 3), utc(2018, 11, 6)), zone) == [
        "2018-11-03 00:00:00 -0300",
        "2018-11-04 01:00:00 -0200",
        "2018-11-05 00:00:00 -0200",
    ]
    two_hourly = cron("0 */2 * * *", tz="America/Sao_Paulo")
    times = two_hourly.fire_times(utc(2018, 11, 4, 0), utc(2018, 11, 4, 6))
    assert local(times, zone) == ["2018-11-03 22:00:00 -0300", "2018-11-04 02:00:00 -0200"]


def test_six_field_specific_hour_follows_the_same_policy() -> None:
    trigger = cron("*/20 30 2 * * *", tz="America/New_York")
    assert local(trigger.fire_times(utc(2026, 3, 8), utc(2026, 3, 9)), NEW_YORK) == [
        "2026-03-08 03:00:00 -0400",
    ]
    assert len(trigger.fire_times(utc(2026, 3, 9), utc(2026, 3, 10))) == 3


def test_next_fire_at_the_jump() -> None:
    trigger = cron("30 2 * * *", tz="America/New_York")
    assert trigger.next_fire(utc(2026, 3, 8, 6, 59, 59)) == utc(2026, 3, 8, 7)
    assert trigger.next_fire(utc(2026, 3, 8, 7)) == utc(2026, 3, 9, 6, 30)
    # From inside the repeated hour, the first occurrence already passed.
    repeated = cron("30 1 * * *", tz="America/New_York")
    assert repeated.next_fire(utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 6, 30)


def test_next_fire_far_ahead_still_takes_the_first_occurrence() -> None:
    # From January, the next 01:30 on 25 October 2026 is in the repeated hour (London falls
    # back at 02:00 BST that day): the first occurrence, 01:30 BST, even though the zone
    # changed its offset twice in between.
    trigger = cron("30 1 25 10 *", tz="Europe/London")
    assert trigger.next_fire(utc(2026, 1, 1)) == utc(2026, 10, 25, 0, 30)
    assert trigger.fire_times(utc(2026, 1, 1), utc(2027, 1, 1)) == [utc(2026, 10, 25, 0, 30)]


# --------------------------------------------------------------------------- errors


def _error(expr: str, tz: str = "UTC") -> str:
    with pytest.raises(ConfigError) as info:
        cron(expr, tz=tz)
    return str(info.value)


EXAMPLE = 'cron("*/5 * * * *")'


def test_wrong_field_count() -> None:
    message = _error("* * *")
    assert "has 3 fields" in message
    assert "needs 5 fields" in message and "6 with seconds first" in message
    assert EXAMPLE in message
    assert "year field" in _error("0 0 0 * * * 2026")


def test_out_of_range_value_names_field_and_value() -> None:
    message = _error("61 * * * *")
    assert "minute field '61'" in message and "61 is out of range 0-59" in message
    assert EXAMPLE in message and 'tz="Europe/London"' in message
    assert "hour field '0-24'" in _error("0 0-24 * * *")
    assert "24 is out of range 0-23" in _error("0 0-24 * * *")
    assert "second field '60'" in _error("60 * * * * *")
    assert "13 is out of range 1-12" in _error("0 0 1 13 *")


def test_garbage_token() -> None:
    message = _error("* * * * funday")
    assert "day-of-week field 'funday'" in message
    assert "'funday' is not a number or a day name" in message
    assert EXAMPLE in message
    assert "'x' is not a number" in _error("x/5 * * * *")
    assert "at least 1" in _error("*/0 * * * *")
    assert "runs backwards" in _error("5-1 * * * *")
    assert "empty list item" in _error("1,,2 * * * *")
    assert "no month allowed by the month field has that many days" in _error("0 0 30 2 *")
    with pytest.raises(ConfigError, match="as a string"):
        cron(5)  # type: ignore[arg-type]


def test_unknown_zone() -> None:
    message = _error("0 9 * * *", tz="Europe/Lundon")
    assert "unknown time zone 'Europe/Lundon'" in message
    assert "did you mean 'Europe/London'" in message
    assert EXAMPLE in message
    with pytest.raises(ConfigError, match="IANA"):
        cron("* * * * *", tz="")
    with pytest.raises(ConfigError, match="unknown time zone"):
        Cron("* * * * *", "Mars/Olympus_Mons")


def test_naive_bounds_are_refused() -> None:
    trigger = cron("* * * * *")
    with pytest.raises(ConfigError, match="timezone-aware"):
        trigger.fire_times(datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ConfigError, match="timezone-aware"):
        trigger.fire_times(utc(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ConfigError, match="timezone-aware"):
        trigger.next_fire(datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="timezone-aware"):
        trigger.next_fire("2026-01-01")  # type: ignore[arg-type]
