"""What the routines integration tests share: their start time, writing a routine file, and
two mail tools (one with a side effect, recorded in SENT, one read-only)."""

from __future__ import annotations

from pathlib import Path

from rota import tool

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a UTC day and hour boundary
SENT: list[str] = []


def write(folder: Path, name: str, text: str) -> Path:
    """Write `text` as the routine file `folder/name.md` (creating the folder); its path."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(text)
    return path


@tool(scopes=["mail:send"])
def send_mail(to: str) -> str:
    """Send a mail.

    Args:
        to: Who gets it.
    """
    SENT.append(to)
    return "sent"


@tool(scopes=["mail:read"], read_only=True)
def read_mail() -> list[str]:
    """Unread mail."""
    return ["hello"]
