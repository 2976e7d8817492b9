"""`rota worker --log-format json` (or ROTA_LOG_FORMAT=json) writes one JSON object a line,
naming the run, job, principal, step and trace of each line, with secrets redacted; the human
format shows each run that succeeded as one line too."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from worker_process import rota_cli, run_worker_after_jobs

VALUE = "sk-live-Jx42-never-in-a-log"
KEY = base64.b64encode(b"j" * 32).decode()

APP = """
import logging, os, signal
from opentelemetry.sdk.trace import TracerProvider
from rota import App

app = App()
app.principal("svc-billing", scopes=["billing:write"])
gateway = logging.getLogger("billing.gateway")  # the user's logger, no handler of its own
tracer = TracerProvider().get_tracer("billing")

@app.workflow(run_as="svc-billing", priority=10)
async def charge(ctx):
    key = ctx.secret("stripe_key")
    def call_gateway():
        gateway.warning("IN-STEP charging with %s", key)
        return "charged"
    await ctx.step("gateway", call_gateway)
    with tracer.start_as_current_span("charge"):
        gateway.warning("IN-SPAN done")
    raise RuntimeError(f"JOB-RAISED with {key}")

@app.job(priority=5)
def fine(ctx):
    return "ok"

@app.job(priority=-10)
def stop_worker(ctx):
    os.kill(os.getpid(), signal.SIGTERM)
"""


def run_worker(tmp_path: Path, sqlite_url: str, *args: str, **env_extra: str) -> str:
    cli = rota_cli(tmp_path, APP, sqlite_url, KEY, **env_extra)
    worker = run_worker_after_jobs(cli, VALUE, ("charge", "fine", "stop_worker"), *args)
    assert VALUE not in worker.stdout + worker.stderr
    return worker.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_json_logs_name_the_run_step_and_trace_and_redact_secrets(
    tmp_path: Path, sqlite_url: str, how: str
) -> None:
    if how == "flag":
        stderr = run_worker(tmp_path, sqlite_url, "--log-format", "json")
    else:
        stderr = run_worker(tmp_path, sqlite_url, ROTA_LOG_FORMAT="json")
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # all JSON
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line), line

    def one(marker: str) -> dict[str, Any]:
        found = [line for line in lines if marker in line["message"]]
        assert len(found) == 1, (marker, stderr)
        return found[0]

    in_step = one("IN-STEP")
    assert in_step["message"] == "IN-STEP charging with [redacted:stripe_key]"
    assert (in_step["logger"], in_step["level"]) == ("billing.gateway", "WARNING")
    assert (in_step["job"], in_step["principal"], in_step["step"]) == (
        "charge",
        "svc-billing",
        "gateway",
    )
    in_span = one("IN-SPAN")
    assert len(in_span["trace_id"]) == 32 and int(in_span["trace_id"], 16) != 0
    assert "step" not in in_span and in_span["run_id"] == in_step["run_id"]
    assert "trace_id" not in in_step  # no span was active there
    failed = one("JOB-RAISED")
    assert "[redacted:stripe_key]" in failed["message"]
    # logged as the worker records the failure, after the run's own log context has closed
    assert (failed["run_id"], failed["job"], failed["principal"]) == (
        in_step["run_id"],
        "charge",
        "svc-billing",
    )
    succeeded = one("of fine SUCCEEDED in")
    assert succeeded["job"] == "fine" and succeeded["logger"] == "rota.run"


def test_the_human_format_shows_runs_that_succeeded(tmp_path: Path, sqlite_url: str) -> None:
    stderr = run_worker(tmp_path, sqlite_url)
    words = " ".join(stderr.split())  # the human format wraps long lines
    assert re.search(r"INFO +run [0-9a-f-]+ of fine SUCCEEDED in \d+ms", words), stderr
    assert "IN-STEP charging with [redacted:stripe_key]" in stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(stderr.splitlines()[0])
