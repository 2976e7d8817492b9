"""What routine files may name, registered by the app's Python code: tools and MCP servers,
output models, success checks and billing plans (`app.routines.tool(...)`, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..agents.tools import Tool, ToolSource, as_tool
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..cost.plans import Plan  # pydantic dataclasses: only `rota routines show` compares plans


class Catalog:
    """The names a routine file may use, each registered once."""

    def __init__(self) -> None:
        self.tools: dict[str, Tool | ToolSource] = {}
        self.outputs: dict[str, Any] = {}
        self.checks: dict[str, Callable[[Any], Any]] = {}
        self.plans: dict[str, Plan] = {}

    def tool(self, *items: Tool | Callable[..., Any], name: str | None = None) -> None:
        """Make tools usable by name in `tools:`; an MCP server (a ToolSource) needs `name`."""
        for item in items:
            if isinstance(item, ToolSource):
                if name is None:
                    raise ConfigError("name an MCP server: app.routines.tool(server, name='x')")
                self._put(self.tools, "tool", name, item)
            else:
                t = as_tool(item)
                self._put(self.tools, "tool", name or t.name, t)

    def output(self, name: str, model: Any) -> None:
        """A Python model (pydantic) a routine's `output:` may name."""
        self._put(self.outputs, "output model", name, model)

    def check(self, name: str, check: Callable[[Any], Any]) -> None:
        """A success check (a function of the output) a routine's `success:` may name."""
        if not callable(check):
            raise ConfigError(f"success check {name!r} must be a function of the output")
        self._put(self.checks, "success check", name, check)

    def plan(self, *plans: Plan) -> None:
        """Billing plans a routine's `billing:` may name; `rota routines show` compares a
        routine's cost under each of them."""
        for p in plans:
            self._put(self.plans, "plan", p.name, p)

    @staticmethod
    def _put(table: dict[str, Any], what: str, name: str, value: Any) -> None:
        if name in table and table[name] is not value:
            raise ConfigError(f"{what} {name!r} is registered twice for routines")
        table[name] = value
