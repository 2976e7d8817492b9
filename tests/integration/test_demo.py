"""`rota demo`: the seed's scenario end to end in a subprocess, and its summary checked
against what the store holds (runs, escalations, approvals, tokens, dollars per plan)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from rota.cli import app as cli
from rota.cost.compare import evaluate
from rota.cost.history import load_history
from rota.demo.approver import REJECT_OVER_CENTS, verdict
from rota.demo.plans import PLANS
from rota.demo.scenario import (
    AGENT,
    APPROVAL_THRESHOLD_CENTS,
    JOB,
    customer_status,
    synthetic_event,
)
from rota.jobs import ESCALATION_TRIGGER, SHADOW_TRIGGER
from rota.model import RunFilter
from rota.storage import SqlStore

ROTA = str(Path(sys.executable).with_name("rota"))
EVENTS = 2000


def run_demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [ROTA, "demo", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def demo_run(database_url: str) -> tuple[dict[str, Any], SqlStore]:
    done = run_demo("--events", str(EVENTS), "--no-serve", "--json", "--database-url", database_url)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout is the JSON alone; progress went to stderr
    assert "webhooks delivered (HTTP)" in done.stderr
    store = SqlStore(database_url)
    return summary, store


def test_the_demo_summary_matches_the_store(demo_run: tuple[dict[str, Any], SqlStore]) -> None:
    summary, store = demo_run
    try:
        _check_runs(summary, store)
        _check_approvals(summary, store)
        _check_money(summary, store)
    finally:
        store.close()


def _check_runs(summary: dict[str, Any], store: SqlStore) -> None:
    assert summary["events"] == EVENTS
    assert summary["runs"][JOB] == {"SUCCEEDED": EVENTS} == store.count_states([JOB])
    agent_states = store.count_states([AGENT])
    assert summary["runs"][AGENT] == agent_states
    assert set(agent_states) == {"SUCCEEDED"}
    jobs = store.list_runs(RunFilter(names=(JOB,), limit=EVENTS + 1))
    escalated = [r for r in jobs if isinstance(r.result, dict) and "escalated_to" in r.result]
    assert summary["escalations"] == len(escalated)
    assert 0.005 * EVENTS < len(escalated) < 0.03 * EVENTS  # "about 1%"
    agents = store.list_runs(RunFilter(names=(AGENT,), limit=EVENTS))
    triggers = [r.trigger for r in agents]
    assert triggers.count(ESCALATION_TRIGGER) == summary["escalations"]
    assert triggers.count(SHADOW_TRIGGER) == summary["shadow_runs"]
    handled_by_job = EVENTS - len(escalated)
    assert 0.02 * handled_by_job < summary["shadow_runs"] < 0.08 * handled_by_job  # a 5% sample
    shadows = store.shadow_records(JOB)
    assert summary["shadow"]["compared"] == len(shadows) == summary["shadow_runs"]
    assert summary["shadow"]["agreed"] == sum(1 for s in shadows if s.agreed)
    for record in shadows:  # they differ exactly on refunds to customers on fraud watch
        job = record.job_result
        watched_refund = job["delta_cents"] < 0 and customer_status(job["customer"]) != "active"
        assert record.agreed is not watched_refund, record
    assert summary["scenarios"]["job_only"]["unhandled"] == len(escalated)


def _check_approvals(summary: dict[str, Any], store: SqlStore) -> None:
    requests = store.approvals(statuses=(), limit=10_000)
    counted = {s: sum(1 for r in requests if r.status == s) for s in summary["approvals"]}
    assert summary["approvals"] == counted
    assert counted["pending"] == 0 and counted["approved"] > 0 and counted["rejected"] > 0
    for request in requests:
        amount = abs(request.context["arguments"]["delta_cents"])
        assert amount > APPROVAL_THRESHOLD_CENTS
        assert request.decided_by == "demo-approver"
        assert request.status == ("rejected" if amount > REJECT_OVER_CENTS else "approved")


def _check_money(summary: dict[str, Any], store: SqlStore) -> None:
    window = tuple(datetime.fromisoformat(summary["window"][k]) for k in ("since", "until"))
    history = load_history(store, *window)
    usage = store.run_usage(window[0].timestamp(), window[1].timestamp())
    tokens = sum(u.usage.total for u in usage)
    hybrid = summary["scenarios"]["hybrid"]
    assert hybrid["tokens"] == tokens == sum(r.tokens for r in history.records) > 0
    for plan in PLANS:
        billed = evaluate(plan, history.records, history.table, window=window)  # type: ignore[arg-type]
        assert Decimal(hybrid["usd"][plan.name]) == billed.total
        assert hybrid["dropped"][plan.name] == len(billed.dropped)
    job_only = summary["scenarios"]["job_only"]
    assert job_only["tokens"] == 0
    assert Decimal(job_only["usd"]["api"]) < Decimal(hybrid["usd"]["api"])
    agent_only = summary["scenarios"]["agent_only"]
    assert agent_only["extrapolated"] is True
    measured = [r for r in history.records if r.uses_ai]
    assert agent_only["measured_items"] == len(measured)
    assert agent_only["tokens"] == sum(measured[i % len(measured)].tokens for i in range(EVENTS))
    assert Decimal(agent_only["usd"]["api"]) > Decimal(hybrid["usd"]["api"])


def test_interactive_leaves_the_approvals_to_a_person(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    done = run_demo(
        "--events", "1500", "--interactive", "--no-serve", "--json", "--database-url", url
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert "-> you, in the dashboard" in done.stderr
    pending = summary["approvals"]["pending"]
    assert pending > 0 and summary["approvals"]["approved"] == summary["approvals"]["rejected"] == 0
    store = SqlStore(url)
    try:
        assert len(store.approvals()) == pending  # still waiting for someone
        assert store.count_states([AGENT]).get("WAITING") == pending
    finally:
        store.close()


# -- the command line's boundary ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "claude"], "give provider:name with provider one of anthropic, openai"),
        (["--model", "mistral:large"], "give provider:name with provider one of"),
        (["--model", "anthropic:claude-sonnet-4-5"], "$ANTHROPIC_API_KEY must be set"),
    ],
)
def test_a_bad_model_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["demo", "--database-url", f"sqlite:///{db}", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not db.exists()  # nothing was created


def test_events_must_be_positive(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["demo", "--events", "0", "--database-url", f"sqlite:///{db}"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "Invalid value for '--events': Input should be greater than or equal to 1" in text
    assert not db.exists()


def test_the_demo_serves_its_api_until_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    command = [ROTA, "demo", "--events", "200", "--database-url", f"sqlite:///{db}"]
    with (
        (tmp_path / "stderr").open("w") as errors,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("dashboard: "):
                    break
            else:
                pytest.fail(f"no dashboard line in {lines}: {(tmp_path / 'stderr').read_text()}")
            url = line.split()[1]
            assert url.startswith("http://127.0.0.1:") and url.endswith("/")
            assert "200 events three ways" in "".join(lines)
            assert httpx.get(f"{url}healthz", timeout=10).status_code == 200
            sign_in = proc.stdout.readline()
            assert sign_in.startswith("sign in once, within ")
            link = sign_in.split()[-1]
            assert link.startswith(f"{url}login/once?code=")
            signed_in = httpx.get(link, timeout=10)  # follows no redirect: the cookie is set
            assert signed_in.is_redirect and "set-cookie" in signed_in.headers
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


# -- the scenario's pieces ----------------------------------------------------------------


def test_about_one_event_in_a_hundred_is_an_exception() -> None:
    events = [synthetic_event("b", i) for i in range(10_000)]
    odd = [e for e in events if e["type"] == "charge.dispute.created" or e["currency"] != "usd"]
    assert 80 <= len(odd) <= 160
    assert events == [synthetic_event("b", i) for i in range(10_000)]  # deterministic


def test_the_simulated_approver_rejects_entries_over_its_limit() -> None:
    assert verdict({"arguments": {"delta_cents": -REJECT_OVER_CENTS}})[0] is True
    approve, comment = verdict({"arguments": {"delta_cents": REJECT_OVER_CENTS + 1}})
    assert approve is False and "over the $300" in comment
