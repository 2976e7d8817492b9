"""Property tests: cron fire times against a brute-force reference of the DST policy.

The reference shares nothing with the implementation but zoneinfo's UTC -> local conversion:
it generates the expression together with the exact set of values each field allows, walks
every real instant (every second for 6-field expressions, every minute for 5-field ones) of
the window, reads the local wall clock and applies the policy as docs/scheduling.md states it:

- hour field `*` or `*/n`: fire at every instant whose wall time matches;
- other hour fields: each matching wall time fires once - at the instant it is shown if it is
  shown once, at its first occurrence if it is shown twice, and at the first instant after
  the jump if the clock skips it.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rota.errors import ConfigError
from rota.scheduling.cron import cron

ZONES = [
    "UTC",
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Chatham",
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YEARS = (1975, 2035)
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]


@dataclass(frozen=True)
class Spec:
    fields: tuple[Field, ...]  # second, minute, hour, day-of-month, month, day-of-week
    six: bool

    @property
    def expr(self) -> str:
        texts = [f.text for f in self.fields]
        return " ".join(texts if self.six else texts[1:])

    @property
    def wildcard_hour(self) -> bool:
        text = self.fields[2].text
        return text == "*" or text.startswith("*/")

    def matches(self, wall: datetime) -> bool:
        second, minute, hour, dom, month, dow = (f.values for f in self.fields)
        if wall.second not in second or wall.minute not in minute or wall.hour not in hour:
            return False
        if wall.month not in month:
            return False
        weekday = (wall.weekday() + 1) % 7  # cron: 0 (or 7) is Sunday
        dom_ok = wall.day in dom
        dow_ok = weekday in dow or (weekday == 0 and 7 in dow)
        # Vixie/Debian cron: if either day field starts with '*', both must match, else either.
        if self.fields[3].text.startswith("*") or self.fields[5].text.startswith("*"):
            return dom_ok and dow_ok
        return dom_ok or dow_ok


def _name(value: int, names: list[str] | None, offset: int, draw: st.DrawFn) -> str:
    if names and 0 <= value - offset < len(names) and draw(st.booleans()):
        return names[value - offset]
    return str(value)


@st.composite
def fields(
    draw: st.DrawFn,
    low: int,
    high: int,
    favour: tuple[int, ...] = (),
    names: list[str] | None = None,
    name_offset: int = 0,
    star: float = 0.3,
    top: int | None = None,
    plain: float = 0.5,
) -> Field:
    """One cron field, and the set of values it allows (cronsim/Vixie semantics).

    Values are drawn from [low, high]; `*` and `a/step` reach the field's real top.
    """
    top = high if top is None else top
    values = st.integers(low, high)
    if favour:
        values = st.sampled_from(favour) | values
    if draw(st.floats(0, 1)) < star:
        if draw(st.floats(0, 1)) < plain:
            return Field("*", frozenset(range(low, top + 1)))
        step = draw(st.integers(1, top - low + 1))
        return Field(f"*/{step}", frozenset(range(low, top + 1, step)))
    items: list[str] = []
    allowed: set[int] = set()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["one", "one", "range", "range/step", "from/step"]))
        a = draw(values)
        if kind == "one":
            items.append(_name(a, names, name_offset, draw))
            allowed.add(a)
            continue
        if kind == "from/step":
            step = draw(st.integers(1, top - low + 1))
            items.append(f"{a}/{step}")
            allowed.update(range(a, top + 1, step))
            continue
        b = draw(st.integers(a, high))
        text = f"{_name(a, names, name_offset, draw)}-{_name(b, names, name_offset, draw)}"
        if kind == "range":
            items.append(text)
            allowed.update(range(a, b + 1))
        else:
            step = draw(st.integers(1, high - low + 1))
            items.append(f"{text}/{step}")
            allowed.update(range(a, b + 1, step))
    return Field(",".join(items), frozenset(allowed))


@st.composite
def specs(draw: st.DrawFn, six: bool, near: datetime | None = None, specific: bool = False) -> Spec:
    """An expression; `near` (a local wall time) makes its values likely to match around it."""
    hours: tuple[int, ...] = (0, 1, 2, 3, 23)
    minutes: tuple[int, ...] = (0, 15, 30, 45)
    days: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()
    if near is not None:
        hours = tuple({(near.hour + d) % 24 for d in (-1, 0, 1)})
        minutes = (*minutes, near.minute, (near.minute + 59) % 60)
        days = (min(near.day, 28),)
        months = (near.month,)
        weekdays = ((near.weekday() + 1) % 7,)
    second = draw(fields(0, 59, star=0.5)) if six else Field("0", frozenset({0}))
    minute = draw(fields(0, 59, favour=minutes, star=0.5 if six else 0.3))
    hour = draw(fields(0, 23, favour=hours, star=0 if specific else 0.4))
    # Day fields mostly '*' so that windows of a few days see fires.
    dom = draw(fields(1, 28, favour=days, star=0.8, top=31, plain=0.9))
    month = draw(fields(1, 12, favour=months, names=MONTHS, name_offset=1, star=0.8, plain=0.9))
    dow = draw(fields(0, 7, favour=weekdays, names=DAYS, star=0.8, plain=0.9))
    return Spec((second, minute, hour, dom, month, dow), six)


# --------------------------------------------------------------------------- windows


def _offset(zone: ZoneInfo, ts: int) -> timedelta | None:
    return datetime.fromtimestamp(ts, zone).utcoffset()


@functools.cache
def transitions(name: str) -> tuple[int, ...]:
    """Offset changes of a zone in YEARS, found by daily probing (used only to aim windows)."""
    zone = ZoneInfo(name)
    found = []
    start = int(datetime(YEARS[0], 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(YEARS[1], 1, 1, tzinfo=UTC).timestamp())
    previous = _offset(zone, start)
    for day in range(start, end, 86400):
        current = _offset(zone, day + 86400)
        if current != previous:
            low, high = day, day + 86400
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == previous:
                    low = middle
                else:
                    high = middle
            found.append(high)
        previous = current
    return tuple(found)


def instant(ts: int) -> datetime:
    return EPOCH + timedelta(seconds=ts)


@st.composite
def windows(
    draw: st.DrawFn,
    max_length: int,
    center: int | None,
    after: bool = False,
    contain: bool = False,
    size: int = 3600,
) -> tuple[datetime, datetime]:
    """[start, end): around `center` (a transition) - containing it, or starting just after
    it, inside a repeated or skipped period - or, without a center, anywhere in YEARS."""
    length = draw(st.integers(0, max_length))
    if center is None:
        low = int(datetime(YEARS[0], 1, 1, tzinfo=UTC).timestamp())
        high = int(datetime(YEARS[1], 1, 1, tzinfo=UTC).timestamp())
        start = draw(st.integers(low, high))
    elif contain or (not after and draw(st.booleans())):
        length = max(length, 1)
        start = center - draw(st.integers(0, length - 1))
    else:  # inside the repeated (or just after the skipped) period
        start = center + draw(st.integers(0, size - 1))
        length = max(length, size)
    micro = draw(st.sampled_from([0, 0, 0, 1, 999_999]))
    begin = instant(start) + timedelta(microseconds=micro)
    return begin, begin + timedelta(seconds=length)


# --------------------------------------------------------------------------- reference


def reference(spec: Spec, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    zone = ZoneInfo(zone_name)
    step = 1 if spec.six else 60
    # Look three hours back (more than any repeated period of these zones) so that a wall
    # time first shown before the window is known as already shown.
    margin = 0 if spec.wildcard_hour else 3 * 3600
    first = (int(start.timestamp()) - margin) // step * step
    stop = int(end.timestamp()) + step
    lo, hi = start, end

    def wall(ts: int) -> datetime:
        return datetime.fromtimestamp(ts, zone).replace(tzinfo=None)

    if spec.wildcard_hour:
        found = (instant(ts) for ts in range(first, stop, step) if spec.matches(wall(ts)))
        return [t for t in found if lo <= t < hi]

    shown: dict[datetime, int] = {}  # matching wall time -> first instant showing it
    skipped: dict[datetime, int] = {}  # matching wall time jumped over -> instant after
    previous: datetime | None = None
    gap = timedelta(seconds=step)
    for ts in range(first, stop, step):
        now = wall(ts)
        if previous is not None and now - previous > gap:
            missing = previous + gap
            while missing < now:
                if spec.matches(missing):
                    skipped.setdefault(missing, ts)
                missing += gap
        if spec.matches(now):
            shown.setdefault(now, ts)
        previous = now
    times = {instant(shown[w]) if w in shown else instant(skipped[w]) for w in {*shown, *skipped}}
    return sorted(t for t in times if lo <= t < hi)


# --------------------------------------------------------------------------- properties


def check_against_reference(spec: Spec, zone: str, window: tuple[datetime, datetime]) -> None:
    start, end = window
    trigger = cron(spec.expr, tz=zone)
    times = trigger.fire_times(start, end)
    # (1) sorted, each once, in the window, in UTC
    assert times == sorted(set(times))
    assert all(start <= t < end and t.utcoffset() == timedelta(0) for t in times)
    # (2) exactly the reference
    expected = reference(spec, zone, start, end)
    assert times == expected, (
        f"{spec.expr!r} in {zone} over [{start}, {end}): "
        f"missing {sorted(set(expected) - set(times))[:5]}, "
        f"extra {sorted(set(times) - set(expected))[:5]}"
    )


@functools.cache
def jumps(name: str, backward: bool) -> tuple[int, ...]:
    """The transitions that set the clock back (or forward)."""
    zone = ZoneInfo(name)
    found = []
    for t in transitions(name):
        before, after = _offset(zone, t - 1), _offset(zone, t)
        assert before is not None and after is not None
        if (after < before) == backward:
            found.append(t)
    return tuple(found)


Case = tuple[Spec, str, tuple[datetime, datetime]]


@st.composite
def cases(draw: st.DrawFn, six: bool, max_length: int, aim: str = "any") -> Case:
    """Mostly aimed at a DST transition of the zone: window and expression both near it.

    aim="fold": always a backward change, the window starting inside the repeated period,
    where wall times shown before the window must not fire again. aim="gap": always a
    forward change inside the window, and an expression with specific hours.
    """
    if aim == "any":
        zone = draw(st.sampled_from(ZONES))
        near = transitions(zone)
        center = draw(st.sampled_from(near)) if near and draw(st.integers(0, 9)) < 8 else None
    else:
        backward = aim == "fold"
        zone = draw(st.sampled_from([z for z in ZONES if jumps(z, backward)]))
        center = draw(st.sampled_from(jumps(zone, backward)))
    wall, low, high = None, 0, 0
    if center is not None:
        # A wall time the transition skips or repeats, for the expression to aim at.
        before, after = _offset(ZoneInfo(zone), center - 1), _offset(ZoneInfo(zone), center)
        assert before is not None and after is not None
        low = center + int(min(before, after).total_seconds())
        high = center + int(max(before, after).total_seconds())
        wall = instant(draw(st.integers(low, high - 1))).replace(tzinfo=None)
    spec = draw(specs(six, wall, specific=aim == "gap"))
    size = (high - low) if center is not None else 3600
    window = draw(windows(max_length, center, after=aim == "fold", contain=aim == "gap", size=size))
    return spec, zone, window


@SETTINGS
@given(cases(six=False, max_length=3 * 86400))
def test_five_field_matches_reference(case: Case) -> None:
    check_against_reference(*case)


@SETTINGS
@given(cases(six=True, max_length=15 * 60))
def test_six_field_matches_reference(case: Case) -> None:
    check_against_reference(*case)


@SETTINGS
@given(st.booleans().flatmap(lambda six: cases(six, 900 if six else 4 * 3600, aim="fold")))
def test_window_starting_inside_a_repeated_period(case: Case) -> None:
    check_against_reference(*case)


@SETTINGS
@given(st.booleans().flatmap(lambda six: cases(six, 900 if six else 86400, aim="gap")))
def test_specific_hours_across_a_jump_forward(case: Case) -> None:
    check_against_reference(*case)


@settings(max_examples=40, deadline=None)
@given(st.booleans().flatmap(lambda six: cases(six, 600 if six else 86400)))
def test_next_fire_chain_reproduces_fire_times(case: Case) -> None:
    spec, zone, (start, end) = case
    trigger = cron(spec.expr, tz=zone)
    expected = trigger.fire_times(start, end)[:150]
    chained: list[datetime] = []
    cursor = start - timedelta(microseconds=1)
    while len(chained) < len(expected) + 1:
        fire = trigger.next_fire(cursor)
        if fire is None or fire >= end:
            break
        chained.append(fire)
        cursor = fire
    assert chained[: len(expected)] == expected
    assert len(chained) >= len(expected)


@settings(max_examples=40, deadline=None)
@given(cases(six=False, max_length=2 * 86400), st.floats(0, 1))
def test_split_windows_add_up(case: Case, where: float) -> None:
    """A scheduler asking window by window sees every fire exactly once."""
    spec, zone, (start, end) = case
    trigger = cron(spec.expr, tz=zone)
    middle = start + (end - start) * where
    assert trigger.fire_times(start, middle) + trigger.fire_times(middle, end) == (
        trigger.fire_times(start, end)
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="0123456789*/-,?#LW MONFRIjan ", min_size=1, max_size=6),
        min_size=1,
        max_size=7,
    )
)
def test_any_text_either_parses_or_raises_config_error(tokens: list[str]) -> None:
    expr = " ".join(tokens)
    try:
        trigger = cron(expr)
    except ConfigError as exc:
        assert 'cron("*/5 * * * *")' in str(exc)
        return
    after = datetime(2026, 1, 1, tzinfo=UTC)
    fire = trigger.next_fire(after)
    assert fire is None or fire > after


def test_reference_matcher_is_sane() -> None:
    """Guard the reference itself: a Friday-the-13th spec matches only those days."""
    spec = Spec(
        (
            Field("0", frozenset({0})),
            Field("0", frozenset({0})),
            Field("0", frozenset({0})),
            Field("13", frozenset({13})),
            Field("*", frozenset(range(1, 13))),
            Field("*", frozenset(range(8))),
        ),
        six=False,
    )
    days = [
        datetime(2026, month, day)
        for month in range(1, 13)
        for day in range(1, calendar.monthrange(2026, month)[1] + 1)
    ]
    assert [d for d in days if spec.matches(d)] == [datetime(2026, m, 13) for m in range(1, 13)]
