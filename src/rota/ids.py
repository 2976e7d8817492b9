"""Time-ordered unique ids: sortable by creation, unique across processes and machines."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A UUIDv7-shaped string: 48 bits of milliseconds, then 80 random bits."""
    ms = time.time_ns() // 1_000_000
    raw = f"{ms:012x}{os.urandom(10).hex()}"
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
