"""The files under deploy/ are real: systemd units pass `systemd-analyze verify`, and every
command they and the compose file start is a rota command whose options exist."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ROTA = Path(sys.executable).parent / "rota"
INSTALLED_ROTA = "/srv/rota/venv/bin/rota"  # where the units expect the venv
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _accepted(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`rota ARGS --help`: exits 0 only when the sub-command and every option exist."""
    return subprocess.run(
        [str(ROTA), *argv[1:], "--help"], capture_output=True, text=True, timeout=60
    )


def _exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    return shlex.split(parser["Service"]["ExecStart"])


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_starts_a_real_rota_command(unit: Path) -> None:
    argv = _exec_start(unit)
    assert argv[0] == INSTALLED_ROTA, argv
    done = _accepted(argv)
    assert done.returncode == 0, f"{unit.name}: {argv}\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; the unit's command is checked above")
    # A template unit is verified as one instance; the venv path is this test's own rota.
    name = unit.name.replace("@.service", "@1.service")
    text = unit.read_text().replace(INSTALLED_ROTA, str(ROTA))
    (tmp_path / name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{unit.name}:\n{done.stdout}{done.stderr}"


def _compose() -> dict[str, dict[str, object]]:
    loaded = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services: dict[str, dict[str, object]] = loaded["services"]
    return services


def test_compose_runs_postgres_migrations_workers_schedulers_and_the_api() -> None:
    services = _compose()
    assert set(services) == {"postgres", "migrate", "worker", "scheduler", "api"}
    for name in ("worker", "scheduler", "api"):
        env = services[name]["environment"]
        assert isinstance(env, dict)
        assert env["ROTA_DATABASE_URL"].startswith("postgresql://")
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict)
        assert depends["migrate"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("service", ["migrate", "worker", "scheduler", "api"])
def test_compose_commands_are_real_rota_commands(service: str) -> None:
    command = _compose()[service]["command"]
    assert isinstance(command, list) and command[0] == "rota", command
    done = _accepted(command)
    assert done.returncode == 0, f"{service}: {command}\n{done.stdout}{done.stderr}"
