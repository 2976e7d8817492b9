"""Alerts (docs/alerts.md): a run failing after its last retry, a budget refusal, an approval
waiting too long and a silent schedule each raise one alert, delivered through rota's queue
to a loopback receiver that checks its Standard Webhooks signature; a failing receiver is
retried with backoff and holds nothing else up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alert_receiver import Receiver, receiver

from rota import Agent, App, Budget, FakeClock, every
from rota.alerts import Alerts, grace, slack, webhook
from rota.model import RunState
from rota.scheduler import Scheduler
from rota.storage.alerts import DELIVERED, FAILED
from rota.testing import ScriptedModel, answer, say

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def apps() -> Iterator[list[App]]:
    made: list[App] = []
    yield made
    for app in made:
        app.close()


def make_app(database_url: str, clock: FakeClock, apps: list[App], url: str, **options: Any) -> App:
    app = App(
        database_url,
        clock=clock,
        alerts=Alerts(sinks=[webhook(url, secret="ALERTS_SECRET", name="ops")], **options),
    )
    apps.append(app)
    return app


def failing_job(app: App, *, fail_times: int = 1_000, retries: int = 2) -> list[int]:
    attempts: list[int] = []

    @app.job(name="sync-invoices", retries=retries, retry_backoff="10s")
    def sync_invoices(ctx: Any) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) <= fail_times:
            raise RuntimeError("ledger API answered 503")
        return "synced"

    return attempts


def test_a_run_failing_after_its_last_retry_alerts_once(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    app = make_app(database_url, clock, apps, hook.url)
    attempts = failing_job(app)
    run = app.run_now("sync-invoices")
    app.drain()
    assert run.get().state == RunState.FAILED and len(attempts) == 3
    app.drain()  # a worker starting runs the watchdog, then delivers what it raised
    app.drain()  # and a second pass finds nothing new
    [body] = hook.verified()
    assert body["kind"] == "failure" and body["subject"] == "sync-invoices"
    assert body["detail"]["run_id"] == run.id and body["detail"]["attempts"] == 3
    assert "ledger API answered 503" in body["text"]
    assert hook.received[0].headers["webhook-id"] == body["id"]
    [alert] = app.store.alerts()
    assert (alert.state, alert.attempts, alert.sink) == (DELIVERED, 1, "ops")


def test_a_retried_attempt_does_not_alert(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    app = make_app(database_url, clock, apps, hook.url)
    attempts = failing_job(app, fail_times=1)
    run = app.run_now("sync-invoices")
    between: list[tuple[RunState, int, list[str]]] = []

    async def check_then_move_on() -> bool:
        """Between the attempts (the worker idle, the retry due later): look for alerts,
        then move the clock to the retry."""
        waiting = run.get()
        between.append((waiting.state, waiting.failures, app.check_alerts()))
        if waiting.state != RunState.ENQUEUED:
            return False
        clock.set(waiting.run_after)
        return True

    asyncio.run(app.worker().run(until_idle=True, skip_ahead=check_then_move_on))
    assert between[0] == (RunState.ENQUEUED, 1, [])  # failed, but to be retried: no alert
    assert run.get().state == RunState.SUCCEEDED and run.get().failures == 1
    assert len(attempts) == 2
    assert app.check_alerts() == []
    assert hook.received == [] and app.store.alerts() == []


def test_a_run_stopped_by_its_budget_alerts(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    app = make_app(database_url, clock, apps, hook.url, failure=False)
    model = ScriptedModel("thrifty", script=[say("thinking"), say("still"), answer({"ok": 1})])
    app.agent(Agent("thrifty", model, "Go.", output=dict, budget=Budget(requests=2)))
    run = app.run_now("thrifty")
    app.drain()
    assert run.get().state == RunState.FAILED and "budget_exceeded" in run.get().error["message"]
    app.drain()
    [body] = hook.verified()  # failure=False: the budget alert only
    assert (body["kind"], body["subject"]) == ("budget", "thrifty")
    assert body["detail"]["run_id"] == run.id
    assert "2 model requests" in body["text"] or "budget" in body["text"]


def test_an_approval_waiting_past_its_threshold_alerts_once(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    app = make_app(database_url, clock, apps, hook.url, approval_after="30m")
    app.principal("alice", kind="user", roles=["approver:finance"])

    @app.workflow(name="refund")
    async def refund(ctx: Any) -> bool:
        decision = await ctx.approval("Refund $500 to acme?", approvers="finance")
        return bool(decision.approved)

    run = app.run_now("refund")
    app.drain()
    assert run.get().state == RunState.WAITING
    clock.advance(29 * 60)
    assert app.check_alerts() == []  # not yet: 29 minutes
    clock.advance(2 * 60)
    app.drain()
    clock.advance(60 * 60)
    app.drain()  # still waiting an hour later: no second alert
    [body] = hook.verified()
    assert body["kind"] == "approval" and body["subject"] == "refund"
    assert "Refund $500 to acme?" in body["text"] and "31m" in body["text"]


def minutely(app: App) -> None:
    @app.job(name="heartbeat", schedule=every("1m"))
    def heartbeat(ctx: Any) -> str:
        return "beat"


def watched_heartbeat(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> tuple[App, Scheduler]:
    """An app with the minutely heartbeat, its schedule synced, and the watchdog watching
    from now."""
    app = make_app(database_url, clock, apps, hook.url)
    minutely(app)
    scheduler = Scheduler(app)
    scheduler.sync()
    app.check_alerts()
    return app, scheduler


def test_a_silent_schedule_alerts_once_within_a_period_plus_the_grace(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    # the watchdog starts watching at 12:00
    app, scheduler = watched_heartbeat(database_url, clock, apps, hook)
    clock.advance(60)
    scheduler.tick()  # 12:01 fires
    app.drain()
    ticks = app.store.ticks("heartbeat")
    assert {t.outcome for t in ticks} == {"enqueued"}
    assert max(t.fire_at for t in ticks) == (START + timedelta(minutes=1)).timestamp()
    stopped = clock.now()  # the scheduler stops here: 12:02 is the first tick missed
    # Two workers, each in its own app (as in two processes), both run the watchdog.
    other = make_app(database_url, clock, apps, hook.url)
    minutely(other)
    stated_grace = 30.0  # docs/alerts.md: max(30 s, 10% of the period); the period is 60 s
    assert grace(60) == stated_grace and grace(3600) == 360
    limit = stopped + 60 + stated_grace
    raised: list[str] = []
    while clock.now() < limit + 5:
        clock.advance(5)
        raised += app.check_alerts() + other.check_alerts()
        if raised:
            break
    assert len(raised) == 1 and clock.now() <= limit + 5  # 5 s: how often it was checked here
    assert clock.now() >= limit  # not before the grace
    asyncio.run(_two_workers(app, other))
    [body] = hook.verified()
    assert body["kind"] == "silence" and body["subject"] == "heartbeat"
    expected = (START + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    assert body["detail"]["expected_at"].startswith(expected[:19])
    assert "no scheduler fired it" in body["text"]
    clock.advance(10 * 60)  # ten more minutes of silence: the same stretch, no new alert
    assert app.check_alerts() == [] and other.check_alerts() == []


async def _two_workers(*apps: App) -> None:
    await asyncio.gather(*(a.worker().run(until_idle=True) for a in apps))


def test_a_paused_schedule_is_reported_as_paused(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    app, scheduler = watched_heartbeat(database_url, clock, apps, hook)
    app.store.set_paused("heartbeat", True, clock.now())
    for _ in range(3):
        clock.advance(60)
        scheduler.tick()  # the scheduler runs, but every tick is skipped (paused)
    app.drain()
    [body] = hook.verified()
    assert body["kind"] == "silence" and "the schedule is paused" in body["text"]


def test_a_failing_receiver_is_retried_with_backoff_and_holds_up_nothing(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    hook.statuses[:] = [500, 503]
    app = make_app(database_url, clock, apps, hook.url, backoff="30s")
    failing_job(app, retries=0)
    done: list[str] = []

    @app.job(name="report")
    def report(ctx: Any) -> str:
        done.append(ctx.run_id)
        return "ok"

    failed = app.run_now("sync-invoices")
    app.drain()
    assert failed.get().state == RunState.FAILED
    sent_at = clock.now()
    [raised] = app.check_alerts()
    other = app.run_now("report")
    app.drain()
    assert other.get().state == RunState.SUCCEEDED and done == [other.id]
    assert failed.get().state == RunState.FAILED  # untouched by the delivery's troubles
    assert len(hook.received) == 3 and len(hook.verified()) == 3
    assert {r.headers["webhook-id"] for r in hook.received} == {raised}  # one id: dedupe
    alert = app.store.alert(raised)
    assert alert is not None and (alert.state, alert.attempts) == (DELIVERED, 3)
    delivery = app.get_run(alert.run_id or "")
    assert delivery.state == RunState.SUCCEEDED and delivery.failures == 2
    assert clock.now() - sent_at >= 30  # the retries waited their backoff
    finished = other.get().finished_at
    assert finished is not None and alert.delivered_at is not None
    assert finished < alert.delivered_at  # the other run did not wait for the deliveries


def test_a_receiver_that_never_accepts_leaves_the_alert_failed_without_alerting_on_itself(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    hook.statuses[:] = [500] * 10
    app = make_app(database_url, clock, apps, hook.url, retries=2, backoff="1s")
    failing_job(app, retries=0)
    app.run_now("sync-invoices")
    app.drain()
    app.drain()
    app.drain()
    assert len(hook.received) == 3  # 1 + 2 retries, and no alert about the delivery run
    [alert] = app.store.alerts()
    assert (alert.state, alert.attempts) == (FAILED, 3)
    assert "answered 500" in (alert.last_error or "")
    assert app.get_run(alert.run_id or "").state == RunState.FAILED


def test_a_slack_sink_gets_text(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    app = App(database_url, clock=clock, alerts=Alerts(sinks=[slack(hook.url)]))
    apps.append(app)
    failing_job(app, retries=0)
    app.run_now("sync-invoices")
    app.drain()
    app.drain()
    [delivery] = hook.received
    assert list(delivery.json) == ["text"] and "sync-invoices" in delivery.json["text"]
    assert "webhook-signature" not in delivery.headers


def test_a_job_can_turn_alerts_off_or_send_them_elsewhere(
    database_url: str, clock: FakeClock, apps: list[App], hook: Receiver
) -> None:
    with receiver() as pager:
        app = App(
            database_url,
            clock=clock,
            alerts=Alerts(
                sinks=[
                    webhook(hook.url, secret="ALERTS_SECRET", name="ops"),
                    webhook(pager.url, secret="ALERTS_SECRET", name="pager"),
                ]
            ),
        )
        apps.append(app)

        @app.job(name="noisy", alerts=False)
        def noisy(ctx: Any) -> None:
            raise RuntimeError("expected")

        @app.job(name="billing", alerts=["pager"])
        def billing(ctx: Any) -> None:
            raise RuntimeError("card declined")

        app.run_now("noisy")
        app.run_now("billing")
        app.drain()
        app.drain()
        assert hook.received == []
        [body] = pager.verified()
        assert body["subject"] == "billing"
