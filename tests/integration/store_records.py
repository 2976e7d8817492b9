"""Records the storage tests write straight into a store: a queued run and a step checkpoint,
with every field a test does not care about filled in."""

from __future__ import annotations

from typing import Any

from rota.ids import new_id
from rota.model import NewRun, StepRecord

T0 = 1_000_000.0


def new_run(name: str = "job", **kw: Any) -> NewRun:
    """A manual job run queued at T0; keyword arguments replace its fields."""
    fields: dict[str, Any] = {
        "id": new_id(),
        "name": name,
        "kind": "job",
        "payload": "{}",
        "trigger": "manual",
        "created_at": T0,
        "run_after": T0,
    }
    fields.update(kw)
    return NewRun(**fields)


def step(
    run: Any,
    key: str,
    state: str = "SUCCEEDED",
    token: int | None = None,
    result: str | None = "1",
) -> StepRecord:
    """Step `key` of a claimed `run`, written under its lease (or under `token`)."""
    return StepRecord(
        run_id=run.id,
        lease_token=run.lease_token if token is None else token,
        key=key,
        seq=0,
        name=key,
        state=state,
        attempts=1,
        input_hash="h",
        result=result,
        error=None,
        started_at=T0,
        finished_at=T0 + 1,
    )
