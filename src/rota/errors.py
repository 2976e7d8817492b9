"""Every error rota raises on purpose derives from RotaError.

Lookup errors carry the id they could not find; errors caused by a user mistake say what to
do instead. Control-flow signals (a lost lease, a cancellation request) are not errors and
live apart, derived from BaseException so that user code's `except Exception` cannot swallow
them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RotaError(Exception):
    """Root of every error rota raises on purpose. `retryable = False` marks an error that
    a retry of the run would only meet again (the worker fails the run at once)."""

    retryable = True


class ConfigError(RotaError, ValueError):
    """A definition or setting is wrong; the message says how to fix it."""


def check_options(where: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """ConfigError naming each unknown keyword option, the closest known one, and all of
    them: `@app.job(retry=3)` says did you mean `retries`."""
    known = sorted(allowed)
    unknown = [name for name in given if name not in known]
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"unknown option {name!r}{hint}")
    raise ConfigError(f"{where}: {'; '.join(problems)}; the options are {', '.join(known)}")


class UnknownJobError(RotaError, LookupError):
    """No job, workflow or agent has this name in the app; the message lists the known ones."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...] = ()) -> None:
        self.name = name
        hint = f"; known: {', '.join(sorted(known))}" if known else "; none are registered"
        super().__init__(f"unknown job or workflow {name!r}{hint}")


class RunNotFound(RotaError, LookupError):
    """No run has this id in the store (a typo, another database, or a run already pruned)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class EventNotFound(RotaError, LookupError):
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"no event with id {event_id!r}")


class UnknownWebhook(RotaError, LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        hint = f"; known: {', '.join(sorted(known))}" if known else "; none are defined"
        super().__init__(f"no webhook named {name!r}{hint}")


class InvalidStateError(RotaError):
    """An operation does not apply to a run in its current state."""


class SerializationError(RotaError, TypeError):
    """A payload or result cannot be stored as JSON."""

    retryable = False


class DatabaseError(RotaError):
    """The database cannot be reached or used."""


class SchemaVersionError(DatabaseError):
    """The database schema is older or newer than this version of rota expects."""


class StoreUnavailable(DatabaseError):
    """rota's database failed in a way that passes: a restart or failover dropped the
    connection, the server refuses connections for now, a SQLite file stays locked or hits
    an I/O error. The same call may work later. Raised from the driver's error (the cause)."""

    PREFIX = "the database is unavailable: "

    @classmethod
    def from_driver(cls, error: BaseException) -> StoreUnavailable:
        lines = str(error).strip().splitlines()
        detail = lines[0].strip() if lines else "no detail"
        return cls(f"{cls.PREFIX}{type(error).__name__}: {detail}")


class RunFailed(RotaError):
    """Raised by RunHandle.result() when the run ended in FAILED or CANCELLED."""

    def __init__(self, run_id: str, state: str, error: dict | None) -> None:
        self.run_id = run_id
        self.state = state
        self.error = error or {}
        detail = self.error.get("message") or "no error recorded"
        super().__init__(f"run {run_id} ended {state}: {self.error.get('type', '')} {detail}")


class StepFailed(RotaError):
    """A workflow step failed after its retries; the original error is the cause."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        self.step = step
        self.error_type = error_type
        self.message = message
        super().__init__(f"step {step!r} failed: {error_type}: {message}")


class StepTimeout(RotaError, TimeoutError):
    """A step or run took longer than its timeout."""


class RunInterrupted(BaseException):
    """Control flow: this worker must stop executing the run (lease lost, cancel, shutdown).

    Derived from BaseException so that `except Exception` in user code does not swallow it.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StoreLost(RunInterrupted):
    """Control flow: a database call that a run made for itself (a checkpoint, a wait, its
    metering) failed with StoreUnavailable. The worker abandons the attempt without counting
    it as a failure, and the run resumes from its checkpoints once the database is back.

    A RunInterrupted, so that `except Exception` in user code cannot take a database blip
    for a failure of its own."""

    def __init__(self, cause: StoreUnavailable) -> None:
        super().__init__("store_unavailable")
        self.cause = cause


class ProviderError(RotaError):
    """A model provider call failed. `retryable` failures (429, 529/overloaded, 5xx,
    connection errors) carry the provider's `retry_after` hint when it sent one."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(f"{provider}: {message}")


class MissingApiKey(ConfigError):
    """A real provider was asked for without its API key in the environment."""

    def __init__(self, provider: str, variable: str) -> None:
        self.provider = provider
        self.variable = variable
        super().__init__(
            f"{provider} needs an API key: set {variable}, or use the offline model "
            f"(model='scripted:NAME', see rota.testing) to run without one"
        )


class UnknownModel(ConfigError):
    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        super().__init__(
            f"unknown model {spec!r}: {reason}; write provider:model, e.g. "
            "'anthropic:claude-sonnet-4-5', 'openai:gpt-4.1', "
            "'openai-compatible:llama3' (with base_url=) or 'scripted:demo'"
        )


class AgentFailed(RotaError):
    """An agent ended without an answer that passed its checks; `reason` says why (one of
    max_steps, success_check_failed, repeated_tool_call, timeout, budget_exceeded,
    provider_error)."""

    def __init__(self, agent: str, reason: str, detail: str | None = None) -> None:
        self.agent = agent
        self.reason = reason
        self.detail = detail
        super().__init__(f"agent {agent!r} stopped: {reason}" + (f": {detail}" if detail else ""))


class UnknownPrice(ConfigError, LookupError):
    """No price is known for a model at a time; rota never prices unknown usage as zero."""

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(
            f"no price for model {model!r}: {reason}; pass price=Price(input=..., output=...) "
            f"(USD per million tokens), or add an override: [[prices]] model = {model!r} "
            "input = ... output = ... (0 and 0 for a free local model)"
        )


class ConfigFileError(ConfigError):
    """A settings file (plans, price overrides) is unreadable or has wrong fields; the
    message names the file and every field at fault."""

    def __init__(self, path: str, problems: list[str] | tuple[str, ...]) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__(f"{path}: " + "; ".join(self.problems))


class ApprovalNotFound(RotaError, LookupError):
    def __init__(self, approval_id: str) -> None:
        self.approval_id = approval_id
        super().__init__(
            f"no approval request with id {approval_id!r}; `rota approvals list` shows the "
            "pending ones"
        )


class ApprovalRefused(RotaError, PermissionError):
    """A decision that cannot be made: the request is no longer pending (`state` says what
    it is: approved, rejected, timed_out, expired) or the decider is not one of its
    approvers (`state` "forbidden"). Nothing was decided."""

    def __init__(self, approval_id: str, state: str, message: str) -> None:
        self.approval_id = approval_id
        self.state = state
        super().__init__(message)


class ApprovalTimedOut(RotaError):
    """`ctx.approval(..., on_timeout="fail")` got no decision before its deadline."""

    retryable = False  # the timeout is checkpointed: every retry would fail the same way


class BudgetExceeded(RotaError):
    """A model call was refused because it could exceed a budget (the run ends with reason
    budget_exceeded)."""


class BudgetRefused(BudgetExceeded):
    """A model call refused before it was made, by the run's own Budget: no step was
    written and no call counted (a refusal by a shared budget's hold, inside the call's
    step, is a plain BudgetExceeded)."""
