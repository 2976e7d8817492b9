"""rota: recurring backend automation with deterministic jobs and LLM agents."""

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
from .version import __version__ as __version__
from .worker import Worker, WorkerOptions

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
