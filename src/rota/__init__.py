"""rota: recurring backend automation with deterministic jobs and LLM agents."""

from .agents.agent import Agent, AgentResult, Budget
from .agents.human import ask_human
from .agents.mcp import mcp_http, mcp_stdio
from .agents.models.ratelimited import RateLimit
from .agents.tools import ToolContext, tool
from .app import App, Emitted, RunHandle
from .approvals import ApprovalDecision, ApprovalWebhook
from .clock import FakeClock, SystemClock
from .cost.prices import Price
from .durable import RunContext, StepInfo, current_step
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
from .scheduling import at, combined, cron, every, on_event, on_notify, on_webhook
from .worker import Worker, WorkerOptions

__version__ = "0.1.0"

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
