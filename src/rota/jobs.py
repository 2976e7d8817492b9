"""Job and workflow definitions: what the decorators register and how a run is made."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, cast

from . import serialization
from .durations import Duration, optional_seconds, seconds
from .errors import ConfigError
from .identity.principals import check_name as check_principal_name
from .ids import new_id
from .model import NewRun
from .scheduling.triggers import Trigger
from .scheduling.webhooks import OnWebhook

ConcurrencyKey = str | Callable[[Any], Any] | None


class Named(Protocol):
    """Anything with a name: an Agent, for escalate_to=."""

    @property
    def name(self) -> str: ...


class DefineOptions(TypedDict, total=False):
    """The keyword options of a job, workflow or agent definition (`define`), typed so that
    an editor flags a misspelt one; at run time `check_options` says did-you-mean."""

    name: str
    trigger: Trigger | Sequence[Trigger] | None
    retries: int
    timeout: Duration | None
    retry_backoff: Duration
    run_as: str | None
    priority: int
    concurrency: int | None
    concurrency_key: ConcurrencyKey
    misfire: str
    max_catch_up: int
    misfire_grace: Duration
    overlap: str
    escalate_to: Named | str | None
    shadow: float
    retention: Duration | None


MIN_RETENTION_S = 3600.0  # an hour: a shorter retention is more likely a slip than a policy


def retention_seconds(value: Duration, *, what: str = "retention") -> float:
    """A retention as seconds: a duration of at least an hour ('30d', '12h', '2w'). Runs
    that finished longer ago than it are pruned (rota.retention)."""
    result = seconds(value, what=what)
    if result < MIN_RETENTION_S:
        raise ConfigError(
            f"{what} must be at least 1h (runs finished longer ago than it are pruned), "
            f"got {value!r}; write e.g. '30d', '12h' or '2w'"
        )
    return result


ESCALATION_TRIGGER = "escalation"  # the trigger of an agent run made by ctx.escalate
SHADOW_TRIGGER = "shadow"  # the trigger of an agent run that shadows a job (rota.shadow)


@dataclass(frozen=True)
class EscalationPolicy:
    """What a job definition says about escalating: to which agent, and how much to shadow."""

    agent: str
    shadow: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.shadow, bool) or not 0.0 <= self.shadow <= 1.0:
            raise ConfigError(f"shadow must be a fraction between 0 and 1, got {self.shadow!r}")


@dataclass(frozen=True)
class JobDefinition:
    name: str
    fn: Callable[..., Any]
    kind: str  # "job" | "workflow"
    triggers: tuple[Trigger, ...]
    max_attempts: int
    timeout_s: float | None
    backoff_s: float
    run_as: str | None
    priority: int
    concurrency: int | None
    concurrency_key: ConcurrencyKey
    takes_payload: bool
    misfire: str = "run_once"
    max_catch_up: int = 10
    misfire_grace_s: float = 60.0
    overlap: str = "skip"
    escalation: EscalationPolicy | None = None
    # How long its finished runs are kept (rota.retention); None: the app's default.
    retention_s: float | None = None

    @property
    def limited(self) -> bool:
        return self.concurrency is not None

    def new_run(
        self,
        payload: Any,
        *,
        now: float,
        trigger: str,
        idempotency_key: str | None = None,
        priority: int | None = None,
        delay_s: float = 0.0,
        run_as: str | None = None,
        trigger_ref: str | None = None,
        parent_id: str | None = None,
    ) -> NewRun:
        text = serialization.dumps(payload, what=f"the payload for {self.name!r}")
        return NewRun(
            id=new_id(),
            name=self.name,
            kind=self.kind,
            payload=text,
            trigger=trigger,
            created_at=now,
            run_after=now + delay_s,
            priority=self.priority if priority is None else priority,
            max_attempts=self.max_attempts,
            idempotency_key=idempotency_key,
            concurrency_key=self._key_for(payload),
            concurrency_limit=self.concurrency,
            principal=run_as or self.run_as,
            trigger_ref=trigger_ref,
            parent_id=parent_id,
            timeout_s=self.timeout_s,
        )

    def _key_for(self, payload: Any) -> str | None:
        if self.concurrency is None:
            return None
        if self.concurrency_key is None:
            return self.name
        if callable(self.concurrency_key):
            return f"{self.name}:{self.concurrency_key(payload)}"
        if not isinstance(payload, dict) or self.concurrency_key not in payload:
            raise ConfigError(
                f"{self.name!r} limits concurrency per {self.concurrency_key!r}, but the payload "
                f"has no such field; pass a payload like {{{self.concurrency_key!r}: ...}}"
            )
        return f"{self.name}:{payload[self.concurrency_key]}"


class Registry(Protocol):
    """The definitions a process knows, by name: what the features below the runtime need of
    the App (which satisfies it) to find a job or an agent."""

    @property
    def definitions(self) -> Mapping[str, JobDefinition]: ...

    def definition(self, name: str) -> JobDefinition:
        """The definition named `name`; UnknownJobError if there is none."""
        ...


Enqueue = Callable[[Sequence[NewRun]], list[tuple[str, bool]]]
"""Put runs on the queue (and wake the local worker): (run id, created) per run, in order."""


def notify_channels(definitions: Iterable[JobDefinition]) -> list[str]:
    """PostgreSQL NOTIFY channels that the definitions' triggers listen on, sorted."""
    channels: set[str] = set()
    for definition in definitions:
        for trigger in definition.triggers:
            channels |= trigger.channels()
    return sorted(channels)


def webhooks(definitions: Iterable[JobDefinition]) -> dict[str, OnWebhook]:
    """Webhook triggers by name; jobs sharing a name share its verification settings (the
    first definition's)."""
    hooks: dict[str, OnWebhook] = {}
    for definition in definitions:
        for trigger in definition.triggers:
            for hook in trigger.webhooks():
                # Trigger.webhooks() yields OnWebhook triggers (scheduling.triggers is the
                # leaf below them, so it cannot name the class).
                endpoint = cast(OnWebhook, hook)
                hooks.setdefault(endpoint.name, endpoint)
    return hooks


def define(
    fn: Callable[..., Any],
    *,
    kind: str,
    name: str | None = None,
    trigger: Trigger | Sequence[Trigger] | None = None,
    retries: int = 0,
    timeout: Duration | None = None,
    retry_backoff: Duration = "1s",
    run_as: str | None = None,
    priority: int = 0,
    concurrency: int | None = None,
    concurrency_key: ConcurrencyKey = None,
    misfire: str = "run_once",
    max_catch_up: int = 10,
    misfire_grace: Duration = "60s",
    overlap: str = "skip",
    escalate_to: Any = None,
    shadow: float = 0.0,
    retention: Duration | None = None,
) -> JobDefinition:
    """Validate decorator arguments at definition time, where a mistake is cheap to fix."""
    job_name = name or fn.__name__
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{job_name}: retries must be a whole number >= 0, got {retries!r}")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ConfigError(f"{job_name}: concurrency must be an int >= 1, got {concurrency!r}")
    if concurrency_key is not None and concurrency is None:
        raise ConfigError(f"{job_name}: concurrency_key needs concurrency=N (runs per key)")
    if not isinstance(priority, int):
        raise ConfigError(f"{job_name}: priority must be an int, got {priority!r}")
    _one_of(job_name, "misfire", misfire, MISFIRE_POLICIES)
    _one_of(job_name, "overlap", overlap, OVERLAP_POLICIES)
    if not isinstance(max_catch_up, int) or max_catch_up < 1:
        raise ConfigError(f"{job_name}: max_catch_up must be an int >= 1, got {max_catch_up!r}")
    if run_as is not None:
        check_principal_name(run_as)
    escalation = _escalation(job_name, escalate_to, shadow)
    return JobDefinition(
        name=job_name,
        fn=fn,
        kind=kind,
        triggers=_triggers(job_name, trigger),
        max_attempts=retries + 1,
        timeout_s=optional_seconds(timeout, what=f"{job_name} timeout"),
        backoff_s=seconds(retry_backoff, what=f"{job_name} retry_backoff"),
        run_as=run_as,
        priority=priority,
        concurrency=concurrency,
        concurrency_key=concurrency_key,
        takes_payload=_takes_payload(fn),
        misfire=misfire,
        max_catch_up=max_catch_up,
        misfire_grace_s=seconds(misfire_grace, what=f"{job_name} misfire_grace"),
        overlap=overlap,
        escalation=escalation,
        retention_s=None
        if retention is None
        else retention_seconds(retention, what=f"{job_name} retention"),
    )


def _escalation(job: str, escalate_to: Any, shadow: float) -> EscalationPolicy | None:
    if escalate_to is None:
        if shadow:
            raise ConfigError(f"{job}: shadow= needs escalate_to=agent (the agent that shadows)")
        return None
    agent = escalate_to if isinstance(escalate_to, str) else getattr(escalate_to, "name", None)
    if not isinstance(agent, str) or not agent:
        raise ConfigError(f"{job}: escalate_to must be an Agent or the name of a registered one")
    return EscalationPolicy(agent, shadow)


MISFIRE_POLICIES = ("skip", "run_once", "catch_up")
OVERLAP_POLICIES = ("allow", "skip", "queue_one", "cancel_previous")


def _one_of(job: str, option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{job}: {option}={value!r} is not one of {choices}")


def _triggers(name: str, trigger: Trigger | Sequence[Trigger] | None) -> tuple[Trigger, ...]:
    if trigger is None:
        return ()
    items = (trigger,) if isinstance(trigger, Trigger) else tuple(trigger)
    for item in items:
        if not isinstance(item, Trigger):
            raise ConfigError(
                f"{name}: trigger must be a trigger such as on_event('orders.created'), "
                f"got {item!r}"
            )
    return items


def _takes_payload(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional:
        raise ConfigError(f"{fn.__name__} must accept the run context: def {fn.__name__}(ctx): ...")
    return len(positional) >= 2
