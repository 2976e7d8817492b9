"""Fixtures shared by the integration tests.

A test file that needs another start time (or another kind of `hook`) defines its own fixture
of that name, which takes precedence over the one here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alert_receiver import SECRET, Receiver, receiver
from fake_time import START

from rota import FakeClock
from rota.testing import say, scripted


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at START that moves only when the test advances it."""
    return FakeClock(START)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A local alert receiver; ALERTS_SECRET holds the secret its deliveries are signed with."""
    monkeypatch.setenv("ALERTS_SECRET", SECRET)
    with receiver() as r:
        yield r


@pytest.fixture
def echo() -> Iterator[Any]:
    """The scripted model `scripted:echo`, which says "done"."""
    with scripted("echo", script=[say("done")]) as model:
        yield model
