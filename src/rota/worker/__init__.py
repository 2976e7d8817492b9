"""Workers claim runs with leases and execute them."""

from .audit import AuditBatch
from .middleware import AdmitRunAs, AuditRunStarted, Execute, RunCall, RunMiddleware
from .wakeups import Wakeups
from .worker import Worker, WorkerOptions, WorkerParts, WorkerStats

__all__ = [
    "AdmitRunAs",
    "AuditBatch",
    "AuditRunStarted",
    "Execute",
    "RunCall",
    "RunMiddleware",
    "Wakeups",
    "Worker",
    "WorkerOptions",
    "WorkerParts",
    "WorkerStats",
]
