"""Triggers: when a job runs (the scheduler that turns them into runs is rota.scheduler)."""

from .combined import Combined, combined
from .cron import Cron, cron
from .interval import At, Every, at, every
from .notify import OnNotify, on_notify
from .triggers import OnEvent, Trigger, on_event
from .webhooks import OnWebhook, WebhookRejected, on_webhook

__all__ = [
    "At",
    "Combined",
    "Cron",
    "Every",
    "OnEvent",
    "OnNotify",
    "OnWebhook",
    "Trigger",
    "WebhookRejected",
    "at",
    "combined",
    "cron",
    "every",
    "on_event",
    "on_notify",
    "on_webhook",
]
