"""Principal and API token records, and their rows, mixed into SqlStore.

Every change to a principal is written with its audit record in one transaction
(`change_principal`), so the log cannot miss a change nor record one that did not happen.
Tokens are stored as a hash only; the token itself is shown once, when it is made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .audit import AuditEntry, AuditQueries
from .dialects import Row


@dataclass(frozen=True)
class Principal:
    """Who a run acts as (a stored record). Validation and `make_principal` live in
    rota.identity.principals."""

    name: str
    kind: str = "service"
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    disabled: bool = False

    @property
    def actor_kind(self) -> str:
        """How the audit log marks what this principal does itself (an API caller with its
        token, an approver): a user is a person. A run acting for it is always machine."""
        return "human" if self.kind == "user" else "machine"

    def holds(self, scope: str) -> bool:
        if scope in self.scopes:
            return True
        return any(g.endswith(":*") and scope.startswith(g[:-1]) for g in self.scopes if g != scope)

    def missing(self, scopes: Iterable[str]) -> tuple[str, ...]:
        """The scopes of `scopes` this principal does not hold, in order."""
        return tuple(s for s in scopes if not self.holds(s))

    def has_role(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles


Change = Callable[[Principal | None], tuple[Principal | None, Sequence[AuditEntry]]]
"""Given the principal as stored (None: absent), the principal to store (None: no change) and
the audit records of the change."""


@dataclass(frozen=True)
class TokenRecord:
    id: str
    principal: str
    token_hash: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    fire: str | None = None  # the one job this token may fire, and nothing else


class PrincipalQueries(AuditQueries):
    def principal(self, name: str) -> Principal | None:
        rows = self.conn().execute(
            "SELECT * FROM rota_principals WHERE name = :name", {"name": name}
        )
        return _principal(rows[0]) if rows else None

    def principals(self) -> list[Principal]:
        rows = self.conn().execute("SELECT * FROM rota_principals ORDER BY name")
        return [_principal(r) for r in rows]

    def change_principal(self, name: str, change: Change, now: float) -> Principal | None:
        """Read-modify-write one principal under a row lock, with its audit records, in one
        transaction. Returns the principal as stored afterwards."""
        with self.tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM rota_principals WHERE name = :name {self.dialect.row_lock}",
                {"name": name},
            )
            before = _principal(rows[0]) if rows else None
            after, entries = change(before)
            if after is None:
                return before
            params = {
                "name": after.name,
                "kind": after.kind,
                "scopes": json.dumps(sorted(after.scopes)),
                "roles": json.dumps(sorted(after.roles)),
                "disabled": int(after.disabled),
                "now": now,
            }
            conn.execute(
                """INSERT INTO rota_principals
                    (name, kind, scopes, roles, disabled, created_at, updated_at)
                VALUES (:name, :kind, :scopes, :roles, :disabled, :now, :now)
                ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,
                    scopes = excluded.scopes, roles = excluded.roles,
                    disabled = excluded.disabled, updated_at = excluded.updated_at""",
                params,
            )
            if entries:
                self.append_audit(conn, entries)
            return after

    # -- API tokens ---------------------------------------------------------------------

    def add_token(self, record: TokenRecord, entry: AuditEntry) -> None:
        with self.tx() as conn:
            conn.execute(
                """INSERT INTO rota_api_tokens
                    (id, principal, token_hash, created_at, expires_at, revoked_at, fire)
                VALUES (:id, :principal, :token_hash, :created_at, :expires_at, NULL, :fire)""",
                {
                    "id": record.id,
                    "principal": record.principal,
                    "token_hash": record.token_hash,
                    "created_at": record.created_at,
                    "expires_at": record.expires_at,
                    "fire": record.fire,
                },
            )
            self.append_audit(conn, [entry])

    def token(self, token_id: str) -> TokenRecord | None:
        rows = self.conn().execute("SELECT * FROM rota_api_tokens WHERE id = :id", {"id": token_id})
        return _token(rows[0]) if rows else None

    def tokens(self, principal: str | None = None) -> list[TokenRecord]:
        where, params = ("WHERE principal = :p", {"p": principal}) if principal else ("", {})
        rows = self.conn().execute(
            f"SELECT * FROM rota_api_tokens {where} ORDER BY created_at, id", params
        )
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str, now: float, entry: AuditEntry) -> bool:
        """Revoke a token that is not revoked yet; False if there is none such."""
        with self.tx() as conn:
            conn.execute(
                """UPDATE rota_api_tokens SET revoked_at = :now
                WHERE id = :id AND revoked_at IS NULL""",
                {"id": token_id, "now": now},
            )
            if not conn.rowcount:
                return False
            self.append_audit(conn, [entry])
            return True


def _principal(row: Row) -> Principal:
    return Principal(
        name=row["name"],
        kind=row["kind"],
        scopes=frozenset(json.loads(row["scopes"])),
        roles=frozenset(json.loads(row["roles"])),
        disabled=bool(row["disabled"]),
    )


def _token(row: Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        principal=row["principal"],
        token_hash=row["token_hash"],
        created_at=float(row["created_at"]),
        expires_at=None if row["expires_at"] is None else float(row["expires_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
        fire=row.get("fire"),
    )
