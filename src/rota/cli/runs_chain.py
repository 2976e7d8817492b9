"""The escalation chain of a run for `rota runs show`: job -> agent -> human.

Up: the runs that made this one (parent_id), to the root. Down: every run it made
(escalations, shadow runs), breadth first. Each run shows what it waits for, so a pending
approval names the humans the chain ends with.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ..model import Run
from ..storage import run_views
from ..storage.base import RunReader
from .common import state_text
from .runs_waits import describe_wait


def chain_json(store: RunReader, links: list[tuple[int, Run]]) -> list[dict[str, Any]]:
    return run_views.chain_json(store, links, describe_wait)


def chain_text(links: list[dict[str, Any]], this: str) -> Text:
    text = Text()
    for link in links:
        marker = "> " if link["id"] == this else "  "
        text.append(f"{marker}{'  ' * link['depth']}{link['name']} ({link['kind']}")
        text.append(f", {link['trigger']}) " if link["depth"] else ") ")
        text.append_text(state_text(link["state"]))
        text.append(f"  {link['id']}")
        if link["waiting_for"]:
            text.append(f"  -> {link['waiting_for']}", style="yellow")
        text.append("\n")
    return text
