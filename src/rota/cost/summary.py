"""Cost reports and plan comparisons as JSON: what `rota cost report|compare --json` print
and what the HTTP API answers (`GET /api/cost/report`, `POST /api/cost/compare`).

Money is a decimal string at full precision (never a float), times ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .compare import MONTH_FORECAST_DAYS, CappedRun, Comparison, PlanResult
from .history import History
from .records import ReportRow


def report_json(history: History, rows: list[ReportRow]) -> dict[str, Any]:
    return {
        "since": iso_utc(history.since),
        "until": iso_utc(history.until),
        "rows": [row_json(r) for r in rows],
    }


def compare_json(history: History, result: Comparison) -> dict[str, Any]:
    complete = result.cheapest_complete
    return {
        "since": iso_utc(history.since),
        "until": iso_utc(history.until),
        "runs": sum(r.runs for r in history.records),
        "ai_runs": sum(r.runs for r in history.records if r.uses_ai),
        "cheapest": result.cheapest.name,
        "cheapest_complete": complete.name if complete else None,
        "plans": [plan_json(r) for r in result.results],
    }


def exact(value: Decimal) -> str:
    """Full precision without a trailing zero or exponent: 240, 0.024, 20.01."""
    return f"{value.normalize():f}"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def row_json(r: ReportRow) -> dict[str, Any]:
    u = r.usage
    return {
        "key": r.key,
        "runs": r.runs,
        "requests": u.requests,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "tool_calls": r.tool_calls,
        "session_seconds": exact(r.session_seconds),
        "compute_seconds": exact(r.compute_seconds),
        "tokens_usd": exact(r.tokens_usd),
        "compute_usd": exact(r.compute_usd),
        "total_usd": exact(r.total_usd),
    }


def plan_json(r: PlanResult) -> dict[str, Any]:
    b = r.breakdown
    return {
        "name": r.name,
        "kind": r.plan.kind,
        "total_usd": exact(r.total),
        "breakdown": {
            "fees": exact(b.fees),
            "tokens": exact(b.tokens),
            "sessions": exact(b.sessions),
            "compute": exact(b.compute),
            "overage": exact(b.overage),
        },
        "monthly": {month: exact(v) for month, v in r.monthly.items()},
        "dropped": [
            {
                "run_id": d.run_id,
                "name": d.name,
                "started_at": iso_utc(d.started_at),
                "limit": d.limit,
            }
            for d in r.dropped
        ],
        "overage_runs": [
            {
                "run_id": d.run_id,
                "name": d.name,
                "started_at": iso_utc(d.started_at),
                "limit": d.limit,
            }
            for d in r.overage_runs
        ],
        "forecast": forecast_json(r),
    }


def _capped(d: CappedRun) -> dict[str, Any]:
    return {
        "run_id": d.run_id,
        "name": d.name,
        "started_at": iso_utc(d.started_at),
        "limit": d.limit,
    }


def forecast_json(r: PlanResult) -> dict[str, Any]:
    f = r.forecast
    if f is None:
        return {"days": MONTH_FORECAST_DAYS, "total_usd": None, "refused": r.forecast_note}
    return {
        "days": f.days,
        "total_usd": exact(f.total),
        "low_usd": exact(f.low),
        "high_usd": exact(f.high),
        "slope_usd_per_day": exact(f.slope),
        "basis": {"days": f.basis_days, "from": f.first.isoformat(), "to": f.last.isoformat()},
    }
