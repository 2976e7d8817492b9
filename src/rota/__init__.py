"""rota: recurring backend automation with deterministic jobs and LLM agents.

The public names are loaded on first use (PEP 562): `import rota` costs only this module,
and `from rota import App` imports what `App` needs and nothing else. The names and the
modules they come from are the table below; type checkers read the imports under
TYPE_CHECKING.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lazy import LazyExports
from .version import __version__ as __version__

if TYPE_CHECKING:
    from .agentloop.agent import Agent
    from .agents.mcp import mcp_http, mcp_stdio
    from .agents.models.ratelimited import RateLimit
    from .agents.tools import ToolContext, tool
    from .agents.types import AgentResult
    from .app import App, Emitted, RunHandle
    from .approvals import ApprovalDecision, ApprovalWebhook
    from .approvals.human import ask_human
    from .clock import FakeClock, SystemClock
    from .context import RunContext
    from .cost.budgets import Budget
    from .cost.price import Price
    from .errors import (
        AgentFailed,
        ConfigError,
        DatabaseError,
        InvalidStateError,
        RotaError,
        RunFailed,
        RunNotFound,
        SchemaVersionError,
        SerializationError,
        StepFailed,
        StepTimeout,
        UnknownJobError,
    )
    from .identity.principals import Principal, PrincipalDisabled, UnknownPrincipal
    from .model import Event, Run, RunState, Step
    from .runtime import StepInfo, current_step
    from .scheduling import at, combined, cron, every, on_event, on_notify, on_webhook
    from .worker import Worker, WorkerOptions

# public name -> the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "Agent": "agentloop.agent",
    "AgentFailed": "errors",
    "AgentResult": "agents.types",
    "App": "app",
    "ApprovalDecision": "approvals",
    "ApprovalWebhook": "approvals",
    "Budget": "cost.budgets",
    "ConfigError": "errors",
    "DatabaseError": "errors",
    "Emitted": "app",
    "Event": "model",
    "FakeClock": "clock",
    "InvalidStateError": "errors",
    "Price": "cost.price",
    "Principal": "identity.principals",
    "PrincipalDisabled": "identity.principals",
    "RateLimit": "agents.models.ratelimited",
    "RotaError": "errors",
    "Run": "model",
    "RunContext": "context",
    "RunFailed": "errors",
    "RunHandle": "app",
    "RunNotFound": "errors",
    "RunState": "model",
    "SchemaVersionError": "errors",
    "SerializationError": "errors",
    "Step": "model",
    "StepFailed": "errors",
    "StepInfo": "runtime",
    "StepTimeout": "errors",
    "SystemClock": "clock",
    "ToolContext": "agents.tools",
    "UnknownJobError": "errors",
    "UnknownPrincipal": "identity.principals",
    "Worker": "worker",
    "WorkerOptions": "worker",
    "ask_human": "approvals.human",
    "at": "scheduling",
    "combined": "scheduling",
    "cron": "scheduling",
    "current_step": "runtime",
    "every": "scheduling",
    "mcp_http": "agents.mcp",
    "mcp_stdio": "agents.mcp",
    "on_event": "scheduling",
    "on_notify": "scheduling",
    "on_webhook": "scheduling",
    "tool": "agents.tools",
}


_lazy = LazyExports(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> Any:
    return _lazy.load(name)


def __dir__() -> list[str]:
    return _lazy.names()


__all__ = [
    "Agent",
    "AgentFailed",
    "AgentResult",
    "App",
    "ApprovalDecision",
    "ApprovalWebhook",
    "Budget",
    "ConfigError",
    "DatabaseError",
    "Emitted",
    "Event",
    "FakeClock",
    "InvalidStateError",
    "Price",
    "Principal",
    "PrincipalDisabled",
    "RateLimit",
    "RotaError",
    "Run",
    "RunContext",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunState",
    "SchemaVersionError",
    "SerializationError",
    "Step",
    "StepFailed",
    "StepInfo",
    "StepTimeout",
    "SystemClock",
    "ToolContext",
    "UnknownJobError",
    "UnknownPrincipal",
    "Worker",
    "WorkerOptions",
    "ask_human",
    "at",
    "combined",
    "cron",
    "current_step",
    "every",
    "mcp_http",
    "mcp_stdio",
    "on_event",
    "on_notify",
    "on_webhook",
    "tool",
]
