"""How `rota runs list|show` present durable waits: what a WAITING run waits for, and the
outcome of the wait steps in a run's timeline."""

from __future__ import annotations

from rich.text import Text

from ..model import Step, Wait
from .common import compact, when


def describe_wait(wait: Wait) -> str:
    """One line: `sleep until T`, `event a | b {"id":7} until T`."""
    if wait.kind == "sleep":
        return f"sleep until {when(wait.deadline)} UTC"
    text = wait.kind
    if wait.kind == "event":
        text += " " + " | ".join(wait.detail.get("names", []))
        if wait.detail.get("match"):
            text += " " + compact(wait.detail["match"], limit=80)
    elif wait.kind == "approval":  # see `rota approvals list`
        groups = ", ".join(wait.detail.get("approvers", [])) or "admins"
        text += f" {wait.detail.get('approval_id')} ({groups})"
    if wait.deadline is not None:
        text += f" until {when(wait.deadline)} UTC"
    return text


def step_note(step: Step) -> Text | None:
    """The timeline's note for a wait step that timed out (None for any other step)."""
    result = step.result
    if isinstance(result, dict) and result.get("timed_out"):
        note = "timed out (returned None)" if "event" in result else "timed out"
        return Text(note, style="yellow")
    return None
