"""The routine file's front matter as a strict pydantic model: every field, its type and what
it allows. `rota routines schema` prints this model's JSON Schema, so editors can complete and
check routine files; the loader (rota.routines.loader) maps its errors to file:line:column."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic

from ..durations import seconds
from ..errors import ConfigError

_STRICT = pydantic.ConfigDict(extra="forbid", strict=True)

Name = Annotated[str, pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")]
Text = Annotated[str, pydantic.Field(min_length=1, max_length=2000)]
Positive = Annotated[int, pydantic.Field(ge=1)]


def _duration(value: str) -> str:
    try:
        seconds(value, what="duration")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


Duration = Annotated[
    str,
    pydantic.Field(description="A duration such as '30s', '5m', '4h', '1d' or '1h30m'"),
    pydantic.AfterValidator(_duration),
]


class _Strict(pydantic.BaseModel):
    model_config = _STRICT


class CronTrigger(_Strict):
    """Fire on a cron schedule (5 fields, or 6 with seconds first) in `timezone`, each fire
    time shifted by a fixed offset of up to `jitter` (the same offset every time)."""

    cron: Text
    timezone: Text = "UTC"
    jitter: Duration | None = None


class EveryTrigger(_Strict):
    """Fire every interval of elapsed time."""

    every: Duration


class EventTrigger(_Strict):
    """Fire once per event of this name (app.emit) whose payload has every `match` field."""

    event: Text
    match: dict[str, Any] | None = None


class WebhookTrigger(_Strict):
    """Fire on a verified delivery to POST /hooks/{webhook}; the signing secret is read from
    the environment variable named `secret_env`."""

    webhook: Name
    secret_env: Annotated[str, pydantic.Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None


class ApiTrigger(_Strict):
    """Fire over HTTP: POST /api/routines/{name}/fire with a token from
    `rota tokens create --fire NAME`."""

    api: Literal[True]


TRIGGER_KINDS = ("cron", "every", "event", "webhook", "api")


def _trigger_kind(value: Any) -> str | None:
    """Which kind a trigger is: the first of TRIGGER_KINDS that is one of its keys."""
    if isinstance(value, dict):
        kind = next((k for k in TRIGGER_KINDS if k in value), None)
    else:
        kind = next((k for k in TRIGGER_KINDS if getattr(value, k, None) is not None), None)
    return None if kind is None else f"{kind} trigger"  # a tag no field is named


TRIGGER_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "cron trigger": CronTrigger,
    "every trigger": EveryTrigger,
    "event trigger": EventTrigger,
    "webhook trigger": WebhookTrigger,
    "api trigger": ApiTrigger,
}

TriggerSpec = Annotated[
    Annotated[CronTrigger, pydantic.Tag("cron trigger")]
    | Annotated[EveryTrigger, pydantic.Tag("every trigger")]
    | Annotated[EventTrigger, pydantic.Tag("event trigger")]
    | Annotated[WebhookTrigger, pydantic.Tag("webhook trigger")]
    | Annotated[ApiTrigger, pydantic.Tag("api trigger")],
    pydantic.Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="a trigger needs one of the keys cron, every, event, webhook, api",
    ),
]


class Money(_Strict):
    usd: Annotated[float, pydantic.Field(gt=0, strict=False)] | None = None
    tokens: Positive | None = None


class BudgetSpec(_Strict):
    """Spend limits: each run's own, and all runs of the routine per UTC day."""

    per_run: Money | None = None
    per_day: Money | None = None


class CapsSpec(_Strict):
    """Runs allowed per UTC clock hour and UTC day, for this routine and for its principal
    (all routines and jobs that run as it). A run over a cap is dropped or deferred to the
    start of the next window (`over`); either way it is recorded (`rota runs list
    --dropped`) and counted in rota_runs_capped_total."""

    per_hour: Positive | None = None
    per_day: Positive | None = None
    principal_per_hour: Positive | None = None
    principal_per_day: Positive | None = None
    over: Literal["drop", "defer"] = "drop"
    alert: bool = pydantic.Field(
        False, description="Alert (notify's sinks, else the app's) on each run held back"
    )


class Over(_Strict):
    """A tool argument bound: the call needs approval when the argument is above `gt`
    (numbers) or equals one of `in` (any value)."""

    gt: float | None = pydantic.Field(None, strict=False)
    in_: list[Any] | None = pydantic.Field(None, alias="in")


class ApprovalRule(_Strict):
    """Calls of these tools wait for a human (an admin, or a principal with the role
    approver:<group> of one of `approvers`); nobody deciding within `timeout` rejects."""

    tools: Annotated[list[Name], pydantic.Field(min_length=1)]
    when: dict[str, Over] | None = None
    approvers: list[Name] = []
    timeout: Duration = "1d"
    on_timeout: Literal["reject"] = "reject"


class NotifySpec(_Strict):
    """This routine's alerts (docs/alerts.md), sent to alert sinks the app declared, by name
    (none: the app's own sinks): a run started (`start`), succeeded (`success`) or failed
    (`failure`), a budget refusal, an approval still pending after `approval_after`, and
    silence: a missed schedule (true), and with a duration also no successful run for that
    long, whatever triggers the routine."""

    sinks: list[Name] = []
    start: bool = False
    success: bool = False
    failure: bool = True
    budget: bool = True
    approval_after: Duration | None = "1h"
    silence: bool | Duration = True


class ShadowSpec(_Strict):
    """Try the routine without letting it act. Beside a Python job (`job`, `sample`): the
    job keeps doing the work, and a sampled share of the items it handled is also given to
    this routine in shadow mode, its answer compared with the job's (`rota shadow report`).
    Or `staged: true`: the routine's own runs go ahead, but each call of a tool with side
    effects (any tool not marked read_only) is recorded, not executed."""

    job: Name | None = pydantic.Field(None, description="The Python job to run beside")
    sample: Annotated[float, pydantic.Field(gt=0, le=1, strict=False)] | None = pydantic.Field(
        None, description="The share of the job's items the routine also gets, e.g. 0.05"
    )
    staged: bool = False

    @pydantic.model_validator(mode="after")
    def _one_way(self) -> ShadowSpec:
        beside = self.job is not None or self.sample is not None
        if beside == self.staged or (beside and (self.job is None or self.sample is None)):
            raise ValueError(
                "give either job: <a Python job> with sample: <a share, e.g. 0.05>, or staged: true"
            )
        return self


class RoutineSpec(_Strict):
    """A routine's front matter; the markdown body below it is the prompt."""

    name: Name
    description: str = ""
    owner: Name | None = pydantic.Field(
        None, description="A user principal: a personal routine, with exactly its scopes"
    )
    run_as: Name | None = pydantic.Field(None, description="A service account: a managed agent")
    mode: Literal["agent", "hybrid"] = "agent"
    job: Name | None = pydantic.Field(
        None, description="mode: hybrid: the Python job that takes the hot path"
    )
    triggers: list[TriggerSpec] = []
    cooldown: Duration | None = None
    stop_after: datetime | None = pydantic.Field(
        None, description="No run is enqueued after this instant (ISO 8601 with offset)"
    )
    model: Text
    tools: list[Name] = []
    secrets: list[Annotated[str, pydantic.Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")]] = []
    max_steps: Positive = 10
    timeout: Duration | None = None
    output: dict[str, Any] | Name | None = pydantic.Field(
        None, description="A JSON Schema the output must meet, or a registered Python model"
    )
    success: dict[str, Any] | Name | None = pydantic.Field(
        None, description="A registered check by name, or a JSON Schema the output must meet"
    )
    budget: BudgetSpec | None = None
    caps: CapsSpec | None = None
    approval: list[ApprovalRule] = []
    notify: NotifySpec | None = None
    shadow: ShadowSpec | None = None
    billing: Name | None = pydantic.Field(
        None, description="The plan this routine is billed under (rota cost compare)"
    )

    @pydantic.model_validator(mode="after")
    def _who(self) -> RoutineSpec:
        if (self.owner is None) == (self.run_as is None):
            raise ValueError(
                "give exactly one of owner (a user: a personal routine) or run_as (a service "
                "account: a managed agent)"
            )
        if (self.mode == "hybrid") != (self.job is not None):
            raise ValueError("mode: hybrid needs job: <a Python job>, and job needs mode: hybrid")
        shadowed = self.shadow.job if self.shadow is not None else None
        if self.mode == "hybrid" and shadowed is not None and shadowed != self.job:
            raise ValueError("a hybrid routine shadows its own job: shadow.job must be job")
        if self.stop_after is not None and self.stop_after.tzinfo is None:
            raise ValueError("stop_after needs a UTC offset, e.g. 2027-01-31T00:00:00Z")
        return self

    @property
    def principal(self) -> str:
        """Who its runs act as: the owner (personal) or the service account (managed)."""
        return self.owner or self.run_as or ""

    @property
    def personal(self) -> bool:
        return self.owner is not None


FIELDS = tuple(RoutineSpec.model_fields)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a routine file's front matter (rota routines schema)."""
    schema = RoutineSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rota routine front matter"
    return schema
