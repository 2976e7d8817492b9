"""Audit log queries, mixed into SqlStore: an append-only, hash-chained table.

Each record carries `seq` (previous + 1, from 1), `prev_hash` (the previous record's hash;
64 zeros for the first) and `hash` = sha256 of a canonical JSON of its fields and prev_hash.
`on_behalf_of` (schema version 9) is hashed only when it is set: records written before it
existed hash as they always did, and setting or clearing it on any record shows.
Appenders are serialised (an advisory lock on PostgreSQL; SQLite's IMMEDIATE transactions
already serialise writers), so the chain has no forks and no gaps.

A chain alone cannot show that its LAST record was deleted: what remains is a valid, shorter
chain. So each append also writes the head (latest seq and hash) to `rota_meta` under the
key `audit_head`, in the same transaction; the verifier compares the chain's end with it.

This makes tampering evident, not impossible: someone with write access to the database who
rewrites every later record and the head consistently is not detected by the chain alone.
Publishing the head elsewhere (`rota audit verify --json` prints it) anchors it outside.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import serialization
from ..clock import iso, system_clock
from ..errors import ConfigError
from ..ids import new_id
from .connection import SqlBase
from .dialects import Connection, Row

# The audit action names: every action the log records.
RUN_STARTED = "run.started"
RUN_REQUESTED = "run.requested"
RUN_REFUSED = "run.refused"
AUTH_DENIED = "auth.denied"
TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
SECRET_CHANGED = "secret.changed"
SECRET_DENIED = "secret.denied"
TOOL_CALLED = "tool.called"
TOOL_DENIED = "tool.denied"
TOOL_STAGED = "tool.staged"  # a staged routine's call of a tool with side effects, not run
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_GRANTED = "approval.granted"
APPROVAL_REJECTED = "approval.rejected"
APPROVAL_TIMED_OUT = "approval.timed_out"
APPROVAL_REFUSED = "approval.refused"  # a decision refused: not an approver, or too late
SECRET_READ = "secret.read"
PRINCIPAL_CHANGED = "principal.changed"
SCOPE_CHANGED = "scope.changed"
BUDGET_EXCEEDED = "budget.exceeded"
SCHEDULE_CHANGED = "schedule.changed"  # paused, resumed or backfilled by hand
AUDIT_PRUNED = "audit.pruned"  # retention deleted old records and moved the checkpoint

GENESIS_HASH = "0" * 64
_COLUMNS = {  # column -> PostgreSQL type, for batched inserts
    "seq": "bigint",
    "id": "text",
    "at": "float8",
    "actor": "text",
    "actor_kind": "text",
    "on_behalf_of": "text",
    "action": "text",
    "subject": "text",
    "run_id": "text",
    "detail": "text",
    "prev_hash": "text",
    "hash": "text",
}
HEAD_KEY = "audit_head"
# Where the chain starts once retention pruned its oldest records (storage/retention.py).
CHECKPOINT_KEY = "audit_checkpoint"
ACTOR_KINDS = ("human", "machine")  # what acted: a person, or rota running code
SYSTEM_ACTOR_PREFIX = "rota:"  # rota's own actors (rota:app, rota:worker, rota:anonymous...)
HASHED_FIELDS = (
    "seq",
    "id",
    "at",
    "actor",
    "actor_kind",
    "on_behalf_of",
    "action",
    "subject",
    "run_id",
    "detail",
    "prev_hash",
)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    id: str
    at: float
    actor: str
    actor_kind: str
    on_behalf_of: str | None  # None: for no one (rota's own acts; records before version 9)
    action: str
    subject: str | None
    run_id: str | None
    detail_json: str  # as stored (and hashed): canonical JSON, keys sorted
    prev_hash: str
    hash: str

    def hashed_fields(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in HASHED_FIELDS if name != "detail"},
            "detail": self.detail_json,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "at": iso(self.at),
            "actor": self.actor,
            "actor_kind": self.actor_kind,
            "on_behalf_of": self.on_behalf_of,
            "action": self.action,
            "subject": self.subject,
            "run_id": self.run_id,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @property
    def detail(self) -> Any:
        try:
            return json.loads(self.detail_json)
        except ValueError:
            return {"unparseable": self.detail_json}


@dataclass(frozen=True, slots=True)
class AuditHead:
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where the chain starts after pruning: the last pruned record's seq and hash, and the
    seq of the `audit.pruned` record that announced them (which the verifier checks)."""

    seq: int
    hash: str
    record: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A record to append: what the caller knows; seq and hashes come from the chain.

    `actor` is who acted: a person's name, or the principal a machine acted as (a run's
    principal), or one of rota's own actors (`rota:...`). `actor_kind` is what acted: `human`
    (a person at the CLI, or an API caller whose token is a user's) or `machine` (a job,
    workflow or agent run, however started; rota's own code), whatever kind of principal it
    acted for. `on_behalf_of` is the principal whose authority the act used; left out, it is
    the actor itself, or no one for rota's own actors."""

    actor: str
    action: str
    actor_kind: str = "machine"
    subject: str | None = None
    run_id: str | None = None
    detail: Mapping[str, Any] | None = None
    at: float | None = None
    on_behalf_of: str | None = None

    def fields(self) -> dict[str, Any]:
        if self.actor_kind not in ACTOR_KINDS:
            raise ConfigError(f"actor_kind must be 'human' or 'machine', got {self.actor_kind!r}")
        if not self.actor or not self.action:
            raise ConfigError("an audit record needs an actor and an action")
        return {
            "id": new_id(),
            "at": float(system_clock.now() if self.at is None else self.at),
            "actor": self.actor,
            "actor_kind": self.actor_kind,
            "on_behalf_of": self.behalf(),
            "action": self.action,
            "subject": self.subject,
            "run_id": self.run_id,
            "detail": canonical_detail(self.detail),
        }

    def behalf(self) -> str | None:
        """The on_behalf_of to store: as given, else the actor (None for `rota:` actors)."""
        if self.on_behalf_of is not None:
            if not isinstance(self.on_behalf_of, str) or not self.on_behalf_of:
                raise ConfigError(
                    f"on_behalf_of must name a principal or be None, got {self.on_behalf_of!r}"
                )
            return self.on_behalf_of
        return None if self.actor.startswith(SYSTEM_ACTOR_PREFIX) else self.actor


def record_hash(fields: Mapping[str, Any]) -> str:
    """sha256 over a canonical JSON (sorted keys, no spaces, ASCII) of the hashed fields.
    `detail` is hashed as its stored text, so any change to that text shows. `on_behalf_of`
    is in it only when set, so records from before it existed keep their hashes."""
    canonical = {
        "seq": int(fields["seq"]),
        "id": fields["id"],
        "at": float(fields["at"]),
        "actor": fields["actor"],
        "actor_kind": fields["actor_kind"],
        "action": fields["action"],
        "subject": fields["subject"],
        "run_id": fields["run_id"],
        "detail": fields["detail"],
        "prev_hash": fields["prev_hash"],
    }
    if fields.get("on_behalf_of") is not None:
        canonical["on_behalf_of"] = fields["on_behalf_of"]
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    """Sorted-key JSON, secret values redacted; one dumps (a worker writes one per run)."""
    return serialization.dumps(dict(detail or {}), what="audit detail", canonical=True)


class AuditQueries(SqlBase):
    def audit(
        self,
        actor: str,
        action: str,
        *,
        actor_kind: str = "machine",
        subject: str | None = None,
        run_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: float | None = None,
        on_behalf_of: str | None = None,
    ) -> AuditRecord:
        """Append one record to the chain and move the head, in one serialised transaction.
        `detail` must never hold secret values (record a secret's name, not its value)."""
        entry = AuditEntry(actor, action, actor_kind, subject, run_id, detail, at, on_behalf_of)
        with self.tx() as conn:
            return self.append_audit(conn, [entry])[0]

    def audit_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append several records in one transaction (how a worker records run starts)."""
        if not entries:
            return []
        with self.tx() as conn:
            return self.append_audit(conn, entries)

    def append_audit(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append inside the caller's transaction, so that a change and its audit record
        commit together or not at all."""
        rows = [entry.fields() for entry in entries]  # validates before taking the lock
        self.dialect.lock(conn, "rota_audit")
        head = self._audit_head(conn) or self._audit_last(conn)
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
        for fields in rows:
            seq += 1
            fields["seq"], fields["prev_hash"] = seq, prev
            fields["hash"] = prev = record_hash(fields)
        self.dialect.insert_many(conn, "rota_audit", _COLUMNS, rows)
        conn.execute(
            """INSERT INTO rota_meta (key, value) VALUES (:key, :value)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
            {"key": HEAD_KEY, "value": json.dumps({"seq": seq, "hash": prev})},
        )
        return [_record(fields) for fields in rows]

    def audit_records(
        self,
        principal: str | None = None,
        since: float | None = None,
        action: str | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[AuditRecord]:
        """Newest first. `principal` matches the actor or whom it acted for; `action` matches
        exactly, or by prefix when it ends with ".*" ("approval.*"); `before_seq` pages on."""
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {"limit": limit}
        if principal:
            where.append("(actor = :principal OR on_behalf_of = :principal)")
            params["principal"] = principal
        if since is not None:
            where.append("at >= :since")
            params["since"] = since
        if before_seq is not None:  # the next page: records older than the last one seen
            where.append("seq < :before")
            params["before"] = before_seq
        if action:
            if action.endswith(".*"):
                where.append("action LIKE :action")
                params["action"] = action[:-1] + "%"
            else:
                where.append("action = :action")
                params["action"] = action
        rows = self.conn().execute(
            f"""SELECT * FROM rota_audit WHERE {" AND ".join(where)}
            ORDER BY seq DESC LIMIT :limit""",
            params,
        )
        return [_record(row) for row in rows]

    def audit_rows(self, after_seq: int, limit: int = 1000) -> list[AuditRecord]:
        """Records in seq order after `after_seq` (for walking the chain in batches)."""
        rows = self.conn().execute(
            "SELECT * FROM rota_audit WHERE seq > :after ORDER BY seq LIMIT :limit",
            {"after": after_seq, "limit": limit},
        )
        return [_record(row) for row in rows]

    def audit_tail(self, after_seq: int) -> tuple[AuditHead | None, list[AuditRecord]]:
        """The head and every record after `after_seq`, read together while appenders are
        held off, so that the two are consistent."""
        with self.tx() as conn:
            self.dialect.lock(conn, "rota_audit")
            head = self._audit_head(conn)
            rows = conn.execute(
                "SELECT * FROM rota_audit WHERE seq > :after ORDER BY seq", {"after": after_seq}
            )
        return head, [_record(row) for row in rows]

    def audit_head(self) -> AuditHead | None:
        return self._audit_head(self.conn())

    def _audit_head(self, conn: Connection) -> AuditHead | None:
        rows = conn.execute("SELECT value FROM rota_meta WHERE key = :key", {"key": HEAD_KEY})
        if not rows:
            return None
        value = json.loads(rows[0]["value"])
        return AuditHead(int(value["seq"]), str(value["hash"]))

    def audit_checkpoint(self) -> Checkpoint | None:
        """The checkpoint the chain starts from; None when nothing was ever pruned."""
        return self.read_checkpoint(self.conn())

    def read_checkpoint(self, conn: Connection) -> Checkpoint | None:
        rows = conn.execute("SELECT value FROM rota_meta WHERE key = :key", {"key": CHECKPOINT_KEY})
        if not rows:
            return None
        value = json.loads(rows[0]["value"])
        return Checkpoint(int(value["seq"]), str(value["hash"]), int(value["record"]))

    def audit_record(self, seq: int) -> AuditRecord | None:
        rows = self.conn().execute("SELECT * FROM rota_audit WHERE seq = :seq", {"seq": seq})
        return _record(rows[0]) if rows else None

    def _audit_last(self, conn: Connection) -> AuditHead | None:
        rows = conn.execute("SELECT seq, hash FROM rota_audit ORDER BY seq DESC LIMIT 1")
        return AuditHead(int(rows[0]["seq"]), rows[0]["hash"]) if rows else None


def _record(row: Row) -> AuditRecord:
    return AuditRecord(
        seq=int(row["seq"]),
        id=row["id"],
        at=float(row["at"]),
        actor=row["actor"],
        actor_kind=row["actor_kind"],
        on_behalf_of=row["on_behalf_of"],
        action=row["action"],
        subject=row["subject"],
        run_id=row["run_id"],
        detail_json=row["detail"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
