"""A real `rota worker` process redacts every secret its user code writes to stderr: through a
module logger with no handler (Python's last-resort handler), a logger with its own handler,
an `exc_info` traceback, `warnings.warn`, and an exception no one catches in a thread."""

from __future__ import annotations

import base64
from pathlib import Path

from worker_process import rota_cli, run_worker_after_jobs

VALUE = "sk-live-Qx81-never-in-a-log"
KEY = base64.b64encode(b"r" * 32).decode()

CHATTY_APP = """
import logging, os, signal, sys, threading, warnings
from rota import App

app = App()
app.principal("svc-billing", scopes=["billing:write"])

gateway = logging.getLogger("billing.gateway")  # no handler anywhere: the last resort prints
own = logging.getLogger("billing.own")  # a handler of its own, set up before any secret
own.addHandler(logging.StreamHandler(sys.stderr))
own.propagate = False

@app.job(run_as="svc-billing", priority=10)
def chatty(ctx):
    key = ctx.secret("stripe_key")
    gateway.warning("MODULE-LOGGER charging with %s", key)
    own.error("OWN-HANDLER charging with " + key)
    try:
        raise ValueError(f"EXC-INFO the gateway refused {key}")
    except ValueError:
        gateway.exception("TRACEBACK the call failed")
    warnings.warn(f"WARNED {key} expires soon", UserWarning, stacklevel=1)
    def dies():
        raise RuntimeError(f"THREAD-DIED holding {key}")
    t = threading.Thread(target=dies)
    t.start()
    t.join()
    raise RuntimeError(f"JOB-RAISED with {key}")

@app.job(priority=0)
def stop_worker(ctx):
    os.kill(os.getpid(), signal.SIGTERM)
    return "stopping"
"""

MARKERS = (
    "MODULE-LOGGER",
    "OWN-HANDLER",
    "EXC-INFO",
    "WARNED",
    "THREAD-DIED",
    "JOB-RAISED",
)


def test_a_worker_redacts_what_user_code_logs_warns_and_raises(
    tmp_path: Path, sqlite_url: str
) -> None:
    cli = rota_cli(tmp_path, CHATTY_APP, sqlite_url, KEY)
    worker = run_worker_after_jobs(cli, VALUE, ("chatty", "stop_worker"))

    assert VALUE not in worker.stdout
    assert VALUE not in worker.stderr, worker.stderr
    lines = worker.stderr.splitlines()
    for marker in MARKERS:  # each path did print, and printed the redacted form
        printed = [line for line in lines if marker in line]
        assert printed, f"{marker} was not printed at all:\n{worker.stderr}"
        assert any("[redacted:stripe_key]" in line for line in printed), printed
