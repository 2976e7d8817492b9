"""`rota shadow report NAME`: how often the agent agrees with the job it shadows."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..errors import RotaError
from ..shadow import ShadowRecord
from .audit import parse_since
from .common import AppLoadError, compact, err, load_app, out, print_json, print_table, read_store
from .common import settings as cli_settings

shadow_app = typer.Typer(help="Shadow mode: agreement between a job and its agent.")


@shadow_app.command("report")
def report(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The job that escalates (escalate_to=..., shadow=...).")
    ],
    since: Annotated[
        str | None, typer.Option("--since", help="Only shadow runs since: 7d, 12h or ISO time.")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="Disagreements to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Agreement rate, per field, the cost of the shadow runs, and the disagreeing items."""
    start = parse_since(since) if since else None
    with read_store(ctx) as store:
        records = store.shadow_records(name, start)
        if not records:
            known = sorted(set(store.shadowed_names()) | _shadowing_jobs(ctx))
            if name not in known:
                raise UnknownShadowJob(name, known)
        cost_pusd = sum(c.cost_pusd for r in records for c in store.model_calls(r.run_id))
    summary = {**summarise(records), "cost_usd": cost_pusd / 1e12}
    if as_json:
        print_json({**summary, "disagreements": [_row(r) for r in _disagreeing(records)[:limit]]})
        return
    if not records:
        err.print(f"no shadow runs of {name} yet (is it defined with escalate_to=..., shadow=...?)")
        return
    rate = summary["agreement_rate"]
    out.print(
        f"{name}: {summary['compared']} items compared, agreement "
        + (f"{rate:.1%}" if rate is not None else "-")
        + f", {summary['failed']} shadow runs without a decision; shadow cost "
        + f"{summary['tokens']:,} tokens, ${summary['cost_usd']:.4f}"
    )
    fields = Table(box=None, header_style="bold", title="per field")
    for column in ("field", "agree", "disagree", "rate"):
        fields.add_column(column)
    for field, counts in summary["fields"].items():
        fields.add_row(
            field, str(counts["agree"]), str(counts["disagree"]), f"{counts['rate']:.1%}"
        )
    print_table(fields)
    disagreeing = _disagreeing(records)[:limit]
    if disagreeing:
        table = Table(box=None, header_style="bold", title="disagreements")
        for column in ("job run", "shadow run", "fields", "job", "agent"):
            table.add_column(column)
        for r in disagreeing:
            wrong = ", ".join(f for f, ok in r.fields.items() if not ok)
            table.add_row(
                r.parent_id,
                r.run_id,
                wrong,
                Text(compact(r.job_result, 60)),
                Text(compact(r.agent_output, 60)),
            )
        print_table(table)


class UnknownShadowJob(RotaError, LookupError):
    """No job of that name shadows an agent (exit 3, not found)."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = (
            f"jobs with shadow runs or shadow=...: {', '.join(known)}"
            if known
            else ("no job has shadow runs yet (define one with escalate_to=..., shadow=...)")
        )
        super().__init__(f"no shadowed job named {name!r}; {listed}")


def _shadowing_jobs(ctx: typer.Context) -> set[str]:
    """The app's jobs defined with shadow > 0, when the app loads (else none: the store's
    names still count)."""
    try:
        app = load_app(cli_settings(ctx).app_spec or "app:app")
    except AppLoadError:
        return set()
    return {
        d.name
        for d in app.definitions.values()
        if d.escalation is not None and d.escalation.shadow > 0
    }


def summarise(records: list[ShadowRecord]) -> dict[str, Any]:
    compared = [r for r in records if r.error is None]
    agree, disagree = Counter[str](), Counter[str]()
    for r in compared:
        for field, ok in r.fields.items():
            (agree if ok else disagree)[field] += 1
    fields = {
        f: {"agree": agree[f], "disagree": disagree[f], "rate": agree[f] / (agree[f] + disagree[f])}
        for f in sorted(set(agree) | set(disagree))
    }
    agreed = sum(1 for r in compared if r.agreed)
    return {
        "shadow_runs": len(records),
        "compared": len(compared),
        "agreed": agreed,
        "agreement_rate": agreed / len(compared) if compared else None,
        "failed": len(records) - len(compared),
        "tokens": sum(r.tokens for r in records),
        "fields": fields,
    }


def _disagreeing(records: list[ShadowRecord]) -> list[ShadowRecord]:
    return [r for r in records if r.agreed is False]


def _row(r: ShadowRecord) -> dict[str, Any]:
    return {
        "job_run": r.parent_id,
        "shadow_run": r.run_id,
        "fields": dict(r.fields),
        "job": r.job_result,
        "agent": r.agent_output,
    }
