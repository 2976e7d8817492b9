"""Two routine files beside the Python that gives them their names (docs/routines.md):

- routines/daily-digest.md: a personal routine. Alice's morning digest runs as the user
  alice, with exactly her scopes (read-only tools), billed under her subscription.
- routines/ticket-triage.md: a managed agent. It runs as the service account svc-triage
  on every new ticket (and over HTTP), billed per session hour; assigning a P1 waits for a
  support lead's approval.

Both models are scripted (offline). Run it: `rota --app examples.routines.app:app dev`.
"""

from __future__ import annotations

import os
from decimal import Decimal

from rota import App, tool
from rota.cost.plans import ApiPlan, SessionPlan, SubscriptionPlan
from rota.testing import answer, call, register_scripted

app = App(os.environ.get("ROTA_DATABASE_URL"))  # routines/ beside this file
app.principal("alice", kind="user", scopes=["calendar:read", "mail:read"])
app.principal("svc-triage", kind="service", scopes=["tickets:read", "tickets:write"])
app.principal("lead", kind="user", roles=["approver:support"])

ASSIGNED: list[dict[str, str]] = []  # what assign_ticket did, for the example's test


@tool(scopes=["calendar:read"], read_only=True)
def todays_meetings() -> list[str]:
    """Today's meetings on the user's calendar."""
    return ["09:30 stand-up", "14:00 design review"]


@tool(scopes=["mail:read"], read_only=True)
def unread_mail() -> list[str]:
    """Subjects of unread mail."""
    return ["Invoice 1042 overdue", "Offsite agenda"]


@tool(scopes=["tickets:read"], read_only=True)
def read_ticket(ticket_id: str) -> dict[str, str]:
    """A support ticket's subject and body.

    Args:
        ticket_id: The ticket's id.
    """
    return {"id": ticket_id, "subject": "Checkout down for all EU customers", "body": "500s"}


@tool(scopes=["tickets:write"])
def assign_ticket(ticket_id: str, team: str, priority: str) -> str:
    """Assign a ticket to a team at a priority (p1, p2 or p3).

    Args:
        ticket_id: The ticket's id.
        team: The team that takes it.
        priority: p1 (an outage), p2 or p3.
    """
    ASSIGNED.append({"ticket_id": ticket_id, "team": team, "priority": priority})
    return f"{ticket_id} assigned to {team} at {priority}"


app.routines.tool(todays_meetings, unread_mail, read_ticket, assign_ticket)
app.routines.plan(
    ApiPlan(name="api"),
    SubscriptionPlan(name="subscription", monthly_fee=Decimal(20), max_runs_per_day=5),
    SessionPlan(name="session", session_usd_per_hour=Decimal("0.08")),
)
register_scripted(
    "digest",
    script=[
        call("todays_meetings") + call("unread_mail"),
        answer("Two meetings (stand-up 09:30, design review 14:00); invoice 1042 is overdue."),
    ],
)
register_scripted(
    "triage",
    script=[
        call("read_ticket", ticket_id="T-1"),
        call("assign_ticket", ticket_id="T-1", team="payments", priority="p1"),
        answer({"ticket_id": "T-1", "team": "payments", "priority": "p1"}),
    ],
)
loaded = app.load_routines()
