"""An app written to a temporary module and driven through the CLI with --app, as a user's
would be: the setup the CLI tests share (they add their own helpers by subclassing)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner, Result

from rota import App
from rota.cli import app as cli
from rota.model import RunFilter


@dataclass
class AppModule:
    url: str
    app: App
    module: str

    def rota(self, *args: str) -> Result:
        return CliRunner().invoke(
            cli, ["--database-url", self.url, "--app", f"{self.module}:app", *args]
        )

    def runs(self) -> list[Any]:
        return self.app.store.list_runs(RunFilter(limit=1000))


M = TypeVar("M", bound=AppModule)


@contextmanager
def app_module(
    kind: type[M],
    source: str,
    module: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[M]:
    """Write `source` as `module` in tmp_path, import it, point its app at the test's
    database (migrated), and close it afterwards."""
    monkeypatch.delenv("ROTA_DATABASE_URL", raising=False)
    monkeypatch.delenv("ROTA_APP", raising=False)
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(module, None)
    app: App = importlib.import_module(module).app
    app.use_database(database_url)
    app.store.migrate()
    try:
        yield kind(database_url, app, module)
    finally:
        app.close()
        sys.modules.pop(module, None)
