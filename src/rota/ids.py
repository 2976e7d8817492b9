"""Time-ordered unique ids: sortable by creation, unique across processes and machines."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = [0, 0]  # (milliseconds, 80-bit tail) of the newest id made in this process


def new_id() -> str:
    """A UUIDv7-shaped string: 48 bits of milliseconds, then 80 bits that are random for a
    new millisecond and counted up within one, so ids made here sort in creation order."""
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            ms, tail = _last[0], _last[1] + 1
        else:
            tail = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
        _last[0], _last[1] = ms, tail
    raw = f"{ms:012x}{tail:020x}"
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
