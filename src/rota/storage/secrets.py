"""Secret rows, mixed into SqlStore. The store only ever sees ciphertext: encryption and
decryption happen in rota.identity.secrets.Vault, which is the API to use."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from .connection import SqlBase
from .dialects import Row


@dataclass(frozen=True)
class SecretRecord:
    name: str
    ciphertext: str  # base64(nonce + AES-GCM ciphertext); never the value
    grants: tuple[str, ...]  # principal names allowed to read it
    created_at: float
    updated_at: float


class SecretQueries(SqlBase):
    def put_secret(
        self, name: str, ciphertext: str, grants: Sequence[str] | None, now: float
    ) -> None:
        """Create or replace a secret's ciphertext. grants=None keeps an existing secret's
        grants (a new one gets none); a list replaces them."""
        params = {
            "name": name,
            "ciphertext": ciphertext,
            "grants": _grants_json(grants or ()),
            "now": now,
        }
        keep = "rota_secrets.grants" if grants is None else "excluded.grants"
        self.conn().execute(
            f"""INSERT INTO rota_secrets (name, ciphertext, grants, created_at, updated_at)
            VALUES (:name, :ciphertext, :grants, :now, :now)
            ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext,
                grants = {keep}, updated_at = excluded.updated_at""",
            params,
        )

    def secret(self, name: str) -> SecretRecord | None:
        rows = self.conn().execute("SELECT * FROM rota_secrets WHERE name = :name", {"name": name})
        return _record(rows[0]) if rows else None

    def secrets(self) -> list[SecretRecord]:
        return [_record(r) for r in self.conn().execute("SELECT * FROM rota_secrets ORDER BY name")]

    def delete_secret(self, name: str) -> bool:
        conn = self.conn()
        conn.execute("DELETE FROM rota_secrets WHERE name = :name", {"name": name})
        return bool(conn.rowcount)

    def change_secret_grants(
        self, name: str, add: Sequence[str] = (), remove: Sequence[str] = (), *, now: float
    ) -> tuple[str, ...] | None:
        """Add and remove principals in one transaction; the new grants, or None when there
        is no such secret."""
        with self.tx() as conn:
            rows = conn.execute(
                f"SELECT grants FROM rota_secrets WHERE name = :name {self.dialect.row_lock}",
                {"name": name},
            )
            if not rows:
                return None
            grants = [g for g in json.loads(rows[0]["grants"]) if g not in remove]
            grants += [g for g in dict.fromkeys(add) if g not in grants]
            conn.execute(
                """UPDATE rota_secrets SET grants = :grants, updated_at = :now
                WHERE name = :name""",
                {"name": name, "grants": _grants_json(grants), "now": now},
            )
            return tuple(sorted(grants))


def _grants_json(grants: Sequence[str]) -> str:
    return json.dumps(sorted(dict.fromkeys(grants)))


def _record(row: Row) -> SecretRecord:
    return SecretRecord(
        name=row["name"],
        ciphertext=row["ciphertext"],
        grants=tuple(json.loads(row["grants"])),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )
