"""The demo's summary as tables: what ran, and what each way of doing it costs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table

from .scenario import AGENT, JOB

SCENARIOS = (
    ("job_only", "job only"),
    ("agent_only", "agent only*"),
    ("hybrid", "hybrid"),
)


def render(summary: dict[str, Any]) -> Group:
    """Two tables: what ran, and job versus agent versus hybrid under each plan."""
    return Group(_ran(summary), _compared(summary), *_notes(summary))


def _ran(summary: dict[str, Any]) -> Table:
    table = Table(title="what ran (read back from the store)", show_header=False)
    for name in (JOB, AGENT):
        states = summary["runs"].get(name, {})
        shown = ", ".join(f"{n:,} {s.lower()}" for s, n in sorted(states.items())) or "none"
        table.add_row(f"runs of {name}", shown)
    table.add_row("escalated to the agent", f"{summary['escalations']:,}")
    approvals = summary["approvals"]
    decided = ", ".join(f"{n:,} {s}" for s, n in approvals.items() if n) or "none"
    table.add_row("approvals (entries over $150)", decided)
    shadow = summary["shadow"]
    rate = "n/a" if shadow["rate"] is None else f"{shadow['rate']:.1%}"
    table.add_row(
        "shadow sample (5% of the job's items)",
        f"{shadow['agreed']:,} of {shadow['compared']:,} agree with the job: {rate}",
    )
    model = summary["model"] + (" (simulated)" if summary["simulated"] else "")
    table.add_row("agent model", model)
    table.add_row("database", summary["database"])
    return table


def _compared(summary: dict[str, Any]) -> Table:
    plans = [p["name"] for p in summary["plans"]]
    table = Table(
        title=f"{summary['events']:,} events three ways (USD under each plan)",
        box=box.SIMPLE_HEAD,
        caption="* extrapolated to every event from the agent runs measured here",
    )
    for column in ("", "handled", "wall time", "tokens", *plans):
        table.add_column(column, justify="left" if not column else "right")
    for key, label in SCENARIOS:
        figures = summary["scenarios"][key]
        if "usd" not in figures:
            table.add_row(label, figures.get("note", "n/a"))
            continue
        dollars = [_usd(figures, p) for p in plans]
        table.add_row(
            label,
            f"{figures['handled']:,}",
            f"{figures['wall_seconds']:,.1f} s",
            _count(figures["tokens"]),
            *dollars,
        )
    return table


def _usd(figures: dict[str, Any], plan: str) -> str:
    """Dollars to the cent, or to a hundredth of a cent under a dollar (the job path's
    compute is that small)."""
    value = Decimal(figures["usd"][plan])
    text = f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
    return f"{text}†" if figures["dropped"][plan] else text


def _count(n: int) -> str:
    """1,234 or 2.6M: token totals of the extrapolated kind do not fit a narrow column."""
    return f"{n / 1e6:.1f}M" if n >= 10_000_000 else f"{n:,}"


def _notes(summary: dict[str, Any]) -> list[str]:
    notes = [f"plan {p['name']}: {p['about']}" for p in summary["plans"]]
    for key, label in SCENARIOS:
        for plan, dropped in summary["scenarios"][key].get("dropped", {}).items():
            if dropped:
                notes.append(f"† {label.rstrip('*')}: {plan} drops {dropped:,} runs over its caps")
    agent = summary["scenarios"]["agent_only"]
    if "per_item" in agent:
        notes.append(
            f"agent only is extrapolated from {agent['measured_items']:,} measured agent runs: "
            f"{agent['per_item']['tokens']:,.0f} tokens and {agent['per_item']['seconds']:.2f} s "
            f"per item, times {summary['events']:,} items"
        )
    job = summary["scenarios"]["job_only"]
    notes.append(f"job only leaves {job['unhandled']:,} items it cannot handle unresolved")
    if summary["simulated"]:
        notes.append(
            "the model is simulated (scripted): its tokens are priced at claude-sonnet-4-5 "
            "list prices; pass --model provider:name with an API key for real figures"
        )
    return [f"[dim]{n}[/]" for n in notes]
