"""Calling user code: sync functions in a worker thread, async ones on the loop, both under
an optional timeout. Threads copy the caller's context, so current_step() works in both."""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable
from typing import Any

from .durations import seconds
from .errors import StepTimeout


async def call_user(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    timeout: float | None,
    what: str,
) -> Any:
    try:
        return await asyncio.wait_for(_invoke(fn, args, kwargs), timeout)
    except TimeoutError:
        # A sync function keeps running in its thread: Python cannot stop a thread.
        raise StepTimeout(f"{what} exceeded its timeout of {seconds(timeout or 0):g}s") from None


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    value = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


def error_info(exc: BaseException) -> dict[str, Any]:
    """What is stored about an error: type, message and the innermost frames."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(frames)[-4000:],
    }
