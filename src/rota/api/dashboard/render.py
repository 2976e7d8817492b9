"""`render(request, template, **context)`: a dashboard page as HTML, with its security headers.

Templates live in `templates/` (Jinja2, autoescaped); `macros.html` holds the shared pieces
(tables, state badges, money and durations, empty states, pagination, charts). Every
dashboard response passes `secured`, which adds the headers below: scripts and styles from
this server only (no inline script: the page's JS is in `static/`), no framing, no referrer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ...version import __version__
from ..context import context as api_context
from . import charts

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # pages show live data and who is signed in
}


@dataclass(frozen=True)
class NavEntry:
    """A page in the navigation bar: its title, path, and the key after `g` that opens it."""

    title: str
    path: str
    key: str
    order: int


def money(usd: float | Decimal | None) -> str:
    """$1.23, $0.0042 for small amounts, a dash for none."""
    if usd is None:
        return "-"
    value = float(usd)
    if value != 0 and abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def duration(seconds: float | None) -> str:
    """850ms, 4.2s, 3m 05s, 2h 10m, 3d 4h; a dash for none."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def when(at: float | None) -> str:
    """A UTC time as 2026-01-31 12:00:05Z."""
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def pretty_json(value: Any) -> str:
    """A stored JSON value, indented, as plain text (autoescaping makes it safe HTML; the
    `tojson` filter would show quotes as \\u0027)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    money=money, duration=duration, when=when, percent=percent, pretty_json=pretty_json
)
ENV.globals.update(
    version=__version__,
    bar_chart=lambda points, **kw: Markup(charts.bar_chart(points, **kw)),
    line_chart=lambda points, **kw: Markup(charts.line_chart(points, **kw)),
    nav=(),
)


def use_nav(entries: Sequence[NavEntry]) -> None:
    """The pages in the navigation bar (dashboard/__init__.py builds them from its modules)."""
    ENV.globals["nav"] = tuple(sorted(entries, key=lambda e: e.order))


def render(
    request: Request, template: str | Template, *, status: int = 200, **context: Any
) -> Response:
    """`template` (a file of templates/, or a Template made with `ENV.from_string`) rendered
    with `context`, plus who is signed in (`viewer`) and the page's path, as a secured HTML
    response."""
    viewer = getattr(request.state, "viewer", None)
    html = ENV.get_template(template).render(
        request=request,
        viewer=viewer,
        path=request.url.path,
        live_from=live_from(request),
        **context,
    )
    return secured(HTMLResponse(html, status_code=status))


def live_from(request: Request) -> str:
    """Where the page's event stream starts: an event id of the moment it was rendered, so a
    change made between the render and the stream's connection still refreshes the page."""
    now = api_context(request).app.clock.now()
    return f"{round(now * 1e6):019d}.run.page.0"


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    """A small page saying what went wrong and what to do; never a traceback."""
    return render(request, "error.html", status=status, title=title, message=message)


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
