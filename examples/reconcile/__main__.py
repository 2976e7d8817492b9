"""`python -m examples.reconcile [--workdir DIR] agent|job CSV`: import a CSV of customers.

`agent` runs the csv-reconciler agent on the CSV and prints its report; `job` runs the fixed
import job, for contrast. Both run as rota runs in DIR's rota.db, on DIR's customers.db. The
exit status is 0 when the run succeeded, 1 when it failed (the fixed job on a renamed
column; the agent when the success check refused its answer), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.reconcile", description=__doc__)
    parser.add_argument("--workdir", default=".", help="where the databases and reports go")
    parser.add_argument("way", choices=["agent", "job"], help="the agent, or the fixed job")
    parser.add_argument("csv", help="the CSV file of customer records")
    args = parser.parse_args(argv)
    csv = Path(args.csv)
    if not csv.is_file():
        parser.error(f"CSV file {args.csv!r} does not exist (give the path of a .csv file)")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["RECONCILE_WORKDIR"] = str(workdir)
    from .app import app  # the app reads RECONCILE_WORKDIR when imported

    name = "csv-reconciler" if args.way == "agent" else "import_fixed"
    run = app.run_now(name, {"csv": str(csv.resolve())})
    app.drain()
    run = app.get_run(run.id)
    app.close()
    if run.state != "SUCCEEDED":
        error = run.error.get("message") if isinstance(run.error, dict) else run.error
        print(f"{name} {run.state.lower()}: {error}", file=sys.stderr)
        return 1
    print(f"{name} succeeded: {run.result}")
    report = run.result.get("report") if isinstance(run.result, dict) else None
    if report and Path(report).is_file():
        print(Path(report).read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
