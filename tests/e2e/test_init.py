"""`rota init`: each template scaffolds a project whose own tests pass as is, in a fresh
process, and which `rota routines validate` accepts; existing files are never overwritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rota.cli.common import ExitCode
from rota.cli.init import Template

ROTA = Path(sys.executable).parent / "rota"
COMMON_FILES = [".env.example", "README.md", "app.py", "plans/api.toml", "plans/team.toml"]


def _env() -> dict[str, str]:
    """The environment of a user's shell: no ROTA_* settings of the test run."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ROTA_", "PYTEST_"))}


def run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("template", list(Template), ids=[t.value for t in Template])
def test_each_template_makes_a_project_whose_tests_pass(tmp_path: Path, template: Template) -> None:
    made = run([ROTA, "init", "project", "--template", template.value, "--json"], tmp_path)
    assert made.returncode == 0, made.stderr
    files = json.loads(made.stdout)["files"]
    assert set(COMMON_FILES) | {"test_app.py"} <= set(files)
    project = tmp_path / "project"
    assert (project / "routines").is_dir()
    readme = (project / "README.md").read_text()
    assert "pytest test_app.py" in readme and "rota dev" in readme and "__" not in readme

    tests = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"], project
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    validated = run([ROTA, "routines", "validate", "--json"], project)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    report = json.loads(validated.stdout)
    assert report["ok"] is True and report["problems"] == []
    expected = ["weekly-digest"] if template == Template.ROUTINES else []
    assert report["routines"] == expected


def test_init_refuses_to_overwrite_and_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("# mine\n")
    (tmp_path / "README.md").write_text("# mine too\n")
    refused = run([ROTA, "init", "."], tmp_path)
    assert refused.returncode == ExitCode.USAGE
    assert refused.stderr == (
        "error: . already has README.md, app.py; rota init never overwrites files: pick "
        "another folder or move them away\n"
    )
    assert (tmp_path / "app.py").read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "app.py"]  # nothing added


def test_an_unknown_template_is_a_usage_error(tmp_path: Path) -> None:
    refused = run([ROTA, "init", "p", "--template", "fancy", "--json"], tmp_path)
    assert refused.returncode == ExitCode.USAGE
    answer = json.loads(refused.stdout)
    assert answer["error"] == "usage"
    assert "'fancy' is not one of 'minimal', 'billing', 'routines'" in answer["message"]
    assert not (tmp_path / "p").exists()
