"""Read routine files: `routines/*.md`, YAML front matter between `---` lines, then the prompt.

Every problem is reported as `file:line:column: what is wrong, what is allowed`, using the
YAML node marks to find where a field is. All problems of all files are collected: a bad
file is reported and skipped, the good ones load (`Loaded.routines`, `Loaded.problems`).
Nothing a file holds makes the loader raise anything but RoutineError (property-tested).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from ..errors import ConfigError
from . import triggers
from .errors import Problem, RoutineError
from .spec import TRIGGER_MODELS, RoutineSpec

if TYPE_CHECKING:
    import yaml

Path_ = tuple[str | int, ...]
FENCE = "---"
MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Routine:
    """A routine file, checked: its front matter, its prompt and where it came from."""

    spec: RoutineSpec
    prompt: str
    path: str
    name_at: tuple[int, int] = (1, 1)  # line and column of its name, for problems

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Known:
    """What names in a routine file may refer to; a collection left as None is not checked
    (e.g. secrets when no store is at hand). `model_problem` says what is wrong with a
    model string, or None when it resolves."""

    tools: Collection[str] = ()
    principals: Mapping[str, str] | None = None  # name -> kind ("user" | "service")
    secrets: Collection[str] | None = None
    plans: Collection[str] = ()
    jobs: Collection[str] = ()
    outputs: Collection[str] = ()
    checks: Collection[str] = ()
    taken: Collection[str] = ()  # names of Python definitions: a routine may not reuse one
    model_problem: Callable[[str], str | None] = field(default=lambda _model: None)
    check_names: bool = True  # False: syntax and fields only (rota dev's look at changes)


@dataclass
class Loaded:
    routines: list[Routine]
    problems: list[Problem]

    def raise_for_problems(self) -> None:
        if self.problems:
            raise RoutineError(self.problems)


def load_dir(directory: str | Path, known: Known) -> Loaded:
    """Every `*.md` file of `directory`, in name order; a missing directory holds none."""
    root = Path(directory)
    files = sorted(root.glob("*.md")) if root.is_dir() else []
    loaded = Loaded([], [])
    names: dict[str, str] = {}
    for path in files:
        try:
            text = path.read_bytes()[:MAX_BYTES].decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            loaded.problems.append(Problem(str(path), 1, 1, f"cannot read the file: {exc}"))
            continue
        routine, problems = parse(text, str(path), known)
        if routine is not None and routine.name in names:
            line, col = routine.name_at
            problems.append(
                Problem(
                    str(path),
                    line,
                    col,
                    f"routine name {routine.name!r} is used by {names[routine.name]} too; "
                    "names must be unique",
                )
            )
            routine = None
        loaded.problems.extend(problems)
        if routine is not None:
            names[routine.name] = str(path)
            loaded.routines.append(routine)
    return loaded


def parse(text: str, file: str, known: Known) -> tuple[Routine | None, list[Problem]]:
    """One routine file's text: the routine, or None and the problems found."""
    import yaml  # noqa: PLC0415  # heavy: PyYAML, only to read a routine file

    front, body, body_line = _split(text)
    if front is None:
        return None, [
            Problem(
                file,
                1,
                1,
                "a routine file starts with a '---' line, then YAML front matter, then a "
                "'---' line, then the prompt",
            )
        ]
    try:
        node = yaml.compose(front, Loader=yaml.SafeLoader)
        data = yaml.load(front, Loader=yaml.SafeLoader)  # SafeLoader: no objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 2, mark.column + 1) if mark is not None else (2, 1)
        what = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(file, line, col, f"YAML syntax error: {what}")]
    except Exception as exc:  # yaml raises ValueError and more on odd scalars
        return None, [Problem(file, 2, 1, f"the front matter is not valid YAML: {exc}")]
    where = _Where(file, node)
    if not isinstance(data, dict):
        return None, [where.at((), "the front matter must be a mapping of fields, e.g. name: x")]
    try:
        spec = RoutineSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        found = _validation_problems(where, exc) + _check_names(where, data, None, known)
        return None, sorted(found, key=lambda p: (p.line, p.column))
    prompt = body.strip()
    problems = _check_names(where, data, spec, known)
    if not prompt:
        problems.append(
            Problem(file, body_line, 1, "the prompt is empty: write it below the closing '---'")
        )
    if problems:
        return None, problems
    name_at = where.at(("name",), "")
    return Routine(spec, prompt, file, (name_at.line, name_at.column)), []


def _split(text: str) -> tuple[str | None, str, int]:
    """(front matter, body, the body's first line number); front None: no front matter."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r ") != FENCE:
        return None, "", 1
    for index in range(1, len(lines)):
        if lines[index].rstrip("\r ") == FENCE:
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :]), index + 2
    return None, "", 1


class _Where:
    """Finds the line and column of a field path in the front matter's YAML nodes."""

    def __init__(self, file: str, node: yaml.Node | None) -> None:
        self.file = file
        self.node = node

    def at(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        node, found_key = self.node, None
        for part in path:
            child, child_key = _child(node, part)
            if child is None:
                break
            node, found_key = child, child_key
        target = found_key if key and found_key is not None else node
        mark = target.start_mark if target is not None else None
        line, col = (mark.line + 2, mark.column + 1) if mark is not None else (2, 1)
        return Problem(self.file, line, col, message)


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    import yaml  # noqa: PLC0415  # heavy: PyYAML, only to read a routine file

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                return v, k
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return node.value[part], None
    return None, None


def _validation_problems(where: _Where, exc: pydantic.ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[Path_] = set()
    for error in exc.errors():
        path = _data_path(where, error["loc"])
        if path in seen:  # a union reports each member's failure: the first one says it
            continue
        seen.add(path)
        problems.append(_problem(where, path, error, error["loc"]))
    return sorted(problems, key=lambda p: (p.line, p.column))


def _data_path(where: _Where, loc: tuple[int | str, ...]) -> Path_:
    """The error's location less pydantic's union member tags (which are not in the file)."""
    import yaml  # noqa: PLC0415  # heavy: PyYAML, only to read a routine file

    path: list[str | int] = []
    node = where.node
    for part in loc:
        child, _ = _child(node, part)
        if child is None and not (isinstance(node, yaml.MappingNode) and part == loc[-1]):
            continue
        path.append(part)
        node = child
    return tuple(path)


def _problem(where: _Where, path: Path_, error: Any, loc: tuple[int | str, ...]) -> Problem:
    kind = error["type"]
    dotted = _dotted(path)
    if kind == "extra_forbidden":
        allowed = _allowed(loc)
        hint = _did_you_mean(str(path[-1]) if path else "", allowed)
        return where.at(
            path,
            f"unknown field {dotted!r}{hint}; allowed here: {', '.join(allowed)}",
            key=True,
        )
    if kind == "missing":
        return where.at(path[:-1], f"field {dotted!r} is required")
    if kind == "trigger_kind":
        return where.at(path, f"field {dotted!r}: {error['msg']}")
    if kind == "value_error" and not path:
        return where.at(path, str(error["msg"]).removeprefix("Value error, "))
    message = str(error["msg"]).removeprefix("Value error, ")
    return where.at(path, f"field {dotted!r}: {message}" + _got(error))


def _got(error: Any) -> str:
    value = error.get("input")
    if isinstance(value, dict | list) or error["type"] == "missing":
        return ""
    return f", got {value!r}"[:160]


def _allowed(loc: tuple[int | str, ...]) -> list[str]:
    """The fields allowed in the mapping that holds the last part of pydantic's `loc`."""
    model: Any = RoutineSpec
    for part in loc[:-1]:
        if isinstance(part, str) and part in TRIGGER_MODELS:  # a union member's tag
            model = TRIGGER_MODELS[part]
            continue
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:  # a list index, a dict key: the same model goes on
            continue
        found = _models_in(info.annotation)
        model = found[0] if len(found) == 1 else model
    return [f.alias or n for n, f in model.model_fields.items()]


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models a field's type holds, through list[...], X | None, Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[Any] = []
    for arg in getattr(annotation, "__args__", ()):
        found += _models_in(arg)
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and not getattr(annotation, "__args__", ()):
        found += _models_in(origin)
    return found


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(front matter)"


def _did_you_mean(word: str, allowed: Collection[str]) -> str:
    """` (did you mean 'x'?)`: a swap of letters first (modle: model), else the closest."""
    swapped = [a for a in allowed if sorted(a) == sorted(word)]
    close = swapped or difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _texts(data: Mapping[str, Any], key: str) -> list[tuple[int, str]]:
    value = data.get(key)
    items = value if isinstance(value, list) else []
    return [(i, v) for i, v in enumerate(items) if isinstance(v, str)]


def _check_names(
    where: _Where, data: Mapping[str, Any], spec: RoutineSpec | None, known: Known
) -> list[Problem]:
    """Names that must refer to something the app has: tools, principals, models, secrets,
    plans, jobs, output models and checks. Read from the raw front matter, so that a file
    whose fields do not validate still has its names checked (all problems at once);
    triggers are checked once the fields validate (`spec`)."""
    problems: list[Problem] = []
    if not known.check_names:
        return problems

    def unknown(path: Path_, what: str, name: str, allowed: Collection[str]) -> None:
        listed = ", ".join(sorted(allowed)) or "none are registered"
        problems.append(
            where.at(
                path, f"unknown {what} {name!r}{_did_you_mean(name, allowed)}; known: {listed}"
            )
        )

    name = _text(data, "name")
    if name is not None and name in known.taken:
        problems.append(
            where.at(("name",), f"name {name!r} is already a Python job, workflow or agent")
        )
    for field_name in ("owner", "run_as"):
        principal = _text(data, field_name)
        if principal is not None:
            _check_principal(where, field_name, principal, known, problems, unknown)
    model = _text(data, "model")
    model_problem = None if model is None else known.model_problem(model)
    if model_problem is not None:
        problems.append(where.at(("model",), f"model {model!r}: {model_problem}"))
    tools = _texts(data, "tools")
    for i, tool in tools:
        if tool not in known.tools:
            unknown(("tools", i), "tool", tool, known.tools)
    if known.secrets is not None:
        for i, secret in _texts(data, "secrets"):
            if secret not in known.secrets:
                unknown(("secrets", i), "secret", secret, known.secrets)
    for key, what, allowed in (
        ("billing", "plan", known.plans),
        ("job", "job", known.jobs),
        ("output", "output model", known.outputs),
        ("success", "success check", known.checks),
    ):
        value = _text(data, key)
        if value is not None and value not in allowed:
            unknown((key,), what, value, allowed)
    shadow = data.get("shadow")
    shadowed = shadow.get("job") if isinstance(shadow, dict) else None
    if isinstance(shadowed, str) and shadowed not in known.jobs:
        unknown(("shadow", "job"), "job", shadowed, known.jobs)
    for source in ("output", "success"):
        schema = data.get(source)
        if isinstance(schema, dict):
            import jsonschema  # noqa: PLC0415  # heavy: jsonschema (referencing, attrs, rpds): only for routines with a schema

            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                message = f"field {source!r} is not a valid JSON Schema: {exc.message}"
                problems.append(where.at((source,), message))
            except Exception as exc:  # a schema jsonschema cannot even read
                problems.append(where.at((source,), f"field {source!r}: {exc}"))
    if spec is not None:
        problems += _check_spec(where, spec, unknown)
    return problems


def _check_spec(
    where: _Where, spec: RoutineSpec, unknown: Callable[[Path_, str, str, Collection[str]], None]
) -> list[Problem]:
    """What needs validated fields: triggers the scheduler accepts, approval rules over
    tools the routine has."""
    problems: list[Problem] = []
    for i, trigger in enumerate(spec.triggers):
        try:
            triggers.build(spec.name, trigger)
        except ConfigError as exc:
            problems.append(where.at(("triggers", i), f"field 'triggers[{i}]': {exc}"))
    for i, rule in enumerate(spec.approval):
        for j, tool in enumerate(rule.tools):
            if tool not in spec.tools:
                unknown(
                    ("approval", i, "tools", j),
                    "tool (not in this routine's tools)",
                    tool,
                    spec.tools,
                )
    return problems


def _check_principal(
    where: _Where,
    field_name: str,
    name: str,
    known: Known,
    problems: list[Problem],
    unknown: Callable[[Path_, str, str, Collection[str]], None],
) -> None:
    if known.principals is None:
        return
    wanted = "user" if field_name == "owner" else "service"
    kind = known.principals.get(name)
    if kind is None:
        of_kind = [n for n, k in known.principals.items() if k == wanted]
        unknown((field_name,), f"{wanted} principal", name, of_kind)
    elif kind != wanted:
        problems.append(
            where.at(
                (field_name,),
                f"{field_name} must name a {wanted} principal, and {name!r} is a {kind}: "
                + (
                    "use run_as for a service account (a managed agent)"
                    if field_name == "owner"
                    else "use owner for a user (a personal routine)"
                ),
            )
        )


def load_text(text: str, file: str = "routine.md", known: Known | None = None) -> Routine:
    """One routine from text; RoutineError listing every problem."""
    routine, problems = parse(text, file, known or Known())
    if routine is None:
        raise RoutineError(problems)
    return routine
