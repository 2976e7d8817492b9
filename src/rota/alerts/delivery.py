"""Delivering alerts: an internal job, `rota:alert`, one run per (alert, sink).

The watchdog enqueues the run in the transaction that stores the alert, so a stored alert
is never left undelivered; a failed POST is retried by rota's own queue with exponential
backoff (`Alerts(retries=, backoff=)`). Each attempt is recorded on the alert (`rota alerts
list`); after the last one its state is `failed`, and the run stays FAILED for `rota runs
retry`. A delivery run never alerts about itself (rota's own jobs raise no alerts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..errors import ConfigError
from ..identity.secrets import Vault
from ..ids import new_id
from ..model import NewRun
from ..storage.alerts import DELIVERED, FAILED, PENDING, AlertRecord
from ..storage.base import Store
from .config import AlertPolicy, Alerts, Sink
from .sinks import DeliveryFailed, SecretLookup, deliver, env_secrets

if TYPE_CHECKING:
    from ..durable import DurableContext
    from ..jobs import Registry

JOB = "rota:alert"
PRINCIPAL = "rota:alerts"  # the principal vault secrets for sinks are granted to


def job_options(alerts: Alerts) -> dict[str, Any]:
    """The options (App.add) of the job that delivers alerts: its name and retries."""
    return {
        "kind": "job",
        "name": JOB,
        "retries": alerts.retries,
        "retry_backoff": alerts.backoff,
        "timeout": 60,
    }


def delivery_run(registry: Registry, alert: AlertRecord) -> NewRun:
    """The run that delivers `alert` to its sink: at most one per alert (idempotency key)."""
    return registry.definition(JOB).new_run(
        {"alert": alert.id},
        now=alert.created_at,
        trigger="alert",
        trigger_ref=alert.id,
        idempotency_key=f"alert:{alert.id}",
    )


def secret_lookup(store: Store) -> SecretLookup:
    """Secrets by name: the environment first, then the vault (granted to rota:alerts)."""

    def lookup(name: str) -> str | None:
        value = env_secrets(name)
        if value is not None or store.secret(name) is None:
            return value
        return Vault(store).get(name, PRINCIPAL)

    return lookup


def deliver_job(
    policy: Callable[[], AlertPolicy], store: Callable[[], Store], clock: Clock
) -> Callable[[DurableContext, dict[str, Any]], str]:
    """The function of the delivery job: send the alert to its sink (as the app declares it
    when the run posts), and record the attempt on the alert."""

    def deliver_alert(ctx: DurableContext, payload: dict[str, Any]) -> str:
        db = store()
        alert = db.alert(str(payload.get("alert")))
        if alert is None:
            return "alert not found (deleted)"
        sink = _sink(policy(), alert.sink)
        try:
            status = deliver(sink, alert, now=clock.now(), secrets=secret_lookup(db))
        except (DeliveryFailed, ConfigError) as exc:
            last = ctx.run.failures + 1 >= ctx.run.max_attempts
            state = FAILED if last else PENDING
            db.record_delivery(alert.id, state=state, at=clock.now(), error=str(exc))
            raise DeliveryFailed(str(exc)) from None
        db.record_delivery(alert.id, state=DELIVERED, at=clock.now())
        return f"delivered to {sink.name} ({status})"

    return deliver_alert


def _sink(policy: AlertPolicy, name: str) -> Sink:
    named = policy.named()
    if name not in named:
        raise DeliveryFailed(
            f"alert sink {name!r} is no longer declared (declared: {', '.join(sorted(named))})"
        )
    return named[name]


def send_test(
    policy: AlertPolicy, db: Store, clock: Clock, sink: str | None = None
) -> list[AlertRecord]:
    """Send a test alert now, to one sink or to every declared one, without the queue (so
    the answer is immediate); each is recorded as delivered or failed."""
    named = policy.named()
    if not named:
        raise ConfigError(
            "no alert sinks are declared; pass App(alerts=Alerts(sinks=[slack(...)]))"
        )
    if sink is not None and sink not in named:
        raise ConfigError(f"no alert sink named {sink!r}; declared: {', '.join(sorted(named))}")
    sent = []
    for target in [named[sink]] if sink is not None else list(named.values()):
        now = clock.now()
        alert = AlertRecord(
            new_id(),
            f"test:{new_id()}",
            target.name,
            "test",
            "rota",
            f"rota: test alert to sink {target.name} (`rota alerts test`)",
            now,
        )
        try:
            deliver(target, alert, now=now, secrets=secret_lookup(db))
            alert = replace(alert, state=DELIVERED, attempts=1, delivered_at=now)
        except DeliveryFailed as exc:
            alert = replace(alert, state=FAILED, attempts=1, last_error=str(exc))
        db.raise_alerts([(alert, None)])
        sent.append(alert)
    return sent
