"""The W3C `traceparent` value rota stores with a run, checked without OpenTelemetry."""

from __future__ import annotations

import re
from collections.abc import Mapping

# version 00: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, ids not all zeros.
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def valid(traceparent: str | None) -> str | None:
    """The value when it is a well-formed version-00 traceparent; else None (a sender's
    garbage is never stored)."""
    if not isinstance(traceparent, str):
        return None
    value = traceparent.strip().lower()
    return value if _TRACEPARENT.match(value) else None


def incoming(headers: Mapping[str, str]) -> str | None:
    """The valid traceparent among HTTP headers (any case), or None."""
    for key, value in headers.items():
        if key.lower() == "traceparent":
            return valid(value)
    return None
