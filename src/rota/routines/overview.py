"""What `rota routines list|show` (and the API) say about a routine: who it runs as, with
which scopes, its triggers and caps, and what it cost in the last 30 days under the plan it
is billed under and under every other plan the app declares (the same computation as `rota
cost compare`, over this routine's own runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ..cost.compare import compare
from ..cost.history import HistoryStore, load_history
from ..cost.summary import exact
from ..identity.principals import Principal
from .catalog import Catalog
from .loader import Routine
from .triggers import build as build_trigger

COST_DAYS = 30


def summary(routine: Routine) -> dict[str, Any]:
    """One line of `rota routines list`."""
    spec = routine.spec
    return {
        "name": spec.name,
        "kind": "personal" if spec.personal else "managed",
        "runs_as": spec.principal,
        "mode": spec.mode,
        "model": spec.model,
        "triggers": [describe_trigger(routine, i) for i in range(len(spec.triggers))],
        "billing": spec.billing,
        "file": routine.path,
    }


def describe_trigger(routine: Routine, index: int) -> str:
    spec = routine.spec.triggers[index]
    built = build_trigger(routine.spec.name, spec)
    if built is None:
        return f"api POST /api/routines/{routine.spec.name}/fire"
    return built.describe()


def details(
    routine: Routine,
    principal: Principal | None,
    catalog: Catalog,
    store: HistoryStore,
    now: datetime,
) -> dict[str, Any]:
    """Everything `rota routines show NAME` tells."""
    spec = routine.spec
    found = summary(routine)
    found.update(
        description=spec.description,
        scopes=sorted(principal.scopes) if principal is not None else [],
        principal_exists=principal is not None,
        principal_disabled=bool(principal and principal.disabled),
        tools=list(spec.tools),
        secrets=list(spec.secrets),
        caps=spec.caps.model_dump() if spec.caps else None,
        cooldown=spec.cooldown,
        prompt=routine.prompt,
        cost=cost(routine, catalog, store, now),
    )
    return found


def cost(routine: Routine, catalog: Catalog, store: HistoryStore, now: datetime) -> dict[str, Any]:
    """The routine's runs in the last 30 days under each declared plan, cheapest first;
    `billed` is the plan named by its `billing:` field."""
    since = now - timedelta(days=COST_DAYS)
    history = load_history(store, since, now)
    names = {routine.spec.name, *([routine.spec.job] if routine.spec.job else [])}
    records = [r for r in history.records if r.name in names]
    plans = list(catalog.plans.values())
    base: dict[str, Any] = {
        "since": since.astimezone(UTC).isoformat(),
        "until": now.astimezone(UTC).isoformat(),
        "runs": len(records),
        "billed_under": routine.spec.billing,
        "plans": [],
    }
    if not plans:
        return base
    result = compare(plans, records, history.table, window=history.window)
    base["plans"] = [
        {
            "plan": r.name,
            "kind": r.plan.kind,
            "total_usd": exact(r.total),
            "dropped_runs": len(r.dropped),
            "billed": r.name == routine.spec.billing,
        }
        for r in sorted(result.results, key=lambda r: r.name)
    ]
    return base


def now_utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
