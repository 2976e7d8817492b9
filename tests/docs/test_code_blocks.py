"""Every code block in README.md and docs/**/*.md runs, so the documentation cannot rot.

How each block is checked, by its language (a block with no language fails: tag it):

- python: a file's python blocks run in order in one namespace, in a fresh project directory
  with ROTA_DATABASE_URL pointing at a SQLite file there. A python or toml block whose first
  line is `# NAME.py` / `# NAME.toml` is also saved as that file (`rota` commands later in the
  page load it, e.g. `app.py` or `plans/team.toml`).
- sh, bash: the block is a bash script run with `set -euo pipefail` in the same directory, with
  the venv's `rota` first on PATH; it must exit 0. A line ending in `&` starts a background
  process: for `rota serve`/`rota dev` the script waits until the port answers, and at the end
  of the block every background process must still be running (then it is stopped).
- console: `$ ` lines are commands, the lines under each the output it must show, compared
  loosely (whitespace collapsed; `...` matches anything). `# exit N` after a command is its
  expected exit status (default 0).
- toml, json, yaml: parsed. promql: every `rota_*` metric named must be in `/metrics`.
- text: a diagram, a grammar or sample output; nothing to run.

Port 8800 in a block is replaced by a free port, so tests running side by side do not clash.
A block opts out only with `<!-- not-run: REASON -->` on the line before it, REASON one of
ALLOWED_REASONS; each opt-out is listed by `test_opt_outs_are_rare`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from codeblocks import Block, blocks

from rota import App
from rota.observability.collectors import StoreGauges, exposition, registry

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

ALLOWED_REASONS = {
    "make demo and make test run the suite that runs this test",
    "installs from the network",
    "a benchmark: minutes of work on a quiet machine",
    "needs docker",  # starts a container (Jaeger, Phoenix)
    "needs an outside service",  # sends to a hosted service (Langfuse) with its keys
    "needs a real model provider key",  # calls Anthropic or OpenAI
}
MAX_OPT_OUTS = 8  # keep them rare: make blocks runnable instead

# Values the pages assume are set in the environment, as a user would have them.
ENVIRONMENT = {
    "PAYMENTS_WEBHOOK_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "GITHUB_WEBHOOK_SECRET": "a-github-webhook-secret",
    "STRIPE_KEY": "sk_test_docs_example",
    "SLACK_ALERTS_URL": "http://127.0.0.1:9/slack",
    "ROTA_ALERTS_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "CRM_TOKEN": "crm-token-example",
    "DOCS_API_KEY": "docs-key-example",
    "ROTA_SECRET_KEY": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
}
SHELL_TIMEOUT_S = 120


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_block_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = _environment(project)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    port = _free_port()
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for block in blocks(page):
        if block.not_run is not None:
            assert block.not_run in ALLOWED_REASONS, (
                f"{block.where}: not-run reason {block.not_run!r} is not one of "
                f"{sorted(ALLOWED_REASONS)}"
            )
            continue
        check = CHECKS.get(block.lang)
        assert check is not None, (
            f"{block.where}: a ```{block.lang} block; tag it with one of {sorted(CHECKS)}"
        )
        check(block, Context(project, env, port, namespace))


def test_opt_outs_are_rare() -> None:
    opted = [(b.where, b.not_run) for p in PAGES for b in blocks(p) if b.not_run]
    assert len(opted) <= MAX_OPT_OUTS, opted


class Context:
    """What a page's blocks share: the project directory, environment, port and namespace."""

    def __init__(
        self, project: Path, env: dict[str, str], port: int, namespace: dict[str, object]
    ) -> None:
        self.project = project
        self.env = env
        self.port = port
        self.namespace = namespace


def _environment(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTA_", "OTEL_"))}
    env.update(ENVIRONMENT)
    env["ROTA_DATABASE_URL"] = f"sqlite:///{project / 'rota.db'}"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(project)
    env["COLUMNS"] = "250"  # rich wraps at the terminal's width: none here, so say a wide one
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("OPENAI_API_KEY", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_port(text: str, port: int) -> str:
    return re.sub(r"\b8800\b", str(port), text)


# -- python --------------------------------------------------------------------------------


def check_python(block: Block, ctx: Context) -> None:
    _save_if_named(block, ctx, ".py")
    code = compile(block.text, f"{block.path}:{block.line}", "exec")
    exec(code, ctx.namespace)  # running the documentation is the point


# -- shell ---------------------------------------------------------------------------------

_PRELUDE = r"""
set -euo pipefail
__bg=()
__ready() {  # wait for the server just started in the background to answer
  for _ in $(seq 1 300); do
    if (exec 3<>/dev/tcp/127.0.0.1/__PORT__) 2>/dev/null; then return 0; fi
    if ! kill -0 "${__bg[-1]}" 2>/dev/null; then echo "the server exited" >&2; return 1; fi
    sleep 0.1
  done
  echo "nothing answered on port __PORT__" >&2; return 1
}
__finish() {
  local status=$?
  for pid in "${__bg[@]}"; do
    if [ "$status" = 0 ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "background process $pid exited before the end of the block" >&2; status=1
    fi
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  exit "$status"
}
trap __finish EXIT
"""


def _script(text: str, port: int) -> str:
    out: list[str] = []
    for line in _with_port(text, port).splitlines():
        out.append(line)
        code = line.split(" #", 1)[0].rstrip()
        if code.endswith("&") and not code.endswith("&&"):
            out.append('__bg+=("$!")')
            if re.search(r"\brota\b.*\b(serve|dev)\b", code):
                out.append("__ready")
    return _PRELUDE.replace("__PORT__", str(port)) + "\n".join(out) + "\n"


def _bash(script: str, ctx: Context) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    proc = subprocess.Popen(
        [bash, "-c", script],
        cwd=ctx.project,
        env=ctx.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=SHELL_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def check_shell(block: Block, ctx: Context) -> None:
    done = _bash(_script(block.text, ctx.port), ctx)
    assert done.returncode == 0, (
        f"{block.where}: exit {done.returncode}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


_EXIT = re.compile(r"#\s*exit\s+(?P<code>\d+)\s*$")


def _transcript(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(command, expected exit status, expected output lines) for each `$ ` line."""
    command: str | None = None
    expected: list[str] = []
    status = 0
    for line in text.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, status, expected
            command, expected = line[2:], []
            m = _EXIT.search(command)
            status = int(m.group("code")) if m else 0
        elif command is not None and line.strip():
            expected.append(line)
    if command is not None:
        yield command, status, expected


def _loose(expected: str) -> re.Pattern[str]:
    parts = [re.escape(" ".join(p.split())) for p in expected.split("...")]
    return re.compile(".*".join(p.replace(r"\ ", r"\s+") for p in parts))


def check_console(block: Block, ctx: Context) -> None:
    steps = list(_transcript(block.text))
    assert steps, f"{block.where}: a console block needs `$ ` command lines"
    for command, status, expected in steps:
        done = _bash(_script(command, ctx.port), ctx)
        shown = done.stdout + done.stderr
        assert done.returncode == status, (
            f"{block.where}: `{command}` exited {done.returncode}, not {status}\n{shown}"
        )
        lines = [" ".join(line.split()) for line in shown.splitlines()]
        for want in expected:
            pattern = _loose(_with_port(want, ctx.port))
            assert any(pattern.search(line) for line in lines), (
                f"{block.where}: `{command}` did not print {want!r}; it printed:\n{shown}"
            )


# -- data ----------------------------------------------------------------------------------


def check_toml(block: Block, ctx: Context) -> None:
    tomllib.loads(block.text)
    _save_if_named(block, ctx, ".toml")


def _save_if_named(block: Block, ctx: Context, suffix: str) -> None:
    """A block whose first line is a comment naming a file is saved as that file."""
    first = block.text.splitlines()[0] if block.text.strip() else ""
    m = re.match(r"^# (?P<name>[\w/.-]+)\s*$", first)
    if m and m.group("name").endswith(suffix):
        target = ctx.project / m.group("name")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")


def check_json(block: Block, ctx: Context) -> None:
    json.loads(block.text)


def check_yaml(block: Block, ctx: Context) -> None:
    assert yaml.safe_load(block.text) is not None, f"{block.where}: empty YAML"


def _served_metric_names(ctx: Context) -> set[str]:
    app = App(ctx.env["ROTA_DATABASE_URL"])
    gauges = StoreGauges(lambda: app.store, app.budgets)
    try:
        text = exposition(registry(gauges)).decode()
    finally:
        gauges.close()
        app.close()
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.MULTILINE))
    served: set[str] = set()
    for name, kind in names:
        served.add(name)
        if kind == "counter":
            served.add(f"{name}_total")
        if kind == "histogram":
            served.update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
    return served


def check_promql(block: Block, ctx: Context) -> None:
    named = set(re.findall(r"\brota_[a-z_]+\b", block.text))
    assert named, f"{block.where}: no rota_* metric in the query"
    missing = named - _served_metric_names(ctx)
    assert not missing, f"{block.where}: not in /metrics: {sorted(missing)}"


def check_text(block: Block, ctx: Context) -> None:
    assert block.text.strip(), f"{block.where}: an empty block"


CHECKS = {
    "python": check_python,
    "sh": check_shell,
    "bash": check_shell,
    "console": check_console,
    "toml": check_toml,
    "json": check_json,
    "yaml": check_yaml,
    "promql": check_promql,
    "text": check_text,
}
