"""The watchdog: finds what to alert on in the store, and raises each alert once.

Every worker runs `Watchdog.check` when it starts and every `check_every` after, so no single
process failing stops it. Each finding has a deterministic key (`run-failed:{run}`,
`budget:{run}`, `approval:{request}`, `silence:{schedule}:{fire time}`), and the store
inserts an alert once per (key, sink) with its delivery run in the same transaction: two
workers finding the same thing raise it once.

What it finds:
- failure: a run that ended FAILED (after its last retry; a retried attempt is ENQUEUED
  again, not FAILED), other than rota's own jobs;
- budget: a model call refused by a budget (the `budget.exceeded` audit record), one alert
  per run;
- approval: a request still pending `approval_after` after it was made;
- silence: a schedule that missed a fire time. The expected fire time is the first one after
  the schedule last fired (or after the watchdog first watched it); it is missed when
  `grace = max(30 s, 10% of the period)` has passed without it firing, whether the
  scheduler is down, the schedule paused or every tick skipped. A schedule that stops
  firing is therefore reported at most one period plus the grace (plus `check_every`)
  after its last run; one alert per missed stretch, keyed by its first missed fire time.
  With `silence_after`, also a job with no successful run for that long (since its last
  success, or since the watchdog first watched it), whatever triggers it: one alert per
  quiet stretch (`quiet:{job}:{since}`);
- start, success (off by default): a run that started (`run-started:{run}`) or succeeded
  (`run-succeeded:{run}`), looked for only for the jobs whose alerts ask for them;
- capped (off by default): a run a run cap dropped or deferred (`capped:{run}`).

Failures and refusals are looked for over the last hour (`LOOKBACK_S`) and not before the
watchdog first ran on this database, so turning alerts on does not report old history.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..clock import Clock, iso
from ..ids import new_id
from ..scheduling.triggers import Trigger
from ..storage.alerts import AlertRecord, RunChange
from ..storage.audit import BUDGET_EXCEEDED
from ..storage.base import Store
from ..storage.capped import CappedRun
from .config import AlertPolicy, Alerts
from .delivery import delivery_run

if TYPE_CHECKING:
    from ..jobs import Registry

log = logging.getLogger("rota.alerts")

LOOKBACK_S = 3600.0
RESCAN_S = 300.0  # how far back a pass re-reads what the previous one read
MIN_GRACE_S = 30.0
INTERNAL_PREFIX = "rota:"  # rota's own jobs (alert delivery, approval announcements)


def grace(period_s: float) -> float:
    """How long past its time a fire time may be late before it counts as missed."""
    return max(MIN_GRACE_S, 0.1 * period_s)


class WatchedStore(Store, Protocol):
    """The store, with the reads of the alerts that are off by default."""

    def run_changes(
        self, change: str, names: Sequence[str], since: float, limit: int = 500
    ) -> list[RunChange]: ...

    def last_succeeded(self, names: Sequence[str]) -> dict[str, float]: ...

    def capped_runs(
        self,
        names: Sequence[str] = (),
        outcome: str | None = None,
        limit: int = 50,
        *,
        since: float | None = None,
    ) -> list[CappedRun]: ...


@dataclass(frozen=True)
class WatchedSchedule:
    name: str  # the schedule (`job`, or `job#2` for a job's second time trigger)
    job: str
    trigger: Trigger


@dataclass(frozen=True)
class Finding:
    key: str
    kind: str  # failure | budget | approval | silence | start | success | capped | test
    job: str  # whose alert settings apply
    subject: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


class Watchdog:
    """Finds and raises alerts (see the module's docstring). One per App; every worker of
    the app calls `check`. What it remembers between passes only saves queries: the store
    decides what is raised."""

    def __init__(
        self,
        registry: Registry,
        policy: Callable[[], AlertPolicy],
        store: Callable[[], WatchedStore],
        clock: Clock,
        schedules: Callable[[], Sequence[WatchedSchedule]],
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.store = store
        self.clock = clock
        self.schedules = schedules
        self._lock = threading.Lock()  # one pass at a time (workers share the App's)
        self._marks: dict[str, float] = {}  # they never change once stored
        self._seen: dict[str, float] = {}  # keys known to be raised, and when found
        self._scanned: float | None = None  # when this process last read failures
        self._quiet_until: dict[str, float] = {}  # schedule -> no miss possible before

    def check(self) -> list[str]:
        """One pass: returns the ids of the alerts this pass raised (none when another
        worker raised them first)."""
        policy = self.policy()
        if not policy.active:
            return []
        with self._lock:
            now, db = self.clock.now(), self.store()
            since = max(self._mark(db, "watch:start", now), now - LOOKBACK_S)
            if self._scanned is not None:  # re-read a little: completions commit late
                since = max(since, self._scanned - RESCAN_S)
            findings = [
                *_failures(db, since),
                *_budgets(db, since),
                *_approvals(db, policy, now, since),
                *self._silences(db, policy, now),
                *_run_changes(db, policy, since),
                *_capped(db, policy, since),
                *self._quiet(db, policy, now),
            ]
            raised = self.raise_findings(db, policy, findings, now)
            self._scanned = now
            self._forget(now)
            return raised

    def raise_findings(
        self, db: Store, policy: AlertPolicy, findings: Sequence[Finding], now: float
    ) -> list[str]:
        fresh = [f for f in findings if f.key not in self._seen]
        known = db.alert_keys([f.key for f in fresh]) if fresh else set()
        pairs = []
        for finding in fresh:
            self._seen[finding.key] = now
            rule = policy.rule(finding.job)
            if (
                finding.key in known
                or rule is None
                or finding.job.startswith(INTERNAL_PREFIX)
                or not _wanted(rule, finding)
            ):
                continue
            for sink in policy.sinks(rule):
                alert = AlertRecord(
                    new_id(),
                    finding.key,
                    sink.name,
                    finding.kind,
                    finding.subject,
                    finding.text,
                    now,
                    finding.detail,
                )
                run = delivery_run(self.registry, alert)
                pairs.append((replace(alert, run_id=run.id), run))
        raised = db.raise_alerts(pairs) if pairs else []
        for alert_id in raised:
            log.info("alert %s raised", alert_id)
        return raised

    def _mark(self, db: Store, key: str, now: float) -> float:
        if key not in self._marks:
            self._marks[key] = db.alert_mark(key, now)
        return self._marks[key]

    def _forget(self, now: float) -> None:
        """Keys found longer ago than any pass looks back can go."""
        if len(self._seen) > 10_000:
            horizon = now - 2 * LOOKBACK_S
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}

    def _quiet(self, db: WatchedStore, policy: AlertPolicy, now: float) -> list[Finding]:
        """Jobs whose alerts set silence_after, with no successful run for that long."""
        names = _asking(policy, "silence_after", self.registry.definitions)
        if not names:
            return []
        last = db.last_succeeded(names)
        found = []
        for name in names:
            rule = policy.rule(name)
            window = rule.silence_after_s if rule is not None and rule.silence else None
            if window is None:
                continue
            since = max(last.get(name, 0.0), self._mark(db, f"watch:quiet:{name}", now))
            if now - since < window:
                continue
            succeeded = iso(last[name]) if name in last else "never while watched"
            found.append(
                Finding(
                    f"quiet:{name}:{since:.6f}",
                    "silence",
                    name,
                    name,
                    f"rota: {name} has had no successful run for {_span(now - since)} "
                    f"(silence_after {rule.silence_after if rule else ''}). "
                    f"Last success: {succeeded}",
                    {"job": name, "last_succeeded_at": iso(last.get(name)), "quiet_s": now - since},
                )
            )
        return found

    def _silences(self, db: Store, policy: AlertPolicy, now: float) -> list[Finding]:
        found = []
        for watched in self.schedules():
            rule = policy.rule(watched.job)
            identity = f"{watched.name}:{watched.trigger.key()}"
            if rule is None or not rule.silence or now < self._quiet_until.get(identity, 0.0):
                continue
            first_watched = self._mark(db, f"watch:{identity}", now)
            finding, quiet_until = _silence(db, watched, first_watched, now, self._seen)
            self._quiet_until[identity] = quiet_until
            if finding is not None:
                found.append(finding)
        return found


def logged(check: Callable[[], object]) -> None:
    """Run a check, logging (not raising) a failure: a worker starts all the same."""
    try:
        check()
    except Exception:
        log.warning("the alerts watchdog failed; the next pass tries again", exc_info=True)


def _wanted(rule: Alerts, finding: Finding) -> bool:
    if finding.kind == "approval":
        after = rule.approval_after_s
        return after is not None and finding.detail["waiting_s"] >= after
    return finding.kind == "test" or bool(getattr(rule, finding.kind, False))


def _asking(policy: AlertPolicy, option: str, jobs: Iterable[str] = ()) -> list[str]:
    """The jobs whose alerts turn `option` on: those in `jobs` when the app's own alerts
    do (a job's own alerts may still turn it off), and the jobs whose own alerts do."""
    names: set[str] = set()
    if policy.default is not None and getattr(policy.default, option):
        names.update(j for j in jobs if not j.startswith(INTERNAL_PREFIX))
    names.update(j for j, rule in policy.jobs.items() if rule and getattr(rule, option))
    return sorted(n for n in names if policy.rule(n) and getattr(policy.rule(n), option))


def _run_changes(db: WatchedStore, policy: AlertPolicy, since: float) -> list[Finding]:
    found = []
    for change, verb in (("start", "started"), ("success", "succeeded")):
        every = policy.default is not None and getattr(policy.default, change)
        names = _asking(policy, change)
        if not every and not names:
            continue  # nobody asked: no query
        for run in db.run_changes(change, [] if every else names, since):
            found.append(
                Finding(
                    f"run-{verb}:{run.id}",
                    change,
                    run.name,
                    run.name,
                    f"rota: run {run.id} of {run.name} {verb} at {iso(run.at)} "
                    f"(trigger {run.trigger}, as {run.principal or '-'})",
                    {"run_id": run.id, "job": run.name, "at": iso(run.at)},
                )
            )
    return found


def _capped(db: WatchedStore, policy: AlertPolicy, since: float) -> list[Finding]:
    every = policy.default is not None and policy.default.capped
    names = _asking(policy, "capped")
    if not every and not names:
        return []
    return [
        Finding(
            f"capped:{record.id}",
            "capped",
            record.name,
            record.name,
            f"rota: a run of {record.name} was {record.outcome} by its caps: {record.reason}"
            + (f" (due {iso(record.deferred_to)})" if record.deferred_to is not None else ""),
            {
                "run_id": record.id,
                "job": record.name,
                "outcome": record.outcome,
                "reason": record.reason,
                "trigger": record.trigger,
            },
        )
        for record in db.capped_runs([] if every else names, limit=500, since=since)
    ]


def _failures(db: Store, since: float) -> list[Finding]:
    found = []
    for run in db.failed_runs(since):
        error = run.error if isinstance(run.error, dict) else {}
        reason = f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()
        found.append(
            Finding(
                f"run-failed:{run.id}",
                "failure",
                run.name,
                run.name,
                f"rota: run {run.id} of {run.name} failed after {run.failures} "
                f"attempt{'s' if run.failures != 1 else ''}: {reason[:500]}",
                {"run_id": run.id, "job": run.name, "attempts": run.failures, "error": reason},
            )
        )
    return found


def _budgets(db: Store, since: float) -> list[Finding]:
    found = []
    for record in db.audit_records(action=BUDGET_EXCEEDED, since=since, limit=500):
        detail = json.loads(record.detail_json or "{}")
        subject = record.subject or "?"
        found.append(
            Finding(
                f"budget:{record.run_id or record.id}",
                "budget",
                subject,
                subject,
                f"rota: budget exceeded for {subject} in run {record.run_id}: "
                f"{str(detail.get('reason', ''))[:500]}",
                {"run_id": record.run_id, "agent": subject, **detail},
            )
        )
    return found


def _approvals(db: Store, policy: AlertPolicy, now: float, since: float) -> list[Finding]:
    """Requests that became overdue since `since` (for the strictest threshold), up to now
    (for the most lenient): each rule's own threshold is applied by `_wanted`."""
    rules = [policy.default, *policy.jobs.values()]
    known = [t for t in (r.approval_after_s for r in rules if r is not None) if t is not None]
    if not known:
        return []
    low, high = since - max(known), now - min(known)
    return [
        Finding(
            f"approval:{req.id}",
            "approval",
            req.run_name,
            req.run_name,
            f"rota: approval {req.id} for {req.run_name} has waited "
            f"{_span(now - req.created_at)}: {req.question[:300]}",
            {"approval_id": req.id, "run_id": req.run_id, "waiting_s": now - req.created_at},
        )
        for req in db.overdue_approvals(low, high)
    ]


def _silence(
    db: Store,
    watched: WatchedSchedule,
    first_watched: float,
    now: float,
    seen: Mapping[str, float],
) -> tuple[Finding | None, float]:
    """A finding when the schedule missed its expected fire time, and until when no
    further miss is possible (so the next passes need not ask the store)."""
    last_fired = db.last_fired(watched.name)
    since = max(first_watched, last_fired or first_watched)
    expected = _next(watched.trigger, since)
    if expected is None:
        return None, float("inf")  # no fire time left (a one-off `at`)
    after = _next(watched.trigger, expected)
    period = 0.0 if after is None else after - expected
    missed_at = expected + grace(period)
    if now < missed_at:
        return None, missed_at
    key = f"silence:{watched.name}:{expected:.6f}"
    if key in seen:
        return None, 0.0  # raised already; look again next pass, for it firing again
    health = db.schedule_health(watched.name)
    if health.paused:
        why = "the schedule is paused"
    elif health.last_skip is not None:
        why = f"its ticks were skipped ({health.last_skip})"
    else:
        why = "no scheduler fired it (is `rota scheduler` or `rota dev` running?)"
    last = iso(last_fired) if last_fired is not None else "never while watched"
    finding = Finding(
        key,
        "silence",
        watched.job,
        watched.name,
        f"rota: schedule {watched.name} ({watched.trigger.describe()}) did not fire at "
        f"{iso(expected)}: {why}. Last fired: {last}",
        {
            "schedule": watched.name,
            "expected_at": iso(expected),
            "last_fired_at": iso(last_fired),
            "paused": health.paused,
            "skipped": health.last_skip,
            "grace_s": grace(period),
        },
    )
    return finding, 0.0  # look again next pass: it may fire again, or stay silent


def _next(trigger: Trigger, after: float) -> float | None:
    fire = trigger.next_fire(datetime.fromtimestamp(after, UTC))
    return None if fire is None else fire.timestamp()


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
