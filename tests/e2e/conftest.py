"""Fixtures shared by the CLI end-to-end tests."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def clean_cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ROTA_DATABASE_URL or ROTA_APP from the caller's shell: each test passes its own."""
    monkeypatch.delenv("ROTA_DATABASE_URL", raising=False)
    monkeypatch.delenv("ROTA_APP", raising=False)


@pytest.fixture
def cli_app(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The fixture app module in cli_app.py, importable as `cli_app:app`."""
    monkeypatch.syspath_prepend(str(HERE))
    return importlib.import_module("cli_app")
