"""Exponential backoff with jitter, shared by run retries and step retries."""

from __future__ import annotations

import random


def backoff_delay(
    failures: int, base_s: float, cap_s: float = 3600.0, rng: random.Random | None = None
) -> float:
    """Delay before the next attempt after `failures` failures (1 for the first).

    "Equal jitter": half of the exponential delay is fixed, half random, so retries of many
    runs that failed together spread out but none retries immediately.
    """
    if base_s <= 0:
        return 0.0
    exp = min(cap_s, base_s * (2 ** max(0, failures - 1)))
    return exp / 2 + (rng or random).uniform(0, exp / 2)
