"""examples/reconcile: an agent imports CSVs of customers through tools on a database table;
a success check in code fails the run when a row is left unprocessed. A fixed job, for
contrast, breaks when the export renames a column; the agent adapts."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rota.model import RunState

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "reconcile" / "data"
README = ROOT / "examples" / "reconcile" / "README.md"


@pytest.fixture
def example(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """A fresh import of examples.reconcile.app on the test's database and a new workdir."""
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.setenv("RECONCILE_WORKDIR", str(tmp_path))
    monkeypatch.delenv("RECONCILE_MODEL", raising=False)
    monkeypatch.syspath_prepend(str(ROOT))
    for name in [m for m in sys.modules if m.startswith("examples")]:
        del sys.modules[name]
    module = importlib.import_module("examples.reconcile.app")
    yield module
    module.app.close()


def run(example: ModuleType, name: str, csv: str) -> Any:
    started = example.app.run_now(name, {"csv": str(DATA / csv)})
    example.app.drain()
    return example.app.get_run(started.id)


def outcomes(example: ModuleType, import_id: int) -> dict[int, str]:
    return {o["row"]: o["status"] for o in example.db.outcomes(import_id)}


def emails(example: ModuleType) -> dict[str, tuple[str, str]]:
    return {c["email"]: (c["name"], c["country"]) for c in example.db.customers()}


def test_the_agent_imports_a_csv_and_every_row_is_accounted_for(example: ModuleType) -> None:
    done = run(example, "csv-reconciler", "customers.csv")
    assert done.state == RunState.SUCCEEDED, done.error
    report = done.result
    assert (report["inserted"], report["merged"], report["flagged"]) == (3, 1, 1)
    assert outcomes(example, report["import_id"]) == {
        1: "inserted",
        2: "inserted",
        3: "inserted",
        4: "merged",  # GRACE@example.com is row 2's customer
        5: "flagged",  # not-an-email
    }
    assert emails(example) == {
        "ada@example.com": ("Ada Lovelace", "GB"),
        "grace@example.com": ("Grace B. Hopper", "US"),
        "linus@example.com": ("Linus Torvalds", "FI"),
    }
    text = Path(report["report"]).read_text()
    assert "row 5: flagged: email 'not-an-email' is not an email address" in text
    tools = [s.key for s in example.app.store.steps(done.id) if s.key.startswith("tool:")]
    assert "tool:find_customer" in tools  # duplicates were looked up in the table


def test_a_renamed_column_breaks_the_fixed_job_and_the_agent_adapts(
    example: ModuleType,
) -> None:
    assert run(example, "csv-reconciler", "customers.csv").state == RunState.SUCCEEDED
    assert run(example, "import_fixed", "customers.csv").state == RunState.SUCCEEDED
    before = emails(example)

    broken = run(example, "import_fixed", "customers_renamed.csv")
    assert broken.state == RunState.FAILED
    assert broken.error["type"] == "KeyError" and broken.error["message"] == "'email'"
    assert emails(example) == before  # the failed job wrote nothing

    adapted = run(example, "csv-reconciler", "customers_renamed.csv")
    assert adapted.state == RunState.SUCCEEDED, adapted.error
    assert outcomes(example, adapted.result["import_id"]) == {
        1: "inserted",  # margaret, new
        2: "merged",  # ada, on file from the first import
        3: "flagged",  # country XX1
    }
    assert emails(example)["margaret@example.com"] == ("Margaret Hamilton", "US")
    assert emails(example)["ada@example.com"] == ("Ada King", "GB")
    steps = {s.key: s.result for s in example.app.store.steps(adapted.id)}
    opened = next(v for k, v in steps.items() if k.startswith("tool:open_csv"))
    assert "email_address" in str(opened)  # what it adapted to came from the tool's result


def test_a_csv_it_cannot_reconcile_fails_the_run(example: ModuleType) -> None:
    failed = run(example, "csv-reconciler", "customers_unmappable.csv")
    assert failed.state == RunState.FAILED
    message = failed.error["message"]
    assert "success_check_failed" in message
    assert "2 of 2 rows have no outcome (rows 1, 2)" in message
    assert example.db.customers() == []
    model_calls = [s for s in example.app.store.steps(failed.id) if s.key.startswith("model#")]
    assert len(model_calls) == example.reconciler.max_steps  # bounded by max_steps


def test_the_success_check_refuses_counts_that_do_not_match_the_table(
    example: ModuleType,
) -> None:
    done = run(example, "csv-reconciler", "customers.csv")
    wrong = {**done.result, "inserted": 5}
    with pytest.raises(ValueError, match="do not match the table's"):
        example.every_row_processed(example.ImportReport(**wrong))
    with pytest.raises(ValueError, match="import 99 does not exist"):
        example.every_row_processed(example.ImportReport(**{**done.result, "import_id": 99}))


# -- the command line and the README ------------------------------------------------------


def _python_m(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTA_", "RECONCILE_"))}
    return subprocess.run(
        [sys.executable, "-m", "examples.reconcile", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["agent", "nowhere.csv"], "CSV file 'nowhere.csv' does not exist"),
        (["merge", "x.csv"], "argument way: invalid choice: 'merge' (choose from 'agent', 'job')"),
        (["agent"], "the following arguments are required: csv"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = _python_m("--workdir", str(tmp_path / "w"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "w").exists()  # nothing was created


def test_the_readme_commands_run(tmp_path: Path) -> None:
    [block] = re.findall(r"^```sh\n(.*?)^```$", README.read_text(), re.DOTALL | re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTA_", "RECONCILE_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{block}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "csv-reconciler succeeded" in out
    assert "Columns: email <- email_address, name <- full_name, country <- country_code" in out
    assert "the fixed job failed" in out
    assert "the success check failed the run" in out
    assert "2 of 2 rows have no outcome" in done.stderr
    assert "import_fixed" in out and "FAILED" in out  # rota runs list shows the failed job
