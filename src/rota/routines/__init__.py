"""Routines as files: `routines/*.md`, YAML front matter and the prompt as the body, loaded
into the App's registry beside the Python definitions (docs/routines.md).

A personal routine (`owner:` a user) runs with exactly its owner's scopes; a managed agent
(`run_as:` a service account) runs as that account. Caps are enforced when runs are
enqueued (rota.routines.caps); every run held back is recorded.
"""

from .caps import Admitted, Caps, RunCaps, RunDropped
from .errors import Problem, RoutineError
from .loader import Known, Loaded, Routine, load_dir, load_text
from .registry import RoutineNotFound, Routines
from .spec import RoutineSpec, json_schema

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
