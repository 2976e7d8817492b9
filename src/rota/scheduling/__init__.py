"""Triggers and the scheduler that turns them into runs."""

from .triggers import OnEvent, Trigger, on_event

__all__ = ["OnEvent", "Trigger", "on_event"]
