"""A busy worker logs the first successes of each second one by one and sums up the rest."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rota.worker.observe import SuccessLines


def test_successes_past_the_limit_go_to_debug_and_are_summed_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rota.run")
    lines = SuccessLines(per_second=3)

    async def burst() -> list[int]:
        levels = [lines.level() for _ in range(10)]
        await asyncio.sleep(1.2)  # the second ends: its summary is told
        return levels

    levels = asyncio.run(burst())
    assert levels == [logging.INFO] * 3 + [logging.DEBUG] * 7
    (summary,) = [r for r in caplog.records if "more runs SUCCEEDED" in r.getMessage()]
    assert summary.levelno == logging.INFO
    assert summary.getMessage().startswith("7 more runs SUCCEEDED in the last second")


def test_a_quiet_worker_logs_every_success_and_no_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rota.run")
    lines = SuccessLines(per_second=3)

    async def few() -> list[int]:
        levels = [lines.level() for _ in range(3)]
        await asyncio.sleep(1.2)
        return levels

    assert asyncio.run(few()) == [logging.INFO] * 3
    assert not [r for r in caplog.records if "more runs SUCCEEDED" in r.getMessage()]


def test_no_summary_is_scheduled_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rota.run")
    lines = SuccessLines(per_second=1)

    async def many() -> list[int]:
        levels = [lines.level() for _ in range(5)]
        await asyncio.sleep(0)
        return levels

    assert asyncio.run(many()) == [logging.INFO] + [logging.DEBUG] * 4
    assert not caplog.records
