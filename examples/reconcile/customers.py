"""The example's customer database: a small SQLite file the example creates and owns.

Three tables: `customers` (one row per email, case-insensitively), `imports` (each CSV the
agent opened, with its row count counted here, in code) and `outcomes` (what became of each
row of an import: inserted, merged into an existing customer, or flagged as an anomaly).
The success check (`check_import`) reads these tables, never the model's word.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", re.IGNORECASE)
COUNTRY = re.compile(r"[A-Z]{2}")
STATUSES = ("inserted", "merged", "flagged")
SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL, country TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, columns TEXT NOT NULL, rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outcomes (
    import_id INTEGER NOT NULL REFERENCES imports(id), row INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('inserted', 'merged', 'flagged')),
    customer_id INTEGER REFERENCES customers(id), note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (import_id, row));
"""


class CustomerDb:
    """The tables above, in the SQLite file at `path` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self.connect() as conn:
            conn.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            with conn:  # one transaction: committed on success, rolled back on error
                yield conn
        finally:
            conn.close()

    def customers(self) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM customers ORDER BY id")]

    def outcomes(self, import_id: int) -> list[dict[str, Any]]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM outcomes WHERE import_id = ? ORDER BY row", (import_id,)
            )
            return [dict(r) for r in rows]


def read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the data rows of a CSV file."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def valid(email: str, country: str) -> str | None:
    """Why a record is invalid, or None when it is valid."""
    if not EMAIL.fullmatch(email.strip()):
        return f"email {email!r} is not an email address"
    if not COUNTRY.fullmatch(country.strip()):
        return f"country {country!r} is not a two-letter ISO code"
    return None


def check_import(db: CustomerDb, import_id: int, counts: dict[str, int]) -> None:
    """The objective success check: every row of the CSV has an outcome, every saved row is
    a valid customer in the table, and `counts` match the table. Raises ValueError saying
    what is wrong."""
    with db.connect() as conn:
        found = conn.execute("SELECT path FROM imports WHERE id = ?", (import_id,)).fetchone()
    if found is None:
        raise ValueError(f"import {import_id} does not exist: open the CSV with open_csv first")
    _, rows = read_csv(found["path"])  # counted from the file now, not from what was said
    done = {o["row"]: o for o in db.outcomes(import_id)}
    missing = [n for n in range(1, len(rows) + 1) if n not in done]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(rows)} rows have no outcome (rows {_ranges(missing)}): "
            "every row must be saved as a customer or flagged as an anomaly"
        )
    customers = {c["id"]: c for c in db.customers()}
    for outcome in done.values():
        if outcome["status"] == "flagged":
            continue
        customer = customers.get(outcome["customer_id"])
        if customer is None or valid(customer["email"], customer["country"]):
            raise ValueError(f"row {outcome['row']} was saved without a valid customer")
    actual = {s: sum(1 for o in done.values() if o["status"] == s) for s in STATUSES}
    if {s: counts.get(s, 0) for s in STATUSES} != actual:
        raise ValueError(f"the report's counts {counts} do not match the table's {actual}")


def _ranges(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:10]) + (" ..." if len(numbers) > 10 else "")
