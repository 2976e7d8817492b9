"""The audit log: who did what, human or machine, on whose behalf; append-only, hash-chained.

What acted decides `actor_kind`, not the kind of principal: a person at the CLI (or an API
caller with a user's token) is `human`; a run (job, workflow, agent), however it was
started, is `machine`, also when it acts for a user. `on_behalf_of` names the
principal whose authority was used (see storage.audit.AuditEntry).

`record(store, actor, action, ...)` appends; `verify_chain(store)` walks the chain and names
every record that was edited or deleted. See storage/audit.py for the chain's layout and
the action names (`RUN_STARTED`, `APPROVAL_GRANTED`, ...).

Who writes what (docs/identity.md has the table): the worker (run.started, run.refused,
batched), the agent tool guards (tool.called, tool.denied), the vault (secret.read,
secret.denied), principal and token changes (with the change, in one transaction), the API
(auth.denied), the CLI (run.requested, secret.changed); approvals and budgets add theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..storage.audit import (
    AUDIT_PRUNED,
    GENESIS_HASH,
    AuditHead,
    AuditRecord,
    Checkpoint,
    record_hash,
)
from ..storage.base import AuditLog

_BATCH = 1000


def record(
    store: AuditLog,
    actor: str,
    action: str,
    *,
    actor_kind: str = "machine",
    subject: str | None = None,
    run_id: str | None = None,
    on_behalf_of: str | None = None,
    **detail: Any,
) -> AuditRecord:
    """Append one audit record; keyword arguments beyond the named ones become its detail.
    `on_behalf_of` left out is the actor itself (no one for rota's own `rota:` actors).
    Never pass a secret's value: name the secret instead."""
    return store.audit(
        actor,
        action,
        actor_kind=actor_kind,
        subject=subject,
        run_id=run_id,
        detail=detail,
        on_behalf_of=on_behalf_of,
    )


@dataclass(frozen=True)
class Problem:
    check: str  # "hash" | "link" | "missing" | "head" | "checkpoint"
    message: str
    seq: int | None = None
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "seq": self.seq, "id": self.id, "message": self.message}


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    problems: list[Problem] = field(default_factory=list)
    head: AuditHead | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head": None if self.head is None else {"seq": self.head.seq, "hash": self.head.hash},
            "problems": [p.to_json() for p in self.problems],
        }


def verify_chain(store: AuditLog) -> VerifyReport:
    """Walk the chain in seq order and report every break:

    - a record whose stored hash is not the hash of its fields was edited ("hash");
    - a record whose prev_hash is not the previous record's hash: one of the two was edited
      or replaced ("link");
    - a gap in seq: those records were deleted ("missing");
    - the chain's end differs from the head kept in rota_meta: the last records were deleted,
      records were added outside rota, or the head itself was removed ("head"). This is the
      only way to see that the LAST record was deleted; a chain alone cannot show it.
    - once retention pruned the oldest records, the walk starts at the checkpoint (the last
      pruned record's seq and hash) and checks it against the `audit.pruned` record that
      announced it, itself in the chain ("checkpoint"): a checkpoint moved by hand to hide
      deleted records does not match it.

    Records are read in batches without holding appenders off; the last stretch and the
    head are read together under the appenders' lock so that concurrent appends are not
    mistaken for tampering.
    """
    walker = _Walker()
    checkpoint = store.audit_checkpoint()
    if checkpoint is not None:
        walker.start_at(checkpoint, store.audit_record(checkpoint.record))
    while True:
        batch = store.audit_rows(walker.last_seq, _BATCH)
        for rec in batch:
            walker.check(rec)
        if len(batch) < _BATCH:
            break
    head, tail = store.audit_tail(walker.last_seq)
    for rec in tail:
        walker.check(rec)
    walker.check_head(head)
    return VerifyReport(not walker.problems, walker.checked, walker.problems, head)


class _Walker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.checked = 0
        self.last_seq = 0
        self.start_hash = GENESIS_HASH  # or the checkpoint's, when records were pruned
        self.last: AuditRecord | None = None

    def start_at(self, checkpoint: Checkpoint, announced: AuditRecord | None) -> None:
        """Walk on from a pruning checkpoint, after checking the record that announced it."""
        self.last_seq = checkpoint.seq
        self.start_hash = checkpoint.hash
        detail = announced.detail if announced is not None else None
        if (
            announced is None
            or announced.action != AUDIT_PRUNED
            or not isinstance(detail, dict)
            or detail.get("through_seq") != checkpoint.seq
            or detail.get("through_hash") != checkpoint.hash
        ):
            self.problems.append(
                Problem(
                    "checkpoint",
                    f"the pruning checkpoint (seq {checkpoint.seq}) does not match the "
                    f"audit.pruned record seq {checkpoint.record} that should announce it: "
                    "the checkpoint or that record was edited or deleted",
                    checkpoint.record,
                )
            )

    def check(self, rec: AuditRecord) -> None:
        self.checked += 1
        name = f"record seq {rec.seq} (id {rec.id})"
        if record_hash(rec.hashed_fields()) != rec.hash:
            self.problems.append(
                Problem("hash", f"{name} was edited: hash mismatch", rec.seq, rec.id)
            )
        expected = self.last_seq + 1
        if rec.seq > expected:
            self.problems.append(_missing(expected, rec.seq - 1, after=rec))
        else:
            prev_hash = self.last.hash if self.last is not None else self.start_hash
            if rec.prev_hash != prev_hash:
                before = (
                    f"record seq {self.last.seq}"
                    if self.last is not None
                    else "the genesis hash"
                    if self.last_seq == 0
                    else f"the pruning checkpoint (seq {self.last_seq})"
                )
                self.problems.append(
                    Problem(
                        "link",
                        f"{name} was edited or the record before it was: its prev_hash does "
                        f"not match the hash of {before}",
                        rec.seq,
                        rec.id,
                    )
                )
        self.last_seq, self.last = rec.seq, rec

    def check_head(self, head: AuditHead | None) -> None:
        last = self.last
        if head is None:
            if last is not None:
                self.problems.append(
                    Problem(
                        "head",
                        f"the audit head is missing from rota_meta (key audit_head) although "
                        f"the log holds records up to seq {last.seq}: it was deleted",
                    )
                )
            return
        if last is None and head.seq == self.last_seq and head.hash == self.start_hash:
            return  # every record was pruned; the head is the checkpoint
        if last is None or last.seq < head.seq:
            first = self.last_seq + 1 if last is None else last.seq + 1
            self.problems.append(_missing(first, head.seq, after=None, check="head"))
        elif last.seq > head.seq:
            self.problems.append(
                Problem(
                    "head",
                    f"record seq {last.seq} (id {last.id}) is past the recorded head (seq "
                    f"{head.seq}): records were added or renumbered outside rota",
                    last.seq,
                    last.id,
                )
            )
        elif last.hash != head.hash:
            self.problems.append(
                Problem(
                    "head",
                    f"record seq {last.seq} (id {last.id}) was edited or replaced: its hash "
                    "does not match the recorded head",
                    last.seq,
                    last.id,
                )
            )


def _missing(
    first: int, last: int, *, after: AuditRecord | None, check: str = "missing"
) -> Problem:
    what = f"record seq {first} is" if first == last else f"records seq {first} to {last} are"
    where = (
        f" (before record seq {after.seq}, id {after.id})"
        if after is not None
        else " (at the end of the log; the head records them)"
    )
    return Problem(check, f"{what} missing (deleted){where}", first)


__all__ = [
    "AuditHead",
    "AuditRecord",
    "Problem",
    "VerifyReport",
    "record",
    "verify_chain",
]
