"""Secrets on both databases: encryption at rest, keys, grants, the CLI."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from rota.cli import app as cli
from rota.errors import ConfigError
from rota.identity import SecretDenied, SecretKeyError, SecretNotFound, Vault, redactor
from rota.storage import SqlStore
from rota.storage.urls import parse

VALUE = "s3cr3t-Value-that-must-not-leak"
KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"o" * 32).decode()


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROTA_SECRET_KEY", raising=False)
    monkeypatch.delenv("ROTA_SECRET_KEY_FILE", raising=False)


def raw_bytes(store: SqlStore, database_url: str) -> bytes:
    """Everything the database holds for secrets, as stored."""
    url = parse(database_url)
    if url.dialect == "sqlite":
        store.close()  # flush the WAL into the file
        data = Path(url.target).read_bytes()
        wal = Path(url.target + "-wal")
        return data + (wal.read_bytes() if wal.exists() else b"")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT name, ciphertext, grants FROM rota_secrets").fetchall()
    return repr(rows).encode()


def test_round_trip_and_nothing_in_clear_at_rest(store: SqlStore, database_url: str) -> None:
    vault = Vault(store, key=KEY)
    vault.set("api_token", VALUE, grants=["bot", "ops"])
    assert vault.get("api_token", "bot") == VALUE
    assert vault.names() == ["api_token"]
    [info] = vault.list()
    assert info.grants == ("bot", "ops") and VALUE not in repr(info)
    stored = store.secret("api_token")
    assert stored is not None and VALUE not in stored.ciphertext
    raw = raw_bytes(store, database_url)
    assert b"api_token" in raw  # the read did see the table
    assert VALUE.encode() not in raw
    assert base64.b64encode(VALUE.encode()) not in raw


def test_each_write_uses_a_fresh_nonce_and_keeps_grants(store: SqlStore) -> None:
    vault = Vault(store, key=KEY)
    vault.set("a", VALUE, grants=["bot"])
    first = store.secret("a")
    vault.set("a", VALUE)  # no grants given: kept
    second = store.secret("a")
    assert first and second and first.ciphertext != second.ciphertext
    assert second.grants == ("bot",)
    vault.set("a", "new", grants=[])
    assert store.secret("a").grants == ()  # type: ignore[union-attr]


def test_wrong_key_fails_clearly(store: SqlStore) -> None:
    Vault(store, key=KEY).set("a", VALUE, grants=["bot"])
    with pytest.raises(SecretKeyError, match="does not match the one these secrets were written"):
        Vault(store, key=OTHER_KEY).get("a", "bot")


def test_ciphertext_moved_to_another_name_fails(store: SqlStore) -> None:
    vault = Vault(store, key=KEY)
    vault.set("a", VALUE, grants=["bot"])
    vault.set("b", "other", grants=["bot"])
    moved = store.secret("a")
    assert moved is not None
    store.put_secret("b", moved.ciphertext, ["bot"], 0.0)
    with pytest.raises(SecretKeyError, match="altered or copied"):
        vault.get("b", "bot")


def test_grants_are_enforced(store: SqlStore) -> None:
    vault = Vault(store, key=KEY)
    vault.set("a", VALUE, grants=["bot"])
    with pytest.raises(SecretDenied, match="'intruder' is not granted secret 'a'"):
        vault.get("a", "intruder")
    with pytest.raises(SecretDenied):
        vault.get("a", None)
    assert vault.grant("a", "intruder", "bot") == ("bot", "intruder")
    assert vault.get("a", "intruder") == VALUE
    assert vault.revoke("a", "bot") == ("intruder",)
    with pytest.raises(SecretDenied):
        vault.get("a", "bot")
    with pytest.raises(SecretNotFound):
        vault.get("missing", "bot")
    with pytest.raises(SecretNotFound):
        vault.grant("missing", "bot")
    vault.delete("a")
    assert vault.names() == []
    with pytest.raises(SecretNotFound):
        vault.delete("a")


def test_get_registers_the_value_for_redaction(store: SqlStore) -> None:
    Vault(store, key=KEY).set("reg_test", VALUE, grants=["bot"])
    assert Vault(store, key=KEY).get("reg_test", "bot") == VALUE
    assert redactor.redact(f"token {VALUE}") == "token [redacted:reg_test]"


def test_key_from_env_and_malformed_env(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTA_SECRET_KEY", KEY)
    Vault(store).set("a", VALUE, grants=["bot"])
    assert Vault(store, key=KEY).get("a", "bot") == VALUE
    assert not Path(".rota").exists()
    monkeypatch.setenv("ROTA_SECRET_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(ConfigError, match="ROTA_SECRET_KEY must be the base64 of 32"):
        Vault(store).get("a", "bot")
    monkeypatch.setenv("ROTA_SECRET_KEY", "not base64 !!")
    with pytest.raises(ConfigError, match="not valid base64"):
        Vault(store).get("a", "bot")


def test_key_file_is_created_0600_and_reused(store: SqlStore, tmp_path: Path) -> None:
    Vault(store).set("a", VALUE, grants=["bot"])
    path = tmp_path / ".rota" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert Vault(store).get("a", "bot") == VALUE  # a new vault reads the same key
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Vault(store).get("a", "bot")


def test_key_file_from_env(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys" / "rota.key"
    monkeypatch.setenv("ROTA_SECRET_KEY_FILE", str(path))
    Vault(store).set("a", VALUE, grants=["bot"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / ".rota").exists()


def test_listing_needs_no_key(store: SqlStore) -> None:
    Vault(store, key=KEY).set("a", VALUE)
    assert Vault(store).names() == ["a"]
    assert not Path(".rota").exists()


# -- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def project(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    store = SqlStore(database_url)
    store.migrate()
    store.close()
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.setenv("ROTA_SECRET_KEY", KEY)
    yield database_url


def rota(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def test_cli_set_list_delete(project: str) -> None:
    result = rota("secrets", "set", "gh_token", "--grant", "bot", "-g", "ops", stdin=VALUE + "\n")
    assert result.exit_code == 0, result.output
    assert VALUE not in result.output and "warning" not in result.output
    store = SqlStore(project)
    try:
        assert Vault(store, key=KEY).get("gh_token", "ops") == VALUE  # trailing newline dropped
    finally:
        store.close()

    result = rota("secrets", "list", "--json")
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.stdout)
    assert item["name"] == "gh_token" and item["grants"] == ["bot", "ops"]
    assert item["updated"].endswith("Z") and VALUE not in result.output
    table = rota("secrets", "list")
    assert table.exit_code == 0 and "gh_token" in table.stdout and VALUE not in table.output

    # Setting again without --grant keeps the grants; a short value is allowed, with a warning.
    short = rota("secrets", "set", "gh_token", stdin="v2")
    assert short.exit_code == 0
    assert "warning: secret gh_token is only 2 characters long" in short.output
    assert json.loads(rota("secrets", "list", "--json").stdout)[0]["grants"] == ["bot", "ops"]

    result = rota("secrets", "delete", "gh_token")
    assert result.exit_code == 0, result.output
    assert json.loads(rota("secrets", "list", "--json").stdout) == []
    result = rota("secrets", "delete", "gh_token")
    assert result.exit_code == 2 and "no secret named 'gh_token'" in result.output


def test_cli_refuses_a_value_on_the_command_line(project: str) -> None:
    result = rota("secrets", "set", "gh_token", VALUE)
    assert result.exit_code == 2
    assert "pipe the value on stdin" in result.output
    assert VALUE not in result.output
    assert json.loads(rota("secrets", "list", "--json").stdout) == []


def test_cli_refuses_an_empty_value(project: str) -> None:
    result = rota("secrets", "set", "gh_token", stdin="")
    assert result.exit_code == 2 and "empty" in result.output
    result = rota("secrets", "set", "gh_token", stdin="\n")
    assert result.exit_code == 2 and "empty" in result.output


def test_cli_bad_key_is_a_clear_error(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTA_SECRET_KEY", "nope")
    result = rota("secrets", "set", "gh_token", stdin=VALUE)
    assert result.exit_code == 2 and "ROTA_SECRET_KEY must be the base64" in result.output
    assert os.environ["ROTA_SECRET_KEY"] == "nope"
