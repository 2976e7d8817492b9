"""The App's routines: the catalog their files may name, the routines loaded from
`routines/*.md`, the problems of the files that did not load, and the run caps policy.

`load(host, directory)` checks every file against what the host has (principals, models,
secrets, plans, jobs, tools) and registers each good routine in the host's own registry, as
an agent definition with its triggers, next to the Python definitions. A bad file is
reported (`problems`, a warning in the log) and the others load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..agents.models.registry import resolve_model
from ..cost.budgets import SharedBudget
from ..errors import ConfigError
from ..jobs import EscalationPolicy, JobDefinition
from ..shadow import shadowing
from .caps import CapStore, RunCaps
from .catalog import Catalog
from .errors import Problem, RoutineError

if TYPE_CHECKING:
    from .build import Built
    from .loader import Loaded, Routine

log = logging.getLogger(__name__)


class RoutineHost(Protocol):
    """What loading routines needs of the App."""

    @property
    def definitions(self) -> dict[str, JobDefinition]: ...

    # Read-only callables rather than methods, so that App's precisely typed keywords fit.
    @property
    def add(self) -> Callable[..., JobDefinition]: ...

    @property
    def budget(self) -> Callable[..., SharedBudget]: ...


class Routines:
    """Routines of one App (`app.routines`); see the module docstring."""

    def __init__(self, directory: Path | None, store: Callable[[], CapStore]) -> None:
        self.directory = directory
        self.catalog = Catalog()
        self.caps = RunCaps(store)
        self.loaded: dict[str, Routine] = {}
        self.built: dict[str, Built] = {}
        self.problems: list[Problem] = []

    # the catalog, as app.routines.tool(...) etc.
    def tool(self, *items: Any, name: str | None = None) -> None:
        self.catalog.tool(*items, name=name)

    def output(self, name: str, model: Any) -> None:
        self.catalog.output(name, model)

    def check(self, name: str, check: Callable[[Any], Any]) -> None:
        self.catalog.check(name, check)

    def plan(self, *plans: Any) -> None:
        self.catalog.plan(*plans)

    def check_files(
        self,
        host: RoutineHost,
        directory: str | Path | None = None,
        *,
        principals: Mapping[str, str] | None = None,
        secrets: Collection[str] | None = None,
    ) -> Loaded:
        """Check every routine file without registering anything (rota routines validate)."""
        # Only an App that reads routine files loads their models and the agent machinery.
        from .loader import Known, load_dir  # noqa: PLC0415  # heavy: pydantic routine models

        where = self._where(directory)
        taken = [n for n, d in host.definitions.items() if n not in self.loaded]
        known = Known(
            tools=self.catalog.tools,
            principals=principals,
            secrets=secrets,
            plans=self.catalog.plans,
            jobs=[n for n, d in host.definitions.items() if d.kind != "agent"],
            outputs=self.catalog.outputs,
            checks=self.catalog.checks,
            taken=taken,
            model_problem=_model_problem,
        )
        return load_dir(where, known)

    def load(
        self,
        host: RoutineHost,
        directory: str | Path | None = None,
        *,
        principals: Mapping[str, str] | None = None,
        secrets: Collection[str] | None = None,
    ) -> Loaded:
        """Check and register every routine file of the directory (see the module doc)."""
        if self.loaded:
            raise ConfigError("routines are loaded once per App (rota dev reloads the process)")
        loaded = self.check_files(host, directory, principals=principals, secrets=secrets)
        good = []
        for routine in loaded.routines:
            try:
                self._register(host, routine)
            except ConfigError as exc:  # e.g. a trigger the scheduler refuses
                loaded.problems.append(Problem(routine.path, 1, 1, str(exc)))
                continue
            good.append(routine)
        loaded.routines = good
        self.problems = loaded.problems
        for problem in loaded.problems:
            log.warning("routine not loaded: %s", problem)
        return loaded

    def _where(self, directory: str | Path | None) -> Path:
        where = Path(directory) if directory is not None else self.directory
        if where is None:
            raise ConfigError("no routines directory: pass App(routines_dir=...)")
        return where

    def _register(self, host: RoutineHost, routine: Routine) -> None:
        from .build import build  # noqa: PLC0415  # heavy: pydantic routine models, agentloop

        spec = routine.spec
        hot_path = spec.job if spec.mode == "hybrid" else None
        built = build(routine, self.catalog, capped_name=hot_path)
        alerts: dict[str, Any] = {} if built.alerts is None else {"alerts": built.alerts}
        if hot_path is None:
            host.add(
                built.fn,
                kind="agent",
                name=spec.name,
                trigger=list(built.triggers),
                run_as=spec.principal,
                timeout=spec.timeout,
                **alerts,
            )
        else:
            host.add(built.fn, kind="agent", name=spec.name, run_as=spec.principal, **alerts)
            job = host.definitions[hot_path]  # the hot path: the file's triggers fire it
            host.definitions[hot_path] = replace(
                job,
                triggers=(*job.triggers, *built.triggers),
                escalation=EscalationPolicy(spec.name),
            )
        if spec.shadow is not None and spec.shadow.job is not None:
            _shadow_job(host, spec.shadow.job, spec.name, spec.shadow.sample or 0.0)
        if built.per_day is not None:
            host.budget(
                agent=spec.name,
                usd=built.per_day.usd,
                tokens=built.per_day.tokens,
                per="day",
            )
        if built.caps is not None:
            self.caps.set(built.caps)
        self.loaded[spec.name] = routine
        self.built[spec.name] = built

    def get(self, name: str) -> Routine:
        try:
            return self.loaded[name]
        except KeyError:
            known = ", ".join(sorted(self.loaded)) or "none are loaded"
            raise RoutineNotFound(f"no routine named {name!r} (routines: {known})") from None


def _shadow_job(host: RoutineHost, job_name: str, routine: str, sample: float) -> None:
    """`shadow: {job, sample}`: a sampled share of the items the job handles itself is also
    given to the routine in shadow mode (rota.shadow), its answer compared with the job's;
    the job's escalations (a hybrid routine's) go to the routine as before."""
    job = host.definitions[job_name]
    shadowed = job.escalation is not None and job.escalation.shadow > 0
    host.definitions[job_name] = replace(
        job,
        fn=job.fn if shadowed else shadowing(job.fn),
        escalation=EscalationPolicy(routine, sample),
    )


class RoutineNotFound(ConfigError, LookupError):
    """No loaded routine has this name."""


def _model_problem(model: str) -> str | None:
    """Why a model string does not resolve (an unknown provider or model, a missing API
    key), or None."""
    try:
        resolve_model(model)
    except ConfigError as exc:
        return str(exc)
    return None


__all__ = ["RoutineError", "Routines"]
