"""The demo's simulated approver: a finance user who decides each pending request.

Its rule is simple and visible: approve ledger entries up to `REJECT_OVER_CENTS`, reject
the larger ones with a comment (which the agent reads as the tool's result). With
`rota demo --interactive` it does not run, and the requests wait for you in the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..app import App

APPROVER = "demo-approver"
REJECT_OVER_CENTS = 30_000  # the simulated approver refuses entries over $300


def verdict(context: Any) -> tuple[bool, str]:
    """(approve, comment) for one request, from the tool arguments it shows."""
    arguments = context.get("arguments", {}) if isinstance(context, dict) else {}
    amount = abs(int(arguments.get("delta_cents", 0)))
    if amount > REJECT_OVER_CENTS:
        return False, f"simulated approver: ${amount / 100:,.2f} is over the $300 I may approve"
    return True, f"simulated approver: ${amount / 100:,.2f} checked"


def decide_pending(app: App) -> int:
    """Decide every pending request now; how many were decided."""
    decided = 0
    for request in app.store.approvals(limit=500):
        approve, comment = verdict(request.context)
        app.store.decide_approval(
            request.id, APPROVER, approve, comment, app.clock.now(), via="demo"
        )
        decided += 1
    return decided


async def approve_until(app: App, stop: asyncio.Event, every_s: float = 0.3) -> None:
    """Decide pending requests until `stop` is set."""
    while not stop.is_set():
        await asyncio.to_thread(decide_pending, app)
        with contextlib.suppress(TimeoutError):  # no stop yet: look again
            await asyncio.wait_for(stop.wait(), every_s)
