"""Parsing and validation that users meet first: durations, URLs, JSON, definitions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rota import App, ConfigError, SerializationError, UnknownJobError, on_event
from rota.durations import seconds
from rota.serialization import parse_json_text, roundtrip
from rota.storage.urls import parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30),
        ("5m", 300),
        ("4h", 14400),
        ("1d", 86400),
        ("1h30m", 5400),
        ("500ms", 0.5),
        (12, 12),
        (timedelta(minutes=2), 120),
    ],
)
def test_durations(text: object, expected: float) -> None:
    assert seconds(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "30", "5 minutes", "1x", "-5s", "s30"])
def test_bad_durations_say_what_a_good_one_looks_like(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. '500ms', '30s'"):
        seconds(bad, what="timeout")


def test_database_urls() -> None:
    assert parse("sqlite:///rota.db").target == "rota.db"
    assert parse("sqlite:////var/lib/rota.db").target == "/var/lib/rota.db"
    pg = parse("postgresql+psycopg://u:secret@h:5432/db")
    assert (pg.dialect, pg.target) == ("postgresql", "postgresql://u:secret@h:5432/db")
    assert "secret" not in pg.redacted()
    for bad, message in [
        ("rota.db", "no scheme"),
        ("mysql://x/y", "unsupported database"),
        ("sqlite://rota.db", "three slashes"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse(bad)


def test_json_errors_point_at_the_problem() -> None:
    with pytest.raises(SerializationError, match="line 1 column 2"):
        parse_json_text("{oops}", what="--payload")
    assert roundtrip((1, 2), what="x") == [1, 2]


def test_definition_mistakes_fail_at_definition_time(tmp_path) -> None:
    app = App(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError, match="retries must be a whole number"):
        app.job(retries=-1)(lambda ctx: None)
    with pytest.raises(ConfigError, match="concurrency_key needs concurrency"):
        app.job(concurrency_key="customer")(lambda ctx: None)
    with pytest.raises(ConfigError, match="must accept the run context"):
        app.job(lambda: None)
    with pytest.raises(ConfigError, match="trigger must be a trigger"):
        app.job(trigger="every day")(lambda ctx: None)
    with pytest.raises(ConfigError, match="on_event needs an event name"):
        on_event("")

    @app.job
    def sweep(ctx):
        return None

    with pytest.raises(ConfigError, match="defined twice"):
        app.job(name="sweep")(lambda ctx: None)
    with pytest.raises(UnknownJobError, match="unknown job or workflow 'swep'; known: sweep"):
        app.run_now("swep")
    assert not (tmp_path / "x.db").exists()  # nothing touched the database
