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

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """Import a public name's submodule the first time the name is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # next time, a plain attribute: __getattr__ is not called again
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
