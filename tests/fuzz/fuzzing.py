"""Hypothesis settings for the fuzz properties: modest in `make test`, many more examples
in `make fuzz` (HYPOTHESIS_PROFILE=fuzz). Set per test (not loaded globally), so that the
suite's other property tests keep their own settings."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")
EXAMPLES = {"fuzz": 3000}.get(PROFILE, 60)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,  # the examples are drawn afresh each run (and no cache dir is written)
)


def clear_message(exc: BaseException) -> str:
    """The error's message, checked to say something."""
    text = str(exc).strip()
    assert text, f"{type(exc).__name__} without a message"
    return text
