"""What runs cost: model prices, billing plans, and the comparison of plans over a recorded
history (issue 7). Pure functions over frozen records; see docs/cost.md.

The names below are loaded on first use (PEP 562), as in `rota/__init__.py`: a run's budget
(`cost.budgets`) needs prices, not the plan comparison and forecasts, so importing
`rota.cost.budgets` (which every App does) does not load them.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..lazy import LazyExports

if TYPE_CHECKING:
    from .compare import Breakdown, CappedRun, Comparison, PlanResult, compare, evaluate
    from .forecast import Forecast, forecast, forecast_series
    from .overrides import parse_overrides
    from .plans import ApiPlan, Plan, SessionPlan, SubscriptionPlan, load_plans, parse_plan
    from .price import Price
    from .prices import PriceOverride, PriceTable
    from .records import PricedRun, ReportRow, RunCost, price_history, report

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "ApiPlan": "plans",
    "Breakdown": "compare",
    "CappedRun": "compare",
    "Comparison": "compare",
    "Forecast": "forecast",
    "Plan": "plans",
    "PlanResult": "compare",
    "Price": "price",
    "PriceOverride": "prices",
    "PriceTable": "prices",
    "PricedRun": "records",
    "ReportRow": "records",
    "RunCost": "records",
    "SessionPlan": "plans",
    "SubscriptionPlan": "plans",
    "compare": "compare",
    "evaluate": "compare",
    "forecast": "forecast",
    "forecast_series": "forecast",
    "load_plans": "plans",
    "parse_overrides": "overrides",
    "parse_plan": "plans",
    "price_history": "records",
    "report": "records",
}


_lazy = LazyExports(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> Any:
    return _lazy.load(name)


def __dir__() -> list[str]:
    return _lazy.names()


class _Package(ModuleType):
    """`compare` and `forecast` are functions here and also submodules. Importing a submodule
    sets it as an attribute of its package, which would hide the function of the same name;
    the eager imports this package had set the function last. Here the function keeps the
    name: a submodule that shares a public name is not set (it stays in sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and name in _EXPORTS:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ApiPlan",
    "Breakdown",
    "CappedRun",
    "Comparison",
    "Forecast",
    "Plan",
    "PlanResult",
    "Price",
    "PriceOverride",
    "PriceTable",
    "PricedRun",
    "ReportRow",
    "RunCost",
    "SessionPlan",
    "SubscriptionPlan",
    "compare",
    "evaluate",
    "forecast",
    "forecast_series",
    "load_plans",
    "parse_overrides",
    "parse_plan",
    "price_history",
    "report",
]
