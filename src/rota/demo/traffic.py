"""Signed webhook deliveries over HTTP, as a payment provider would send them.

Each event is signed with the Standard Webhooks scheme and POSTed to the API the demo
serves, through the same ingest (`POST /hooks/payments`) a real provider would hit. A few
senders share one connection pool: enough to keep the worker busy, modest enough that the
HTTP side does not starve it of the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable

import httpx

from ..errors import RotaError
from ..scheduling.webhooks import sign_standard
from .scenario import HOOK, SECRET_ENV, synthetic_event

SENDERS = 6


class DeliveryRefused(RotaError):
    """The demo's own API refused one of its deliveries: something is misconfigured."""


async def deliver_all(
    base_url: str, batch: str, events: int, delivered: Callable[[], None]
) -> None:
    """POST events 0..events-1 of `batch` to `base_url`; call `delivered()` after each."""
    secret = os.environ[SECRET_ENV]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(events):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def sender() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                await _post(client, secret, synthetic_event(batch, i))
                delivered()

        await asyncio.gather(*(sender() for _ in range(SENDERS)))


async def _post(client: httpx.AsyncClient, secret: str, event: dict[str, object]) -> None:
    body = json.dumps(event).encode()
    headers = sign_standard(secret, str(event["id"]), time.time(), body)
    headers["content-type"] = "application/json"
    response = await client.post(f"/hooks/{HOOK}", content=body, headers=headers)
    if response.status_code not in (200, 202):
        raise DeliveryRefused(
            f"delivery {event['id']} was refused: {response.status_code} {response.text[:200]}"
        )
