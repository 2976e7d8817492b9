"""Backfill from the dashboard, in two steps: a preview (how many runs, the first and last
fire times) and a confirmed enqueue. The limits are the API's (api/schedules.py): a range of
more than MAX_FIRES fire times is refused outright, and more than CONFIRM_OVER runs need
their exact number typed in. Every enqueue must also name the number of runs its preview
showed, so a preview that went stale (someone backfilled meanwhile) enqueues nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ...clock import iso
from ...identity.admin import Actor
from ...scheduler import BackfillPlan, Scheduler, audit_backfill
from ..context import ApiError, shown
from ..params import BadRequest, Param
from ..schedules import CONFIRM_OVER, MAX_FIRES

_LAST = 253_370_764_800.0  # 9999-01-01: later times do not fit a datetime with an offset
TIME_ALLOWED = "an ISO 8601 time from 1970 to 9998, UTC unless it has an offset (2026-01-31T09:00)"


@dataclass(frozen=True)
class Preview:
    """What a backfill of [start, end) would enqueue."""

    schedule: str
    start: datetime
    end: datetime
    fire_times: int
    already_run: int
    to_enqueue: int
    first: str | None
    last: str | None

    @property
    def needs_confirm(self) -> bool:
        """More runs than may be enqueued without typing their number."""
        return self.to_enqueue > CONFIRM_OVER


def parse_time(raw: str) -> datetime:
    """An ISO 8601 time (UTC when it has no offset); ValueError otherwise."""
    moment = datetime.fromisoformat(raw.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 0 <= moment.timestamp() < _LAST:
        raise ValueError(raw)
    return moment.astimezone(UTC)


def a_time() -> Param:
    """A query parameter that is an ISO 8601 time; empty means not given."""

    def parse(raw: str) -> datetime | None:
        if len(raw) > 40:
            raise ValueError(raw)
        return parse_time(raw) if raw else None

    return Param(parse, TIME_ALLOWED, None, {"type": "string", "maxLength": 40})


def form_time(field: str, raw: str | None) -> datetime:
    """A required time field of a form; a 400 naming it otherwise."""
    if not raw:
        raise BadRequest(f"form field {field} is required: {TIME_ALLOWED}")
    try:
        if len(raw) > 40:
            raise ValueError(raw)
        return parse_time(raw)
    except (ValueError, OverflowError):
        raise BadRequest(f"form field {field} must be {TIME_ALLOWED}; got '{shown(raw)}'") from None


def check_range(start: datetime, end: datetime) -> None:
    if end <= start:
        raise BadRequest(
            f"end ({iso(end.timestamp())}) must be after start ({iso(start.timestamp())})"
        )


def preview(s: Scheduler, name: str, start: datetime, end: datetime) -> Preview:
    """What a backfill of [start, end) would enqueue; 422 for a range of more than
    MAX_FIRES fire times."""
    todo, plan = _plan(s, name, start, end)
    return Preview(
        schedule=name,
        start=start,
        end=end,
        fire_times=len(plan.fires),
        already_run=len(plan.existing),
        to_enqueue=len(todo),
        first=iso(todo[0].timestamp()) if todo else None,
        last=iso(todo[-1].timestamp()) if todo else None,
    )


def enqueue(
    s: Scheduler, name: str, start: datetime, end: datetime, confirm: int, actor: Actor
) -> int:
    """Enqueue the runs the preview showed, audited; 409 when `confirm` is not their number
    (a stale preview, or a large one not confirmed)."""
    todo, _ = _plan(s, name, start, end)
    if confirm != len(todo):
        raise ApiError(
            409,
            "confirm_needed",
            f"this backfill would now enqueue {len(todo):,} run(s) of '{shown(name)}', "
            f"not the {confirm:,} confirmed: preview it again and confirm that number",
        )
    enqueued = s.backfill(name, start, end, fires=todo) if todo else 0
    audit_backfill(s.store, actor, name, start, end, enqueued)
    return enqueued


def _plan(
    s: Scheduler, name: str, start: datetime, end: datetime
) -> tuple[list[datetime], BackfillPlan]:
    plan = s.plan_backfill(name, start, end, limit=MAX_FIRES)
    if len(plan.fires) > MAX_FIRES:
        raise ApiError(
            422,
            "too_many_ticks",
            f"[start, end) holds more than {MAX_FIRES:,} fire times of schedule "
            f"'{shown(name)}', the most one backfill may cover; backfill a shorter range "
            "at a time",
        )
    return plan.todo, plan


def form_confirm(raw: str | None) -> int:
    """The number of runs the person confirmed; a 400 naming the field otherwise."""
    text = (raw or "").strip().replace(",", "")
    if not text.isdigit() or len(text) > 9:
        raise BadRequest(
            "form field confirm must be the number of runs the preview showed (a whole "
            f"number); got '{shown(raw or '')}'"
        )
    return int(text)
