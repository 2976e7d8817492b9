"""What runs cost: model prices, billing plans, and the comparison of plans over a recorded
history (issue 7). Pure functions over frozen records; see docs/cost.md."""

from .compare import Breakdown, CappedRun, Comparison, PlanResult, compare, evaluate
from .forecast import Forecast, forecast, forecast_series
from .plans import ApiPlan, Plan, SessionPlan, SubscriptionPlan, load_plans, parse_plan
from .price import Price
from .prices import PriceOverride, PriceTable, parse_overrides
from .records import PricedRun, ReportRow, RunCost, price_history, report

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
