"""Workers claim runs with leases and execute them."""

from .worker import Worker, WorkerOptions, WorkerStats

__all__ = ["Worker", "WorkerOptions", "WorkerStats"]
