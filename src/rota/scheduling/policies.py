"""What happens to a schedule's fire times: the misfire and overlap policies, as one pure
function from (schedule, fire times, active runs, now) to a decision. No I/O here, so every
policy is tested directly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class SchedulePolicy(Protocol):
    """What `decide` needs of a schedule's job (a JobDefinition satisfies it): the misfire
    policy ("skip" | "run_once" | "catch_up") with its grace period and catch-up bound, and
    the overlap policy ("allow" | "skip" | "queue_one" | "cancel_previous")."""

    @property
    def misfire(self) -> str: ...
    @property
    def misfire_grace_s(self) -> float: ...
    @property
    def max_catch_up(self) -> int: ...
    @property
    def overlap(self) -> str: ...


@dataclass
class Decision:
    """Fire times to enqueue, fire times skipped per reason, runs to cancel."""

    enqueue: list[datetime] = field(default_factory=list)
    skipped: dict[str, list[datetime]] = field(default_factory=dict)
    cancel: list[str] = field(default_factory=list)

    def skip(self, reason: str, times: Sequence[datetime]) -> None:
        if times:
            self.skipped.setdefault(reason, []).extend(times)


def decide(
    job: SchedulePolicy,
    fires: Sequence[datetime],
    active: Sequence[dict[str, Any]],
    now: datetime,
    *,
    paused: bool,
    suppress: tuple[float, float] | None = None,
) -> Decision:
    """Decide due fire times (ascending). `active` are the schedule's unfinished runs;
    `suppress` is (time of the last event-run, window): ticks within it are skipped."""
    decision = Decision()
    if not fires:
        return decision
    if paused:
        decision.skip("paused", fires)
        return decision
    if suppress is not None:
        last_event, window = suppress
        quiet = [f for f in fires if 0 <= f.timestamp() - last_event <= window]
        decision.skip("suppressed", quiet)
        fires = [f for f in fires if f not in set(quiet)]
    chosen = _misfire(job, fires, now, decision)
    _overlap(job, chosen, active, decision)
    return decision


def _misfire(
    job: SchedulePolicy, fires: Sequence[datetime], now: datetime, decision: Decision
) -> list[datetime]:
    """Fire times later than the grace period were missed (scheduler down or overloaded)."""
    late = [f for f in fires if (now - f).total_seconds() > job.misfire_grace_s]
    on_time = [f for f in fires if f not in set(late)]
    if not late:
        return list(fires)
    if job.misfire == "skip":
        decision.skip("misfire", late)
        return on_time
    if job.misfire == "run_once":
        # Coalesce: the missed ticks become one run (an on-time tick, if any, is that run).
        if on_time:
            decision.skip("misfire", late)
            return on_time
        decision.skip("misfire", late[:-1])
        return [late[-1]]
    keep = late[-job.max_catch_up :]  # catch_up: the most recent missed ticks, bounded
    decision.skip("misfire", late[: len(late) - len(keep)])
    return keep + on_time


def _overlap(
    job: SchedulePolicy,
    chosen: list[datetime],
    active: Sequence[dict[str, Any]],
    decision: Decision,
) -> None:
    """Overlap is judged against runs of earlier ticks that have not finished; ticks decided
    together (catch-up) do not count as overlapping each other."""
    policy = job.overlap
    if not active or policy == "allow":
        decision.enqueue = chosen
    elif policy == "cancel_previous":
        decision.cancel = [row["id"] for row in active]
        decision.enqueue = chosen
    elif policy == "queue_one" and not any(row["state"] == "ENQUEUED" for row in active):
        decision.skip("overlap", chosen[:-1])  # one run may wait behind the running one
        decision.enqueue = chosen[-1:]
    else:  # skip, or queue_one with a run already waiting
        decision.skip("overlap", chosen)
