"""Alerts: run failures, budget refusals, approvals waiting too long, and schedules gone
silent, delivered durably to a Slack-compatible webhook or a signed generic webhook.

See docs/alerts.md. `App(alerts=Alerts(sinks=[...]))` turns them on; `@app.job(alerts=...)`
changes them for one job.
"""

from .config import AlertPolicy, Alerts, SlackSink, WebhookSink, slack, webhook
from .watchdog import Watchdog, WatchedSchedule, grace, logged

__all__ = [
    "AlertPolicy",
    "Alerts",
    "SlackSink",
    "Watchdog",
    "WatchedSchedule",
    "WebhookSink",
    "grace",
    "logged",
    "slack",
    "webhook",
]
