"""The seed's other example: an agent that imports a CSV of customer records.

It opens the CSV (a tool reports the header and the row count), maps the columns it finds
to email, name and country, validates every row, reconciles duplicates by querying the
customer table, saves or flags each row, and writes a summary report. Its answer is
accepted only when the success check, in code, finds every row of the file processed and
validated in the table (`customers.check_import`); otherwise the run fails, after at most
`max_steps` model calls.

For contrast, `import_fixed` is the deterministic job a team would write first: it expects
the columns `email`, `name` and `country` and breaks when the export renames one.

Offline by default: the model is `scripted:csv-reconciler` (`policy.py`), a deterministic
stand-in that reads the header from the tool result and adapts. RECONCILE_MODEL=provider:name
asks a real model instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rota import Agent, App, tool
from rota.testing import register_scripted

from .customers import CustomerDb, check_import, read_csv, valid
from .policy import scripted_reconciler

WORKDIR = Path(os.environ.get("RECONCILE_WORKDIR", "."))
MAX_ROWS = 500  # rows per read_rows call: what fits in one model turn

app = App(os.environ.get("ROTA_DATABASE_URL", f"sqlite:///{WORKDIR / 'rota.db'}"))
db = CustomerDb(WORKDIR / "customers.db")


class ImportReport(BaseModel):
    """The agent's answer: which import, what became of its rows, where the report is."""

    import_id: int
    csv: str
    inserted: int
    merged: int
    flagged: int
    report: str


# -- the agent's tools ------------------------------------------------------------------


@tool
def open_csv(path: str) -> dict[str, Any]:
    """Open a CSV file for import: its columns and number of data rows, and an import id."""
    columns, rows = read_csv(path)
    with db.connect() as conn:
        cursor = conn.execute(
            "INSERT INTO imports (path, columns, rows) VALUES (?, ?, ?)",
            (str(Path(path).resolve()), json.dumps(columns), len(rows)),
        )
    return {"import_id": cursor.lastrowid, "columns": columns, "rows": len(rows)}


@tool(read_only=True)
def read_rows(import_id: int, start: int = 1, count: int = MAX_ROWS) -> list[dict[str, Any]]:
    """Rows `start` .. `start + count - 1` (1-based) of an import, as read from the file."""
    if not 1 <= count <= MAX_ROWS:
        raise ValueError(f"count must be 1 .. {MAX_ROWS}, got {count}")
    with db.connect() as conn:
        found = conn.execute("SELECT path FROM imports WHERE id = ?", (import_id,)).fetchone()
    if found is None:
        raise ValueError(f"no import {import_id}; open the CSV with open_csv")
    _, rows = read_csv(found["path"])
    chosen = rows[start - 1 : start - 1 + count]
    return [{"row": n, **r} for n, r in enumerate(chosen, start=start)]


@tool(read_only=True)
def find_customer(email: str) -> dict[str, Any]:
    """The customer with this email (case-insensitive), if there is one."""
    with db.connect() as conn:
        row = conn.execute("SELECT * FROM customers WHERE email = ?", (email.strip(),)).fetchone()
    return {"found": row is not None, "customer": dict(row) if row else None}


@tool
def save_customer(
    import_id: int, row: int, email: str, name: str, country: str, merge_into: int | None = None
) -> dict[str, Any]:
    """Save row `row` of an import as a customer: a new one, or merged into the existing
    customer `merge_into` (use find_customer first: an email already on file must be merged)."""
    problem = valid(email, country)
    if problem is not None:
        raise ValueError(f"row {row}: {problem}; flag it with flag_anomaly instead")
    with db.connect() as conn:
        existing = conn.execute(
            "SELECT id FROM customers WHERE email = ?", (email.strip(),)
        ).fetchone()
        if existing is not None and existing["id"] != merge_into:
            raise ValueError(
                f"row {row}: {email} is already customer {existing['id']}: pass "
                f"merge_into={existing['id']}"
            )
        if merge_into is None:
            cursor = conn.execute(
                "INSERT INTO customers (email, name, country) VALUES (?, ?, ?)",
                (email.strip().lower(), name.strip(), country.strip()),
            )
            customer, status = cursor.lastrowid, "inserted"
        else:
            conn.execute(
                "UPDATE customers SET name = ?, country = ? WHERE id = ?",
                (name.strip(), country.strip(), merge_into),
            )
            customer, status = merge_into, "merged"
        _outcome(conn, import_id, row, status, customer, "")
    return {"row": row, "status": status, "customer_id": customer}


@tool
def flag_anomaly(import_id: int, row: int, reason: str) -> dict[str, Any]:
    """Record row `row` of an import as an anomaly a person should look at, and why."""
    with db.connect() as conn:
        _outcome(conn, import_id, row, "flagged", None, reason)
    return {"row": row, "status": "flagged"}


@tool
def write_report(import_id: int, text: str) -> str:
    """Write the import's summary report (Markdown); returns its path."""
    path = WORKDIR / "reports" / f"import-{import_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def _outcome(
    conn: Any, import_id: int, row: int, status: str, customer: int | None, note: str
) -> None:
    conn.execute(
        """INSERT INTO outcomes (import_id, row, status, customer_id, note)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (import_id, row) DO UPDATE SET
        status = excluded.status, customer_id = excluded.customer_id, note = excluded.note""",
        (import_id, row, status, customer, note),
    )


# -- the agent, and its success check -----------------------------------------------------


def every_row_processed(report: ImportReport) -> bool:
    """Checked in code against the tables, not taken from the model: see check_import."""
    check_import(db, report.import_id, report.model_dump())
    if not Path(report.report).is_file():
        raise ValueError(f"the report {report.report!r} was not written: call write_report")
    return True


register_scripted("csv-reconciler", scripted_reconciler())

reconciler = Agent(
    name="csv-reconciler",
    model=os.environ.get("RECONCILE_MODEL", "scripted:csv-reconciler"),
    instructions=(
        "Import the CSV of customer records named in the task. Open it with open_csv and map "
        "its columns to email, name and country (exports rename them). Read the rows. A row "
        "with an invalid email or country is an anomaly: flag it. Look every other email up "
        "with find_customer: a customer on file, or an earlier row of the same file, is a "
        "duplicate to merge (merge_into); else save a new customer. Every row must end saved "
        "or flagged. Then write a short report with write_report and answer with the counts."
    ),
    tools=[open_csv, read_rows, find_customer, save_customer, flag_anomaly, write_report],
    output=ImportReport,
    success=every_row_processed,
    max_steps=10,
)
app.agent(reconciler, retries=0)


# -- the fixed job, for contrast -----------------------------------------------------------


@app.job(retries=0)
def import_fixed(ctx: Any, task: dict[str, Any]) -> dict[str, int]:
    """What a hand-written import does: fixed columns. Breaks when the export renames one."""
    _, rows = read_csv(task["csv"])
    saved = 0
    with db.connect() as conn:
        for row in rows:
            email, name, country = row["email"], row["name"], row["country"]
            if valid(email, country) is None:
                conn.execute(
                    "INSERT INTO customers (email, name, country) VALUES (?, ?, ?) "
                    "ON CONFLICT (email) DO NOTHING",
                    (email.strip().lower(), name.strip(), country.strip()),
                )
                saved += 1
    return {"rows": len(rows), "saved": saved}
