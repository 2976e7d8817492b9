"""App: the registry of jobs, workflows and triggers, and the sync facade over the store."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, cast

from .alerts import AlertPolicy, Alerts, Watchdog, WatchedSchedule, logged
from .alerts import delivery as alert_delivery
from .approvals import notify
from .approvals.notify import ApprovalWebhook
from .clock import Clock, FakeClock, system_clock
from .context import RunServices
from .cost.budgets import Budget, SharedBudget, shared_budget
from .durations import Duration, seconds
from .errors import ConfigError, RunFailed, UnknownJobError, UnknownWebhook, check_options
from .identity import admin
from .identity.admin import Actor
from .identity.directory import directory_for
from .identity.principals import Principal, PrincipalDisabled, UnknownPrincipal, make_principal
from .ids import new_id
from .jobs import DefineOptions, JobDefinition, define, notify_channels, webhooks
from .model import Debounced, Event, NewRun, Rejection, Run, RunFilter
from .observability import current_traceparent, webhook_span
from .observability import run_middleware as traced_runs
from .retention import RetentionPolicy, default_retention
from .routines import Routines, RunDropped
from .routines.caps import Admission
from .scheduler import schedule_specs
from .scheduling.triggers import WEBHOOK_SOURCE, Trigger
from .scheduling.webhooks import OnWebhook, WebhookRejected, verify
from .shadow import agent_job, shadowing
from .storage.approval_records import ApprovalRequest
from .storage.audit import RUN_REFUSED
from .storage.sql import SqlStore
from .storage.urls import resolve
from .worker import RunMiddleware, Wakeups, Worker, WorkerOptions, WorkerParts, WorkerStats
from .worker.middleware import standard
from .worker.observe import ObserveRuns

if TYPE_CHECKING:
    from .agentloop.agent import Agent
    from .routines.loader import Loaded

Fn = Callable[..., Any]
_T = TypeVar("_T")
TriggerArg = Trigger | Sequence[Trigger] | None


class JobOptions(DefineOptions, total=False):
    """The options of `@app.job`, `@app.workflow`, `app.agent` and `app.add`: those of
    `rota.jobs.define` plus `schedule` (a synonym of trigger) and `alerts`."""

    schedule: TriggerArg
    alerts: Alerts | None


JOB_OPTIONS = frozenset(JobOptions.__annotations__) | frozenset(DefineOptions.__annotations__)


class App:
    """Holds definitions; every process (scheduler, worker, CLI) builds the same App."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        clock: Clock | None = None,
        migrate: bool = True,
        approval_webhook: str | ApprovalWebhook | None = None,
        alerts: Alerts | None = None,
        routines_dir: str | Path | None = None,
        retention: Duration | None = None,
    ) -> None:
        self.database_url = resolve(database_url)
        # How long finished runs are kept, unless a definition says (rota.retention);
        # else $ROTA_RETENTION; None keeps them for ever.
        self.retention_s = default_retention(retention)
        self.clock: Clock = clock or system_clock
        self.definitions: dict[str, JobDefinition] = {}
        self._migrate = migrate
        self._store: SqlStore | None = None
        self._store_lock = threading.Lock()
        self.wakeups = Wakeups()  # the workers of this process, nudged when runs are queued
        # Around each execution, inside the standard admission and run.started record, in
        # every worker this app makes (app.worker, app.drain, `rota worker`); outermost
        # first. See rota.worker.middleware.
        self.run_middleware: list[RunMiddleware] = []
        self.principals: dict[str, Principal] = {}  # declared in code with app.principal()
        self.budgets: list[SharedBudget] = []  # declared with app.budget(); see docs/cost.md
        # Announces new approval requests (else ROTA_APPROVAL_WEBHOOK_URL); docs/approvals.md
        self.approval_webhook = notify.configured(approval_webhook)
        if self.approval_webhook is not None:
            hook = self.approval_webhook
            self.add(
                notify.announce_job(hook, lambda: self.approval_webhook),
                **notify.job_options(hook),
            )
        # Run failures, budget refusals, approvals waiting, silent schedules (docs/alerts.md)
        self.alert_policy = AlertPolicy()
        self._watchdog: Watchdog | None = None
        if alerts is not None:
            self.alerts(alerts)
        # Routine files (docs/routines.md): what they may name, and their run caps, which
        # every enqueue below passes through (_admitted).
        self.routines = Routines(_routines_dir(routines_dir), lambda: self.store)

    def load_routines(self, directory: str | Path | None = None) -> Loaded:
        """Load `routines/*.md` (next to the module that made this App, unless
        App(routines_dir=...) or `directory` says) into this registry, after the tools,
        models and plans they name are registered on `app.routines`. A bad file is reported
        in the result's `problems` (and logged) and the others load."""
        store = self.store
        principals = {p.name: p.kind for p in store.principals()}
        return self.routines.load(
            self, directory, principals=principals, secrets=[r.name for r in store.secrets()]
        )

    @property
    def admission(self) -> Admission:
        """The policy every enqueue consults (the run caps, rota.routines.caps): each path
        below, and the scheduler in its tick transaction, call it inside the transaction
        that inserts the runs, so that caps hold across processes."""
        return self.routines.caps

    def _admitted(self, runs: Sequence[NewRun], insert: Callable[[list[NewRun]], _T]) -> _T:
        """`insert` the runs that pass the admission policy, in one transaction with the
        decision; the others are recorded, dropped or moved to the next window. A single
        run dropped raises RunDropped (after its record is stored)."""
        with self.store.tx():
            admitted = self.admission.admit(runs, self.clock.now())
            inserted = insert(admitted.runs)
        dropped = admitted.dropped()
        if dropped and len(runs) == 1:
            raise RunDropped(dropped[0])
        return inserted

    def _admitted_many(
        self,
        runs: Sequence[NewRun],
        insert: Callable[[list[NewRun]], _T],
        stored: Callable[[_T], bool] = lambda _: True,
    ) -> _T:
        """As _admitted, for runs of events and of other runs: a dropped one is recorded,
        never raised. When `stored(result)` is False the insert stored nothing (an event
        seen before), and the caps' decisions are rolled back with it: no record of runs
        nobody asked for again."""
        try:
            with self.store.tx():
                result = insert(self.admission.admit(runs, self.clock.now()).runs)
                if not stored(result):
                    raise _NothingStored(result)
        except _NothingStored as nothing:
            return cast("_T", nothing.result)
        return result

    # -- store -------------------------------------------------------------------------

    @property
    def store(self) -> SqlStore:
        """Opened on first use; migrated then (unless migrate=False, which checks instead)."""
        with self._store_lock:
            if self._store is None:
                store = SqlStore(self.database_url)
                try:
                    store.migrate() if self._migrate else store.check_schema()
                    admin.declare_all(store, self.principals.values())
                except BaseException:
                    store.close()
                    raise
                self._store = store
            return self._store

    def use_database(self, url: str | None) -> None:
        """Point the app at another database (the CLI's --database-url)."""
        self.close()
        self.database_url = resolve(url)

    def close(self) -> None:
        """Close the store's connections; the App opens them again on next use."""
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- principals --------------------------------------------------------------------

    def principal(
        self,
        name: str,
        *,
        kind: str = "service",
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
    ) -> Principal:
        """Declare who runs may act as: a service account (kind="service", the default) or
        a user (kind="user"), with its scopes and roles. Stored (and audited) when the app
        opens its store; code stays the source of truth for what it declares."""
        declared = make_principal(name, kind, scopes, roles)
        if name in self.principals:
            raise ConfigError(f"principal {name!r} is declared twice")
        self.principals[name] = declared
        if self._store is not None:
            admin.declare(self._store, declared)
        return declared

    def verify_principals(self) -> None:
        """Every run_as names a principal that exists; a ConfigError lists those that do
        not (a worker calls this when it starts)."""
        directory = directory_for(self.store)
        directory.invalidate()
        problems = [
            f"{d.name} runs as {d.run_as!r}, which does not exist"
            for d in self.definitions.values()
            if d.run_as is not None and directory.get(d.run_as) is None
        ]
        if problems:
            raise ConfigError(
                "; ".join(problems) + ". Declare each with app.principal(NAME, kind='service', "
                "scopes=[...]) or `rota principals add NAME`"
            )

    def _admit(self, run_as: str | None, name: str, actor: Actor) -> None:
        """Refuse, and audit, a request to run as a principal that is unknown or disabled."""
        if run_as is None:
            return
        try:
            directory_for(self.store).require(run_as)
        except (UnknownPrincipal, PrincipalDisabled) as exc:
            self.store.audit(
                actor.name,
                RUN_REFUSED,
                actor_kind=actor.kind,
                subject=name,
                detail={"run_as": run_as, "reason": str(exc)},
            )
            raise

    # -- budgets -----------------------------------------------------------------------

    def budget(
        self,
        *,
        agent: str | None = None,
        workflow: str | None = None,
        principal: str | None = None,
        usd: float | None = None,
        tokens: int | None = None,
        requests: int | None = None,
        per: str = "day",
    ) -> SharedBudget:
        """A budget shared by every run of one agent, workflow (or job) or principal, per
        UTC day or calendar month: `app.budget(agent="billing-reviewer", usd=5, per="day")`.
        Held in the store before each model call, so concurrent runs cannot overspend it."""
        declared = shared_budget(
            Budget(usd=usd, tokens=tokens, requests=requests),
            per=per,
            agent=agent,
            workflow=workflow,
            principal=principal,
        )
        if any((b.key, b.per) == (declared.key, declared.per) for b in self.budgets):
            raise ConfigError(f"a budget for {declared.key} per {per} is declared twice")
        self.budgets.append(declared)
        return declared

    # -- alerts ------------------------------------------------------------------------

    def alerts(self, alerts: Alerts | None = None, **options: Any) -> Alerts:
        """Set the app's alerts: `app.alerts(Alerts(sinks=[...]))`, or the fields of
        Alerts as keywords: `app.alerts(sinks=[slack(url_secret="SLACK_URL")])`."""
        if alerts is not None and options:
            raise ConfigError("pass app.alerts(Alerts(...)) or keywords, not both")
        chosen = alerts if alerts is not None else Alerts(**options)
        self.alert_policy.set_default(chosen)
        self._sync_alert_job()
        return chosen

    def _sync_alert_job(self) -> None:
        """The internal job that delivers alerts, there once any alerts are configured."""
        if not self.alert_policy.active:
            return
        deliver = alert_delivery.deliver_job(
            lambda: self.alert_policy, lambda: self.store, self.clock
        )
        settings = self.alert_policy.default or Alerts()
        job = define(deliver, **alert_delivery.job_options(settings))
        self.definitions[job.name] = job

    @property
    def watchdog(self) -> Watchdog:
        """What finds alerts; every worker runs it (docs/alerts.md)."""
        if self._watchdog is None:
            self._watchdog = Watchdog(
                self, lambda: self.alert_policy, lambda: self.store, self.clock, self._watched
            )
        return self._watchdog

    def check_alerts(self) -> list[str]:
        """Run the watchdog once (workers do this by themselves): the ids of alerts raised."""
        raised = self.watchdog.check()
        if raised:
            self._wake_local()
        return raised

    def _watched(self) -> list[WatchedSchedule]:
        specs = schedule_specs(self.definitions.values()).values()
        return [WatchedSchedule(s.name, s.job.name, s.trigger) for s in specs]

    def _alert_checks(self) -> list[tuple[float, Callable[[], object]]]:
        if not self.alert_policy.active:
            return []
        every = seconds((self.alert_policy.default or Alerts()).check_every, what="check_every")
        return [(every, self.check_alerts)]

    def _alert_start(self) -> list[Callable[[], object]]:
        """A worker's first watchdog pass: logged if it fails, never stopping the worker."""
        return [partial(logged, self.check_alerts)] if self.alert_policy.active else []

    # -- definitions -------------------------------------------------------------------

    def job(self, fn: Fn | None = None, **options: Unpack[JobOptions]) -> Any:
        """Register a job: `@app.job` or `@app.job(retries=3, timeout="30s", ...)`."""
        return self._decorator("job", fn, options)

    def workflow(self, fn: Fn | None = None, **options: Unpack[JobOptions]) -> Any:
        """Register a workflow: an async function whose `ctx.step(...)` calls are durable."""
        return self._decorator("workflow", fn, options)

    def agent(self, agent: Agent, *, deps: Any = None, **options: Unpack[JobOptions]) -> Agent:
        """Register an agent to run as a job (kind "agent") under its own name:
        `app.run_now("billing-reviewer", task)`. The payload is the task; a run that does not
        end "succeeded" fails with AgentFailed naming the reason. `options` are those of
        `add` (trigger, retries, timeout, ...); run_as defaults to the agent's."""
        check_options(f"app.agent({agent.name!r})", options, JOB_OPTIONS - {"name"})
        options.setdefault("run_as", agent.run_as)
        options["name"] = agent.name
        self.add(agent_job(agent, deps), kind="agent", **options)
        return agent

    def retention_policy(self) -> RetentionPolicy:
        """The app's default retention and each definition's own (`retention=`)."""
        own = {d.name: d.retention_s for d in self.definitions.values() if d.retention_s}
        return RetentionPolicy(self.retention_s, own)

    def _decorator(self, kind: str, fn: Fn | None, options: JobOptions) -> Any:
        check_options(f"@app.{kind}", options, JOB_OPTIONS)  # now, not when it is applied

        def register(f: Fn) -> Fn:
            if kind == "workflow" and not inspect.iscoroutinefunction(f):
                # its ctx.step calls would not be awaited: no step would run, only warnings
                raise ConfigError(
                    f"@app.workflow needs an async function, and {getattr(f, '__name__', f)!r}"
                    " is not one: write `async def` and `await ctx.step(...)`, or use "
                    "@app.job for a plain function"
                )
            self.add(f, kind=kind, **options)
            return f

        return register(fn) if fn is not None else register

    def add(
        self,
        fn: Fn,
        *,
        kind: str = "job",
        **options: Unpack[JobOptions],
    ) -> JobDefinition:
        """Register a function; `options` are those of `rota.jobs.define` (retries, timeout,
        retry_backoff, run_as, priority, concurrency, concurrency_key, misfire,
        max_catch_up, misfire_grace, overlap, escalate_to, shadow) plus `schedule`, a
        synonym of trigger, and `alerts`. A misspelt option is a ConfigError."""
        check_options(f"app.add({getattr(fn, '__name__', fn)!r})", options, JOB_OPTIONS)
        trigger, schedule = options.pop("trigger", None), options.pop("schedule", None)
        if trigger is not None and schedule is not None:
            raise ConfigError("pass trigger= or schedule= (a synonym), not both")
        alerts = options.pop("alerts", None)
        chosen: DefineOptions = options  # schedule and alerts are popped: define's options
        chosen["trigger"] = trigger if trigger is not None else schedule
        definition = define(fn, kind=kind, **chosen)
        if definition.name in self.definitions:
            raise ConfigError(f"{definition.name!r} is defined twice; give one a name=...")
        target = options.get("escalate_to")
        if (
            target is not None
            and not isinstance(target, str)
            and target.name not in self.definitions
        ):
            self.agent(cast("Agent", target))  # an Agent not registered yet: the defaults
        if definition.escalation is not None and definition.escalation.shadow > 0:
            definition = replace(definition, fn=shadowing(definition.fn))
        if alerts is not None:
            self.alert_policy.set_job(definition.name, alerts)
            self._sync_alert_job()
        self.definitions[definition.name] = definition
        return definition

    def definition(self, name: str) -> JobDefinition:
        """The registered job, workflow or agent `name`; `UnknownJobError` names the known ones."""
        try:
            return self.definitions[name]
        except KeyError:
            raise UnknownJobError(name, list(self.definitions)) from None

    # -- enqueueing --------------------------------------------------------------------

    def run_now(
        self,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        delay: Duration = 0,
        run_as: str | None = None,
        trigger: str = "manual",
        actor: Actor = admin.APP,
    ) -> RunHandle:
        """Enqueue one run; a duplicate idempotency key returns the existing run."""
        return self.run_many(
            name,
            [payload],
            idempotency_keys=[idempotency_key],
            priority=priority,
            delay=delay,
            run_as=run_as,
            trigger=trigger,
            actor=actor,
        )[0]

    def run_many(
        self,
        name: str,
        payloads: Iterable[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        priority: int | None = None,
        delay: Duration = 0,
        run_as: str | None = None,
        trigger: str = "manual",
        actor: Actor = admin.APP,
    ) -> list[RunHandle]:
        """Enqueue many runs of one job in one transaction. A run_as (given here or by the
        definition) naming an unknown or disabled principal is refused and audited."""
        definition = self.definition(name)
        self._admit(run_as or definition.run_as, name, actor)
        payloads = list(payloads)
        keys = list(idempotency_keys) if idempotency_keys else [None] * len(payloads)
        if len(keys) != len(payloads):
            raise ConfigError("idempotency_keys must have one entry per payload")
        now, delay_s = self.clock.now(), seconds(delay, what="delay")
        runs = [
            definition.new_run(
                p,
                now=now,
                trigger=trigger,
                idempotency_key=k,
                priority=priority,
                delay_s=delay_s,
                run_as=run_as,
            )
            for p, k in zip(payloads, keys, strict=True)
        ]
        created = self._admitted(runs, self.store.enqueue)
        self._wake_local()
        return [RunHandle(self, run_id, was_created) for run_id, was_created in created]

    def emit(
        self,
        event: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        source: str = "app",
    ) -> Emitted:
        """Store an event and enqueue a run of every job whose on_event trigger matches."""
        if not isinstance(event, str) or not event:
            raise ConfigError("emit needs an event name, e.g. app.emit('billing.event', {...})")
        if len(event) > 200 or not event.isprintable():
            raise ConfigError(
                f"event name {event[:80]!r} must be 1 to 200 characters without control "
                "characters, e.g. 'billing.event'"
            )
        return self._ingest(
            Event(new_id(), event, payload, idempotency_key, source, self.clock.now())
        )

    def receive_webhook(self, name: str, headers: Mapping[str, str], body: bytes) -> Emitted:
        """Verify a delivery to POST /hooks/{name}, store it, enqueue the runs it triggers.

        A refused delivery raises WebhookRejected (with its HTTP status) and is recorded; a
        redelivered id is stored once and enqueues nothing the second time."""
        hooks = self.webhooks()
        if name not in hooks:
            raise UnknownWebhook(name, list(hooks))
        now = self.clock.now()
        try:
            delivery = verify(hooks[name], headers, body, now=now)
        except WebhookRejected as exc:
            self.store.record_rejection(
                Rejection(
                    new_id(),
                    name,
                    exc.status,
                    exc.reason,
                    str(exc),
                    _header(headers, "webhook-id", "x-github-delivery"),
                    len(body),
                    now,
                )
            )
            raise
        event = Event(new_id(), name, delivery.payload, delivery.delivery_id, WEBHOOK_SOURCE, now)
        # Its runs continue the sender's trace (a `traceparent` header), through this span.
        with webhook_span(name, headers) as trace_context:
            return self._ingest(event, trace_context)

    def notify_channels(self) -> list[str]:
        """PostgreSQL NOTIFY channels that on_notify triggers listen on."""
        return notify_channels(self.definitions.values())

    def webhooks(self) -> dict[str, OnWebhook]:
        """Webhook triggers by name; jobs sharing a name share its verification settings."""
        return webhooks(self.definitions.values())

    def replay_event(self, event_id: str) -> Emitted:
        """Enqueue the runs a stored event triggers, again (e.g. after fixing a bug)."""
        event = self.store.get_event(event_id)
        runs = [
            self._event_run(d, event, f"replay:{event.id}:{new_id()}")
            for d, _ in self._matching(event)
        ]
        created = self._admitted_many(runs, self.store.enqueue)
        self._wake_local()
        return Emitted(event.id, False, [RunHandle(self, r, c) for r, c in created])

    def _ingest(self, event: Event, trace_context: str | None = None) -> Emitted:
        """Store the event and enqueue its runs, which continue `trace_context` (else the
        current span's: an event emitted by a traced run)."""
        trace_context = trace_context or current_traceparent()
        runs, debounced = [], []
        for definition, trigger in self._matching(event):
            run = self._event_run(definition, event, f"event:{event.id}", trace_context)
            if trigger.debounce is not None:
                debounced.append(Debounced(run, *trigger.debounce))
            else:
                runs.append(run)
        event_id, created, run_ids = self._admitted_many(
            runs,
            lambda admitted: self.store.record_event(event, admitted, debounced),
            stored=lambda recorded: recorded[1],  # False: an event seen before
        )
        self._wake_local()
        return Emitted(event_id, created, [RunHandle(self, r, True) for r in run_ids])

    def _matching(self, event: Event) -> list[tuple[JobDefinition, Trigger]]:
        """Each job with a trigger that this event fires (its first such trigger)."""
        found = []
        for definition in self.definitions.values():
            trigger = next((t for t in definition.triggers if t.matches_event(event)), None)
            if trigger is not None:
                found.append((definition, trigger))
        return found

    def _event_run(
        self, definition: JobDefinition, event: Event, key: str, trace_context: str | None = None
    ) -> NewRun:
        run = definition.new_run(
            event.payload,
            now=self.clock.now(),
            trigger="webhook" if event.source == WEBHOOK_SOURCE else "event",
            trigger_ref=event.id,
            idempotency_key=key,
        )
        return replace(run, trace_context=trace_context)

    def _wake_local(self) -> None:
        self.wakeups()

    @property
    def services(self) -> RunServices:
        """What runs of this app's jobs reach through their context (ctx.services): these
        definitions, the queue (and this process's workers), the budgets declared with
        app.budget, and the approval webhook's announcements when there is one."""
        return RunServices(
            registry=self,
            enqueue=self._enqueue,
            shared_budgets=self.budgets,
            announce=self._announce if self.approval_webhook is not None else None,
        )

    def _announce(self, request: ApprovalRequest) -> NewRun:
        return notify.announcement(self, request)

    def _enqueue(self, runs: Sequence[NewRun]) -> list[tuple[str, bool]]:
        """Put runs a run makes (escalations, shadow runs) on the queue, and wake this
        process's workers: (run id, created) per run."""
        created = self._admitted_many(runs, self.store.enqueue)
        self._wake_local()
        return created

    # -- reading -----------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        """The run as stored now (state, result, error); `RunNotFound` when no run has this id."""
        return self.store.get_run(run_id)

    def runs(
        self, *, states: Sequence[str] = (), names: Sequence[str] = (), limit: int = 50
    ) -> list[Run]:
        """The newest runs first, filtered by state and job name; at most `limit` of them."""
        return self.store.list_runs(RunFilter(tuple(states), tuple(names), limit))

    # -- working -----------------------------------------------------------------------

    def worker(self, **options: Any) -> Worker:
        """A worker for this app, not yet started: `options` are `WorkerOptions` fields
        (concurrency, lease_s, ...). `rota worker` builds its worker the same way."""
        return Worker(self, WorkerOptions(**options))

    def worker_parts(self) -> WorkerParts:
        """What this app's workers are made of (Worker(app) asks): the store, clock and
        wake-ups of this app, the run's trace span when tracing is on (rota.observability),
        ObserveRuns (metrics, log context: rota.worker.observe), the standard run middleware
        then app.run_middleware, and a check of the declared run_as principals when a worker
        starts."""
        return WorkerParts(
            store=self.store,
            clock=self.clock,
            wakeups=self.wakeups,
            middleware=[
                *traced_runs(),  # when tracing: outermost, so the logs see the run's span
                ObserveRuns(self.store),
                *standard(self.store),
                *self.run_middleware,
            ],
            on_start=[self.verify_principals, *self._alert_start()],
            services=self.services,
            periodic=self._alert_checks(),
        )

    def drain(self, *, advance_waits: bool = False, **options: Any) -> WorkerStats:
        """Run a worker in this process until nothing is queued or running (scripts, tests).

        With a FakeClock, time passes only as drain moves it: when nothing is running and
        every queued run is due later (a delay, a retry's backoff), drain moves the clock to
        the earliest of them, or to an earlier deadline of a parked run, and goes on, so it
        runs everything queued to completion in virtual time. Parked runs stay parked unless
        the clock passes their deadline on the way; advance_waits=True also moves the clock
        to the deadlines of parked runs (a ctx.sleep ending, a wait_for_event or approval
        timing out). A wait with no deadline stays parked. With any other clock, queued runs
        are waited for in real time, and advance_waits is refused."""
        fake = self.clock if isinstance(self.clock, FakeClock) else None
        if advance_waits and fake is None:
            raise ConfigError(
                "drain(advance_waits=True) needs a FakeClock: it moves the clock to the "
                f"deadlines of parked runs, and this app's clock is a {type(self.clock).__name__};"
                " make the app with App(..., clock=FakeClock()) or drop advance_waits"
            )
        worker = self.worker(**options)
        skip_ahead = None
        if fake is not None:
            skip_ahead = _virtual_time(fake, worker, sorted(self.definitions), advance_waits)
        return asyncio.run(worker.run(until_idle=True, skip_ahead=skip_ahead))


def _virtual_time(
    clock: FakeClock, worker: Worker, names: list[str], advance_waits: bool
) -> Callable[[], Awaitable[bool]]:
    """drain's skip_ahead under a FakeClock: move the clock to the next instant something
    falls due, and queue the parked runs whose deadline it reached."""
    store = worker.store

    async def skip_ahead() -> bool:
        now = clock.now()
        target = await worker.db(_next_instant, store, names, now, advance_waits)
        if target is None:
            return False
        clock.set(target)  # here on the loop: it resolves the futures of clock.sleep callers
        await worker.db(store.wake_due_waits, target)
        return True

    return skip_ahead


def _next_instant(
    store: SqlStore, names: list[str], now: float, advance_waits: bool
) -> float | None:
    """When something next falls due, if that is later than now and nothing is running;
    None: nothing to move the clock to (or something is due or running already)."""
    if store.count_states(names).get("RUNNING"):
        return None  # a run held by another worker may still queue something sooner
    due, wait_due = store.wake_times(names)
    if due is None and not advance_waits:
        return None  # only parked runs are left: they stay parked
    instants = [t for t in (due, wait_due) if t is not None]
    if not instants or min(instants) <= now:
        return None
    return min(instants)


class _NothingStored(Exception):
    """Raised inside a transaction to roll it back, carrying what the insert returned."""

    def __init__(self, result: object) -> None:
        self.result = result


def _routines_dir(given: str | Path | None) -> Path:
    """The routines directory: as given, else `routines/` beside the module that made the
    App (two frames up: App.__init__'s caller), else `routines/` in the current directory
    (an App made by code with no file: a notebook, `python -c`)."""
    if given is not None:
        return Path(given)
    made_in = sys._getframe(2).f_globals.get("__file__")
    return Path(made_in).resolve().parent / "routines" if made_in else Path("routines")


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    lower = {k.lower(): v for k, v in headers.items()}
    return next((lower[n][:256] for n in names if n in lower), None)


@dataclass(frozen=True)
class Emitted:
    """What `app.emit` did: the stored event, whether it is new (an idempotency key seen before
    stores nothing and starts nothing), and the runs its triggers enqueued."""

    event_id: str
    created: bool  # False: an event with this idempotency key was stored before
    runs: list[RunHandle]


class RunHandle:
    """A reference to a run; reads the store, never caches its state."""

    def __init__(self, app: App, run_id: str, created: bool = True) -> None:
        self.app = app
        self.id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def get(self) -> Run:
        return self.app.store.get_run(self.id)

    @property
    def state(self) -> str:
        return self.get().state.value

    def wait(self, timeout: float | None = None, poll: float = 0.05) -> Run:
        """Block until the run has ended (SUCCEEDED, FAILED or CANCELLED)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get()
            if run.state.finished:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} is still {run.state} after {timeout}s")
            time.sleep(poll)

    def result(self, timeout: float | None = None) -> Any:
        run = self.wait(timeout)
        if run.state.value != "SUCCEEDED":
            raise RunFailed(run.id, run.state.value, run.error)
        return run.result
