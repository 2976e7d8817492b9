"""Routines as files: `routines/*.md`, YAML front matter and the prompt as the body, loaded
into the App's registry beside the Python definitions (docs/routines.md).

A personal routine (`owner:` a user) runs with exactly its owner's scopes; a managed agent
(`run_as:` a service account) runs as that account. Caps are enforced when runs are
enqueued (rota.routines.caps); every run held back is recorded.

The names below are loaded on first use (PEP 562), as in `rota/__init__.py`: every App has
its `Routines` and run caps, but only an App that reads routine files loads the file models
(pydantic), the loader and the agent machinery a routine is built on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy import LazyExports

if TYPE_CHECKING:
    from .caps import Admitted, Caps, RunCaps, RunDropped
    from .errors import Problem, RoutineError
    from .loader import Known, Loaded, Routine, load_dir, load_text
    from .registry import RoutineNotFound, Routines
    from .spec import RoutineSpec, json_schema

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "Admitted": "caps",
    "Caps": "caps",
    "Known": "loader",
    "Loaded": "loader",
    "Problem": "errors",
    "Routine": "loader",
    "RoutineError": "errors",
    "RoutineNotFound": "registry",
    "RoutineSpec": "spec",
    "Routines": "registry",
    "RunCaps": "caps",
    "RunDropped": "caps",
    "json_schema": "spec",
    "load_dir": "loader",
    "load_text": "loader",
}


_lazy = LazyExports(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> Any:
    return _lazy.load(name)


def __dir__() -> list[str]:
    return _lazy.names()


__all__ = [
    "Admitted",
    "Caps",
    "Known",
    "Loaded",
    "Problem",
    "Routine",
    "RoutineError",
    "RoutineNotFound",
    "RoutineSpec",
    "Routines",
    "RunCaps",
    "RunDropped",
    "json_schema",
    "load_dir",
    "load_text",
]
