"""The escalation chain of a run for `rota runs show`: job -> agent -> human.

Up: the runs that made this one (parent_id), to the root. Down: every run it made
(escalations, shadow runs), breadth first. Each run shows what it waits for, so a pending
approval names the humans the chain ends with.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ..model import Run
from ..storage.base import RunReader
from .common import state_text
from .runs_waits import describe_wait, open_waits

_MAX = 200  # runs shown: a chain is short; a fan-out this large is summarised


def chain(store: RunReader, run: Run) -> list[tuple[int, Run]]:
    """(depth, run) from the root down, this run included; depth 0 is the root."""
    ancestors: list[Run] = []
    current = run
    while current.parent_id is not None and len(ancestors) < _MAX:
        current = store.get_run(current.parent_id)
        ancestors.insert(0, current)
    lineage = [(i, r) for i, r in enumerate([*ancestors, run])]
    level, depth = [run], len(ancestors)
    while level and len(lineage) < _MAX:
        depth += 1
        level = store.child_runs([r.id for r in level])
        lineage += [(depth, child) for child in level]
    return lineage[:_MAX]


def chain_json(store: RunReader, links: list[tuple[int, Run]]) -> list[dict[str, Any]]:
    waits = open_waits(store.waits([r.id for _, r in links]))
    return [
        {
            "depth": depth,
            "id": r.id,
            "name": r.name,
            "kind": r.kind,
            "trigger": r.trigger,
            "state": r.state.value,
            "waiting_for": describe_wait(waits[r.id]) if r.id in waits else None,
        }
        for depth, r in links
    ]


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
