"""Alerts configuration (ConfigErrors that say what is wrong), secrets from the vault, the
watchdog as a periodic check of a real-time worker, and `rota alerts list|test`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from alert_receiver import SECRET, Receiver, receiver
from typer.testing import CliRunner

from rota import App
from rota.alerts import Alerts, slack, webhook
from rota.cli import app as cli
from rota.errors import ConfigError
from rota.identity.secrets import Vault
from rota.model import RunState


def test_a_secret_value_where_its_name_belongs_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="takes the NAME") as caught:
        webhook("https://ops.example.com/rota", secret=SECRET)
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="url_secret= takes the NAME"):
        slack(url_secret="https://hooks.slack.com/services/T0/B0/xyz")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: slack(), "needs url="),
        (lambda: slack("ftp://x"), "needs an http"),
        (lambda: webhook("https://x", secret="A", name="Ops Team"), "sink name 'Ops Team'"),
        (lambda: Alerts(sinks=[42]), "each alert sink must be"),
        (lambda: Alerts(check_every="0s"), "check_every must be positive"),
        (lambda: Alerts(retries=-1), "retries must be a whole number"),
        (lambda: Alerts(approval_after="soon"), "approval_after"),
        (
            lambda: App("sqlite:///:memory:", alerts=Alerts(sinks=["pager"])),
            "name the sink 'pager'",
        ),
        (lambda: App("sqlite:///:memory:", alerts="https://x"), "alerts= must be rota.alerts"),
        (lambda: App("sqlite:///:memory:").alerts(Alerts(), retries=1), "not both"),
    ],
)
def test_bad_settings_are_config_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_job_naming_an_unknown_sink_is_refused() -> None:
    app = App(
        "sqlite:///:memory:", alerts=Alerts(sinks=[webhook("https://x", secret="S", name="ops")])
    )

    with pytest.raises(ConfigError, match=r"alerts of billing name the sink 'pager'.*ops"):

        @app.job(name="billing", alerts=["pager"])
        def billing(ctx: Any) -> None: ...

    with pytest.raises(ConfigError, match="alerts= must be Alerts"):

        @app.job(name="other", alerts=3)
        def other(ctx: Any) -> None: ...

    assert "billing" not in app.definitions and "other" not in app.definitions

    @app.job(name="fine", alerts=["ops"])  # the refused ones left nothing behind
    def fine(ctx: Any) -> None: ...

    assert app.alert_policy.rule("billing") is not None  # the app's: billing has none of its own
    assert [s.name for s in app.alert_policy.sinks(app.alert_policy.rule("fine"))] == ["ops"]


def test_a_sink_secret_may_live_in_the_vault(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROTA_SECRET_KEY", base64.b64encode(os.urandom(32)).decode())
    with receiver() as r:
        app = App(
            database_url,
            alerts=Alerts(sinks=[webhook(r.url, secret="vaulted_alert_secret", name="ops")]),
        )
        try:
            Vault(app.store).set("vaulted_alert_secret", SECRET, grants=["rota:alerts"])

            @app.job(name="broken")
            def broken(ctx: Any) -> None:
                raise RuntimeError("boom")

            app.run_now("broken")
            app.drain()
            app.drain()
            [body] = r.verified()
            assert body["subject"] == "broken"
        finally:
            app.close()


def test_a_running_worker_runs_the_watchdog_by_itself(database_url: str, hook: Receiver) -> None:
    app = App(
        database_url,
        alerts=Alerts(
            sinks=[webhook(hook.url, secret="ALERTS_SECRET", name="ops")], check_every="0.05s"
        ),
    )

    @app.job(name="broken")
    def broken(ctx: Any) -> None:
        raise RuntimeError("boom")

    worker = app.worker(poll_interval_s=0.05)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()))
    thread.start()
    try:
        run = app.run_now("broken")  # after the worker started: only a periodic check sees it
        assert run.wait(timeout=30).state == RunState.FAILED
        deadline = time.monotonic() + 30
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(timeout=30)
        app.close()
    [body] = hook.verified()
    assert body["detail"]["run_id"] == run.id


APP_MODULE = """
from rota import App
from rota.alerts import Alerts, webhook

app = App({url!r}, alerts=Alerts(sinks=[
    webhook({good!r}, secret="ALERTS_SECRET", name="ops"),
    webhook({bad!r}, secret="ALERTS_SECRET", name="broken"),
]))
"""


def test_rota_alerts_test_and_list(
    database_url: str, hook: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiver(statuses=[500]) as bad:
        module = tmp_path / "alerting_app.py"
        module.write_text(APP_MODULE.format(url=database_url, good=hook.url, bad=bad.url))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
        monkeypatch.delitem(sys.modules, "alerting_app", raising=False)  # a fresh import
        runner = CliRunner()
        base = ["--app", "alerting_app:app"]
        ok = runner.invoke(cli, [*base, "alerts", "test", "--sink", "ops"])
        assert ok.exit_code == 0, ok.output
        assert "ops: delivered" in ok.output
        [body] = hook.verified()
        assert body["kind"] == "test"
        failed = runner.invoke(cli, [*base, "alerts", "test"])
        assert failed.exit_code == 1
        assert "broken: failed" in failed.output and "answered 500" in failed.output
        unknown = runner.invoke(cli, [*base, "alerts", "test", "--sink", "pager"])
        assert unknown.exit_code != 0 and "no alert sink named 'pager'" in unknown.output
        listed = runner.invoke(cli, [*base, "alerts", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        rows = json.loads(listed.stdout)
        assert sorted((r["sink"], r["state"]) for r in rows) == [
            ("broken", "failed"),
            ("ops", "delivered"),
            ("ops", "delivered"),
        ]
        table = runner.invoke(cli, [*base, "alerts", "list", "--kind", "test"])
        assert table.exit_code == 0 and "broken" in table.output
