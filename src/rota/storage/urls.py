"""Database URLs in SQLAlchemy's form: `sqlite:///relative.db`, `sqlite:////abs/path.db`,
`sqlite:///:memory:`, `postgresql://user@host:5432/db` (also `postgresql+psycopg://`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError

DEFAULT_URL = "sqlite:///rota.db"
EXAMPLES = "e.g. sqlite:///rota.db or postgresql://postgres@127.0.0.1:5432/rota"


@dataclass(frozen=True)
class DatabaseUrl:
    dialect: str  # "sqlite" | "postgresql"
    target: str  # a file path for SQLite, a libpq conninfo URL for PostgreSQL
    original: str

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
        return DatabaseUrl("postgresql", f"postgresql://{rest}", url)
    raise ConfigError(f"unsupported database {scheme!r} in {url!r}; {EXAMPLES}")
