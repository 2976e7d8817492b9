"""The dashboard: server-rendered pages at `/`, served by the API's own process.

Each page is a module here with `routes(ctx)` and, when it belongs in the navigation bar,
`NAV = NavEntry(title, path, key, order)`; `PAGE_MODULES` lists them, and the navigation
bar and the `g <key>` shortcuts are built from it, so a page not yet written is simply not
offered. docs/dashboard.md ("How to add a page") walks through one.

Pages are Jinja2 templates (`templates/`), with htmx and the dashboard's own script served
from `static/` (package data: no build step, no Node). Sessions, CSRF and roles:
`guard.py`, `sessions.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..context import ApiContext
from . import approvals, audit, costs, live, login, overview, routines, run_page, runs, schedules
from .render import NavEntry, use_nav

PAGE_MODULES: tuple[ModuleType, ...] = (
    *(login, live, overview, audit, runs, run_page),
    *(approvals, schedules, routines, costs),
)
STATIC = Path(__file__).parent / "static"


def nav_entries(modules: Sequence[ModuleType] = PAGE_MODULES) -> list[NavEntry]:
    """The navigation bar: every page module's NAV, in order."""
    return sorted(
        (m.NAV for m in modules if isinstance(getattr(m, "NAV", None), NavEntry)),
        key=lambda e: e.order,
    )


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    """Every page's routes, and the static files under /static."""
    use_nav(nav_entries())
    found: list[BaseRoute] = [r for m in PAGE_MODULES for r in m.routes(ctx)]
    found.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    return found
