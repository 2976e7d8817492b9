"""Shared driver for the side-by-side benchmarks: run each tool in a fresh subprocess of the
bench virtualenv, interleave repeats so that machine noise hits every tool alike, and report
medians and ratios as a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bench.peers.run_peer import invoke

PG = os.environ.get("ROTA_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def dsn_for(tool: str, db: str) -> str:
    if db == "sqlite":
        return f"sqlite:////tmp/rota_bench_{tool}.sqlite"
    return f"{PG}/rota_bench_{tool}"


def run_matrix(
    bench: str, cases: Sequence[tuple[str, str]], repeat: int, **params: int
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """cases: (tool, db) pairs. Repeats are interleaved: round 1 of every case, then round 2."""
    results: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
    for round_no in range(1, repeat + 1):
        for tool, db in cases:
            print(f"[{bench}] round {round_no}/{repeat}: {tool} on {db}", file=sys.stderr)
            result = invoke(tool, bench, dsn_for(tool, db), **params)
            if result is not None:
                results[(tool, db)].append(result)
                print("   " + json.dumps(result), file=sys.stderr)
    return {case: runs for case, runs in results.items() if runs}


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    pg = subprocess.run(
        ["psql", PG + "/postgres", "-Atc", "show server_version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"PostgreSQL {pg or '?'}, SQLite {__import__('sqlite3').sqlite_version}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def best_peer(
    results: dict[tuple[str, str], list[dict[str, Any]]],
    db: str,
    key: str,
    better: Callable[[float, float], bool],
) -> tuple[str, float] | None:
    found: tuple[str, float] | None = None
    for (tool, case_db), runs in results.items():
        if tool == "rota" or case_db != db:
            continue
        value = median(runs, key)
        if found is None or better(value, found[1]):
            found = (tool, value)
    return found
