"""`rota cost report|compare`: what recorded runs cost, and what they would have cost under
other billing plans. Like `rota runs`, these need no user app, only the database.

Both read the runs that *started* in [--since, --until) from the store (see
rota.cost.history) and price tokens at the list price in force when each run started, with
the overrides of --prices (default: $ROTA_PRICES). Figures are exact in --json and --csv
(decimal strings) and rounded for the table.
"""

from __future__ import annotations

import csv
import os
import sys
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from ..clock import system_clock
from ..cost.compare import MONTH_FORECAST_DAYS, PlanResult, compare
from ..cost.files import read_settings
from ..cost.history import History, load_history
from ..cost.plans import Plan, load_plans
from ..cost.prices import PriceOverride, parse_overrides
from ..cost.pricing import PRICES_ENV
from ..cost.records import GroupBy, ReportRow, report
from ..errors import ConfigError
from .audit import parse_since
from .common import out, print_json, print_table, read_store

cost_app = typer.Typer(
    help="What runs cost, and which billing plan is cheapest.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Since = Annotated[
    str, typer.Option("--since", help="Runs started since: a duration ago (30d) or ISO time.")
]
Until = Annotated[
    str | None,
    typer.Option("--until", help="Runs started before this ISO time. [default: now]"),
]
Prices = Annotated[
    Path | None,
    typer.Option(
        "--prices",
        help=f"A TOML/JSON file of [[prices]] overrides. [default: ${PRICES_ENV}]",
    ),
]
GROUPS = GroupBy.__args__  # type: ignore[attr-defined]


@cost_app.command("report")
def report_command(
    ctx: typer.Context,
    since: Since = "30d",
    until: Until = None,
    by: Annotated[str, typer.Option("--by", help=f"Group by: {', '.join(GROUPS)}.")] = "workflow",
    compute_usd_per_hour: Annotated[
        float,
        typer.Option("--compute-usd-per-hour", min=0, help="What an hour of worker time costs."),
    ] = 0.0,
    prices: Prices = None,
    as_json: JsonFlag = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """Tokens, sessions, compute and USD of the runs in a period, per group."""
    if by not in GROUPS:
        raise ConfigError(f"--by {by!r}: group by one of {', '.join(GROUPS)}")
    if as_json and as_csv:
        raise ConfigError("pass --json or --csv, not both")
    history = _history(ctx, since, until, prices)
    rate = Decimal(str(compute_usd_per_hour))
    rows = report(history.records, history.table, by=cast(GroupBy, by), compute_usd_per_hour=rate)
    data = [_row_json(r) for r in rows]
    if as_json:
        print_json({"since": _iso(history.since), "until": _iso(history.until), "rows": data})
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=[by, *list(data[0])[1:]] if data else [by])
        writer.writeheader()
        for item in data:
            writer.writerow({by: item["key"], **{k: v for k, v in item.items() if k != "key"}})
    else:
        _print_report(rows, by, history)


@cost_app.command("compare")
def compare_command(
    ctx: typer.Context,
    plan: Annotated[
        list[Path], typer.Option("--plan", help="A plan file (TOML or JSON); repeat for more.")
    ],
    since: Since = "30d",
    until: Until = None,
    prices: Prices = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute the recorded history under each plan: totals, runs dropped by caps, the
    cheapest plan and a forecast of the next 30 days."""
    plans: list[Plan] = [p for path in plan for p in load_plans(path)]
    history = _history(ctx, since, until, prices)
    result = compare(plans, history.records, history.table, window=history.window)
    if as_json:
        print_json(
            {
                "since": _iso(history.since),
                "until": _iso(history.until),
                "runs": len(history.records),
                "ai_runs": sum(1 for r in history.records if r.uses_ai),
                "cheapest": result.cheapest.name,
                "cheapest_complete": result.cheapest_complete.name
                if result.cheapest_complete
                else None,
                "plans": [_plan_json(r) for r in result.results],
            }
        )
        return
    ai = sum(1 for r in history.records if r.uses_ai)
    out.print(
        f"{len(history.records)} runs ({ai} with model calls or agent sessions) started "
        f"{_iso(history.since)} .. {_iso(history.until)}"
    )
    table = Table(box=None, header_style="bold")
    columns = ("plan", "kind", "total", "fees", "tokens", "sessions", "compute", "overage")
    for column in (*columns, "dropped", "next 30d"):
        table.add_column(column, justify="left" if column in ("plan", "kind") else "right")
    for r in result.results:
        b = r.breakdown
        money = (r.total, b.fees, b.tokens, b.sessions, b.compute, b.overage)
        table.add_row(
            r.name,
            r.plan.kind,
            *(usd(m) for m in money),
            str(len(r.dropped)),
            "n/a" if r.forecast is None else usd(r.forecast.total),
        )
    print_table(table)
    for r in result.results:
        for run in r.dropped:
            out.print(
                f"dropped by {r.name}: run {run.run_id} ({run.name}) at "
                f"{_iso(run.started_at)}: {run.limit} used up"
            )
    out.print(f"cheapest: {result.cheapest.name} ({usd(result.cheapest.total)})")
    complete = result.cheapest_complete
    if complete is not None and complete is not result.cheapest:
        out.print(f"cheapest that ran every run: {complete.name} ({usd(complete.total)})")
    elif complete is None:
        out.print("every plan dropped runs: compare their totals with care")
    _print_forecasts(result.results)


# -- helpers ------------------------------------------------------------------------------


def _history(ctx: typer.Context, since: str, until: str | None, prices: Path | None) -> History:
    start = datetime.fromtimestamp(parse_since(since), UTC)
    end = datetime.fromtimestamp(parse_since(until) if until else system_clock.now(), UTC)
    if not start < end:
        raise ConfigError(f"--since ({_iso(start)}) must be before --until ({_iso(end)})")
    overrides = _overrides(prices)
    with read_store(ctx) as store:
        return load_history(store, start, end, overrides)


def _overrides(path: Path | None) -> list[PriceOverride]:
    text = str(path) if path is not None else os.environ.get(PRICES_ENV, "").strip()
    if not text:
        return []
    return parse_overrides(read_settings(text), text)


def usd(value: Decimal) -> str:
    """Dollars for tables: four decimals (a cheap run costs fractions of a cent)."""
    return f"${value.quantize(Decimal('0.0001'), ROUND_HALF_EVEN):,}"


def exact(value: Decimal) -> str:
    """Full precision without a trailing zero or exponent: 240, 0.024, 20.01."""
    return f"{value.normalize():f}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row_json(r: ReportRow) -> dict[str, Any]:
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


def _plan_json(r: PlanResult) -> dict[str, Any]:
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
            {"run_id": d.run_id, "name": d.name, "started_at": _iso(d.started_at), "limit": d.limit}
            for d in r.dropped
        ],
        "overage_runs": [
            {"run_id": d.run_id, "name": d.name, "started_at": _iso(d.started_at), "limit": d.limit}
            for d in r.overage_runs
        ],
        "forecast": _forecast_json(r),
    }


def _forecast_json(r: PlanResult) -> dict[str, Any]:
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


def _print_forecasts(results: tuple[PlanResult, ...]) -> None:
    """What the "next 30d" column was fitted on, and each plan's 95% interval (every plan
    is billed over the same runs: all have a forecast, or none)."""
    made = [(r.name, r.forecast) for r in results if r.forecast is not None]
    if not made:
        out.print(results[0].forecast_note or "no forecast")
        return
    basis = made[0][1]
    out.print(
        f"next {basis.days}d: a straight line fitted to the daily cost of {basis.basis_days} "
        f"days, {basis.first} .. {basis.last} (the first to the last day with runs); "
        "95% prediction interval:"
    )
    for name, f in made:
        out.print(f"  {name}: {usd(f.total)} ({usd(f.low)} .. {usd(f.high)})")


def _print_report(rows: list[ReportRow], by: str, history: History) -> None:
    if not rows:
        out.print(f"no runs started {_iso(history.since)} .. {_iso(history.until)}")
        return
    table = Table(box=None, header_style="bold")
    for column in (by, "runs", "requests", "input", "output", "cache write", "cache read"):
        table.add_column(column, justify="left" if column == by else "right")
    for column in ("tool calls", "session", "compute", "tokens USD", "compute USD", "total USD"):
        table.add_column(column, justify="right")
    for r in rows:
        u = r.usage
        table.add_row(
            r.key,
            str(r.runs),
            f"{u.requests:,}",
            f"{u.input_tokens:,}",
            f"{u.output_tokens:,}",
            f"{u.cache_write_tokens:,}",
            f"{u.cache_read_tokens:,}",
            str(r.tool_calls),
            f"{r.session_seconds:.0f}s",
            f"{r.compute_seconds:.0f}s",
            usd(r.tokens_usd),
            usd(r.compute_usd),
            usd(r.total_usd),
        )
    print_table(table)
