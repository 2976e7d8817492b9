"""Database URLs in SQLAlchemy's form: `sqlite:///relative.db`, `sqlite:////abs/path.db`,
`sqlite:///:memory:`, `postgresql://user@host:5432/db` (also `postgresql+psycopg://`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError

DEFAULT_URL = "sqlite:///rota.db"
EXAMPLES = "e.g. sqlite:///rota.db or postgresql://postgres@127.0.0.1:5432/rota"
# `?pgbouncer=transaction`: the URL points at PgBouncer in transaction pooling mode (see
# docs/scaling.md): no server-side prepared statements, and no LISTEN through it.
POOL_MODES = ("transaction", "session")


@dataclass(frozen=True)
class DatabaseUrl:
    dialect: str  # "sqlite" | "postgresql"
    target: str  # a file path for SQLite, a libpq conninfo URL for PostgreSQL
    original: str
    pool: str | None = None  # the PgBouncer pool mode named by ?pgbouncer=, if any

    def redacted(self) -> str:
        parts = urlsplit(self.original)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
        return self.original


def resolve(url: str | None) -> DatabaseUrl:
    """The URL given, else ROTA_DATABASE_URL, else the embedded SQLite file ./rota.db."""
    return parse(url or os.environ.get("ROTA_DATABASE_URL") or DEFAULT_URL)


def parse(url: str) -> DatabaseUrl:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"database URL {url!r} has no scheme; {EXAMPLES}")
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        if not rest.startswith("/"):
            raise ConfigError(f"SQLite URL {url!r} needs three slashes; {EXAMPLES}")
        path = rest[1:] or ":memory:"
        return DatabaseUrl("sqlite", path.split("?", 1)[0], url)
    if base in ("postgresql", "postgres"):
        target, pool = pool_mode(f"postgresql://{rest}", url)
        return DatabaseUrl("postgresql", target, url, pool)
    raise ConfigError(f"unsupported database {scheme!r} in {url!r}; {EXAMPLES}")


def pool_mode(target: str, url: str) -> tuple[str, str | None]:
    """The conninfo without rota's own `pgbouncer` parameter (libpq would refuse it), and
    its value."""
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    modes = [value for key, value in query if key == "pgbouncer"]
    if not modes:
        return target, None
    if len(modes) > 1 or modes[0] not in POOL_MODES:
        raise ConfigError(
            f"database URL {url!r}: pgbouncer= must be one of {', '.join(POOL_MODES)} "
            f"(PgBouncer's pool mode), got {', '.join(repr(m) for m in modes)}"
        )
    rest = urlencode([(key, value) for key, value in query if key != "pgbouncer"])
    return urlunsplit(parts._replace(query=rest)), modes[0]
