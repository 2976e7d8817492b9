"""`rota cost report|compare`: what recorded runs cost, and what they would have cost under
other billing plans. Like `rota runs`, these need no user app, only the database.

Both read the runs that *started* in [--since, --until) from the store (see
rota.cost.history) and price tokens at the list price in force when each run started, with
the overrides of --prices (default: $ROTA_PRICES). Figures are exact in --json and --csv
(decimal strings) and rounded for the table.
"""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from ..clock import system_clock
from ..cost.compare import PlanResult, compare
from ..cost.history import History, load_history
from ..cost.plans import Plan, load_plans
from ..cost.pricing import PRICES_ENV, configured_overrides
from ..cost.records import GroupBy, ReportRow, report
from ..cost.summary import compare_json, iso_utc, report_json, row_json
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
    data = [row_json(r) for r in rows]
    if as_json:
        print_json(report_json(history, rows))
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
        print_json(compare_json(history, result))
        return
    ai = sum(1 for r in history.records if r.uses_ai)
    out.print(
        f"{len(history.records)} runs ({ai} with model calls or agent sessions) started "
        f"{iso_utc(history.since)} .. {iso_utc(history.until)}"
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
                f"{iso_utc(run.started_at)}: {run.limit} used up"
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
        raise ConfigError(f"--since ({iso_utc(start)}) must be before --until ({iso_utc(end)})")
    overrides = configured_overrides(prices)
    with read_store(ctx) as store:
        return load_history(store, start, end, overrides)


def usd(value: Decimal) -> str:
    """Dollars for tables: four decimals (a cheap run costs fractions of a cent)."""
    return f"${value.quantize(Decimal('0.0001'), ROUND_HALF_EVEN):,}"


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
        out.print(f"no runs started {iso_utc(history.since)} .. {iso_utc(history.until)}")
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
