"""Tools: Python functions an agent may call, described to the model by a JSON Schema.

`@tool` reads the function's type hints and docstring once, at definition time, and builds a
pydantic model of its parameters. That model is both the schema the model sees and the
validator its arguments go through before the function runs: a model that sends bad
arguments, or a tool that raises, gets an error result back and can correct itself; the run
does not crash.

`scopes` and `requires_approval` are recorded on the tool but not enforced here: enforcement
is a `ToolGuard` (a callable run before each call, which refuses by raising `ToolDenied`), so
that permissions and approvals wrap the tool call instead of living inside the agent loop.

A `ToolMiddleware` is the general form of a guard: it wraps one tool call whose arguments
validated, sees the result, and decides whether and how the call goes on (`run_tool`). A
guard is the middleware `guarded(guard)`.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, overload

import pydantic
import pydantic_core

from ..calls import call_user
from ..durations import Duration, optional_seconds
from ..errors import ConfigError, RotaError, StoreLost, StoreUnavailable
from ..identity.principals import approver_groups
from ..redaction import redactor
from ..storage.approval_records import ApprovalDecision
from .types import ToolCall, ToolResult, ToolSpec

DepsT = TypeVar("DepsT")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what both Anthropic and OpenAI accept


@dataclass(frozen=True)
class ToolContext(Generic[DepsT]):
    """What a tool may know about the call it serves. Declare it as the tool's first
    parameter (`def refund(ctx: ToolContext[Deps], amount_cents: int)`); it is not part of
    the schema the model sees.

    `idempotency_key` is stable across re-executions of the same tool call: a run that
    resumes after a crash in the middle of this call runs it again with the same key, so
    a side effect can be de-duplicated downstream. `run_id` is None when the agent was
    called directly (no durable run).
    """

    deps: DepsT
    run_id: str | None
    principal: str | None
    idempotency_key: str
    agent: str
    tool: str
    call_id: str
    secrets: Callable[[str], str] | None = None
    approval: ApprovalDecision | None = None
    """The decision of the human who approved this call, when it needed approval."""

    def secret(self, name: str) -> str:
        """The value of secret `name`, if the run's principal is granted it (see
        `rota secrets set NAME --grant PRINCIPAL`). The read is audited and the value is
        redacted from everything rota stores, logs or sends to a model afterwards."""
        if self.secrets is None:
            raise RotaError(
                f"tool {self.tool!r} asked for secret {name!r} outside a durable run; secrets "
                "are handed to tools of agents run by a worker (app.agent or ctx.agent)"
            )
        return self.secrets(name)


class ToolDenied(RotaError):
    """Raised by a ToolGuard to refuse a call; the model is told the reason."""


ToolGuard = Callable[["Tool", dict[str, Any], ToolContext[Any]], "Awaitable[None] | None"]
"""Checked before every tool call with the validated arguments; raise ToolDenied to refuse.

The hook for scope checks (deny by default) and approval gates, which arrive with the
identity and approvals work; agents take a list of them (`Agent(tool_guards=[...])`)."""


ApprovalRule = bool | Callable[[dict[str, Any]], Any]
"""`requires_approval`: always (True), never (False), or per call: a function of the call's
validated arguments, e.g. `lambda args: args["amount_cents"] > 10_000` (see approvals/gate.py)."""


class Tool:
    """A function plus what the model needs to know to call it. Calling the Tool object
    calls the function unchanged, so decorated functions stay usable in plain code."""

    # Defaults for tools not made by __init__ (MCP tools): admins decide, within a day.
    approvers: tuple[str, ...] = ()
    approval_timeout_s: float | None = 86400.0

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        scopes: Sequence[str] = (),
        requires_approval: ApprovalRule = False,
        read_only: bool = False,
        approvers: str | Sequence[str] | None = None,
        approval_timeout: Duration | None = "1d",
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME.match(self.name):
            raise ConfigError(
                f"tool name {self.name!r} is not allowed: use 1-64 letters, digits, '_' or '-' "
                "(pass name='...' to @tool)"
            )
        if isinstance(scopes, str):
            raise ConfigError(f"tool {self.name}: scopes must be a list, e.g. scopes=[{scopes!r}]")
        self.scopes: tuple[str, ...] = tuple(scopes)
        self.requires_approval: ApprovalRule = (
            requires_approval if callable(requires_approval) else bool(requires_approval)
        )
        self.approvers = approver_groups(approvers, what=f"tool {self.name}")
        self.approval_timeout_s = optional_seconds(
            approval_timeout, what=f"tool {self.name} approval_timeout"
        )
        self.read_only = bool(read_only)  # changes nothing: shadow runs may call it
        summary, param_docs = parse_docstring(fn.__doc__)
        self.description = summary
        self.takes_context, self._params, self.args_model = _arguments_model(
            fn, self.name, param_docs
        )
        self.spec = ToolSpec(self.name, summary, _clean_schema(self.args_model.model_json_schema()))
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the function's parameters, validated and converted; raises
        pydantic.ValidationError."""
        parsed = self.args_model.model_validate(arguments)
        return {param: getattr(parsed, field) for field, param in self._params}

    async def run(
        self,
        call: ToolCall,
        context: ToolContext[Any],
        guards: Sequence[ToolGuard] = (),
    ) -> ToolResult:
        """Validate, check the guards, call. Every failure becomes an error result for the
        model; only control flow (cancellation, a lost lease) propagates."""
        return await run_tool(self, call, context, [guarded(g) for g in guards])

    async def invoke(
        self, call: ToolCall, context: ToolContext[Any], values: dict[str, Any]
    ) -> ToolResult:
        """Call the function with arguments that passed validation and the guards."""
        args = (context,) if self.takes_context else ()
        try:
            value = await call_user(self.fn, args, values, timeout=None, what=f"tool {self.name}")
        except StoreUnavailable as exc:  # rota's own database, not the tool, failed
            raise StoreLost(exc) from exc
        except Exception as exc:
            text = f"tool {self.name!r} failed: {_describe(exc)}"
            return ToolResult(call.id, redactor.redact(text), True)
        return ToolResult(call.id, redactor.redact(render(value)))

    def renamed(self, name: str) -> Tool:
        """The same tool under another name (how a tool source's tool avoids a clash)."""
        clone = copy.copy(self)
        clone.name = name
        clone.spec = dataclasses.replace(self.spec, name=name)
        return clone

    def _invalid(self, exc: pydantic.ValidationError) -> str:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "missing" and e["loc"] else "")
            for e in exc.errors(include_url=False)
        )
        return (
            f"invalid arguments for tool {self.name!r}: {problems}. "
            "Call it again with arguments that match its schema."
        )


# -- tool middleware ---------------------------------------------------------------------


@dataclass(frozen=True)
class ToolInvocation:
    """One call of a tool whose arguments validated, as tool middleware sees it."""

    tool: Tool
    call: ToolCall
    context: ToolContext[Any]
    values: dict[str, Any]
    """The validated arguments, as the function's parameters."""


CallNext = Callable[[ToolInvocation], Awaitable[ToolResult]]
"""The rest of the chain: the next middleware, then the tool itself (`Tool.invoke`)."""


class ToolMiddleware(Protocol):
    """Around one tool call whose arguments validated. Refuse by raising (ToolDenied, or any
    error: fail closed, the model reads "tool X was not run: ..."); otherwise
    `return await call_next(inv)`, possibly with a changed invocation
    (`dataclasses.replace(inv, context=...)`), and look at or change the result. Only
    control flow (cancellation, a parked run) should pass through as a BaseException."""

    async def __call__(self, inv: ToolInvocation, call_next: CallNext, /) -> ToolResult: ...


def guarded(guard: ToolGuard) -> ToolMiddleware:
    """A ToolGuard as middleware: the guard runs first and refuses by raising."""

    async def middleware(inv: ToolInvocation, call_next: CallNext, /) -> ToolResult:
        try:
            outcome = guard(inv.tool, inv.values, inv.context)
            if inspect.isawaitable(outcome):
                await outcome
        except StoreUnavailable as exc:  # rota's own database, not the guard, failed
            raise StoreLost(exc) from exc
        except Exception as exc:  # a failing guard refuses: fail closed
            return _not_run(inv, exc)
        return await call_next(inv)

    return middleware


async def run_tool(
    tool: Tool,
    call: ToolCall,
    context: ToolContext[Any],
    middleware: Sequence[ToolMiddleware] = (),
) -> ToolResult:
    """Validate the arguments (an error result when they do not), then run the middleware,
    outermost first, around `Tool.invoke`. Every failure becomes an error result for the
    model; only control flow (cancellation, a lost lease) propagates."""
    try:
        values = tool.validate(call.arguments if isinstance(call.arguments, dict) else {})
    except pydantic.ValidationError as exc:
        return ToolResult(call.id, tool._invalid(exc), is_error=True)
    chain: CallNext = _invoke
    for layer in reversed(middleware):
        chain = _wrap(layer, chain)
    return await chain(ToolInvocation(tool, call, context, values))


async def _invoke(inv: ToolInvocation) -> ToolResult:
    return await inv.tool.invoke(inv.call, inv.context, inv.values)


def _wrap(layer: ToolMiddleware, call_next: CallNext) -> CallNext:
    async def handler(inv: ToolInvocation) -> ToolResult:
        ran = False

        async def inner(next_inv: ToolInvocation) -> ToolResult:
            nonlocal ran
            ran = True
            return await call_next(next_inv)

        try:
            return await layer(inv, inner)
        except StoreUnavailable as exc:  # rota's own database, not the middleware, failed
            raise StoreLost(exc) from exc
        except Exception as exc:  # a failing middleware: fail closed
            if not ran:
                return _not_run(inv, exc)
            text = f"tool {inv.tool.name!r} failed: {_describe(exc)}"
            return ToolResult(inv.call.id, redactor.redact(text), is_error=True)

    return handler


def _not_run(inv: ToolInvocation, exc: BaseException) -> ToolResult:
    text = f"tool {inv.tool.name!r} was not run: {_describe(exc)}"
    return ToolResult(inv.call.id, text, is_error=True)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    scopes: Sequence[str] = (),
    requires_approval: ApprovalRule = False,
    name: str | None = None,
    read_only: bool = False,
    approvers: str | Sequence[str] | None = None,
    approval_timeout: Duration | None = "1d",
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    scopes: Sequence[str] = (),
    requires_approval: ApprovalRule = False,
    name: str | None = None,
    read_only: bool = False,
    approvers: str | Sequence[str] | None = None,
    approval_timeout: Duration | None = "1d",
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function callable by agents: `@tool` or `@tool(scopes=["billing:write"])`.

    The schema comes from the type hints; the docstring's first paragraph describes the
    tool, and its `Args:` section (Google, NumPy or Sphinx style) describes the parameters.
    `read_only=True` declares that it changes nothing, so shadow runs may call it.
    `requires_approval=True` (or a function of the call's arguments) parks the run until a
    principal with the role `approver:<group>` of one of `approvers` (or an admin) decides;
    nobody deciding within `approval_timeout` counts as a rejection (docs/approvals.md).
    """

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(
            f,
            name=name,
            scopes=scopes,
            requires_approval=requires_approval,
            read_only=read_only,
            approvers=approvers,
            approval_timeout=approval_timeout,
        )

    return make(fn) if fn is not None else make


class ToolSource:
    """Tools that exist only while a run holds them open, such as an MCP server's
    (`rota.agents.mcp`). `Agent(tools=[...])` takes sources beside tools; every run opens
    each source for itself when it starts (listing its tools) and closes it when it ends, so
    two runs never share a connection.

    `open()` yields the source's name and its tools. A tool keeps its own name unless
    another tool of the agent has it too; then it is called `SOURCE__TOOL`.
    """

    def open(self) -> AbstractAsyncContextManager[tuple[str, Sequence[Tool]]]:
        raise NotImplementedError


@contextlib.asynccontextmanager
async def open_tool_sources(
    agent: str, tools: dict[str, Tool], sources: Sequence[ToolSource]
) -> AsyncIterator[dict[str, Tool]]:
    """The agent's tools plus those of its open sources, for one run; closes the sources
    when the block ends, however it ends."""
    async with contextlib.AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(source.open()) for source in sources]
        names = collections.Counter([*tools, *(t.name for _, ts in opened for t in ts)])
        merged = dict(tools)
        for prefix, source_tools in opened:
            for t in source_tools:
                name = t.name if names[t.name] == 1 else f"{prefix}__{t.name}"
                if name in merged or not _NAME.match(name):
                    raise ConfigError(
                        f"{agent}: cannot name the tool {t.name!r} of {prefix!r}: {name!r} is "
                        + ("taken" if name in merged else "not a valid tool name")
                        + "; give the source another name (name='...') or leave the tool out "
                        "(include=[...])"
                    )
                merged[name] = t if name == t.name else t.renamed(name)
        yield merged


def as_tool(value: Tool | Callable[..., Any]) -> Tool:
    """A Tool as it is, or a plain function wrapped as one."""
    if isinstance(value, Tool):
        return value
    if callable(value):
        return Tool(value)
    raise ConfigError(f"tools must be @tool functions or plain functions, got {value!r}")


def render(value: Any) -> str:
    """A tool's return value as the text the model reads: strings as they are, anything else
    as JSON (pydantic models, dataclasses, dates included)."""
    if isinstance(value, str):
        return value
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError:
        return str(value)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- schema ------------------------------------------------------------------------------


def _arguments_model(
    fn: Callable[..., Any], tool_name: str, docs: dict[str, str]
) -> tuple[bool, list[tuple[str, str]], type[pydantic.BaseModel]]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise ConfigError(
            f"tool {tool_name}: cannot resolve its type hints ({exc}); define the types it "
            "uses at module level"
        ) from None
    params = list(inspect.signature(fn).parameters.values())
    takes_context = bool(params) and _is_context(hints.get(params[0].name))
    if takes_context:
        params = params[1:]
    fields: dict[str, Any] = {}
    names: list[tuple[str, str]] = []
    for i, p in enumerate(params):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ConfigError(
                f"tool {tool_name}: parameter {p.name!r} must be a named parameter "
                "(no *args, **kwargs or positional-only parameters)"
            )
        if _is_context(hints.get(p.name)):
            raise ConfigError(f"tool {tool_name}: ToolContext must be the first parameter")
        # Internal field names keep parameters such as `json` or `_id` from clashing with
        # BaseModel's own attributes; the model sees the parameter name (the alias).
        field = f"p{i}"
        default = ... if p.default is p.empty else p.default
        extra: dict[str, Any] = {"description": docs[p.name]} if p.name in docs else {}
        fields[field] = (hints.get(p.name, Any), pydantic.Field(default, alias=p.name, **extra))
        names.append((field, p.name))
    try:
        model = pydantic.create_model(
            f"{tool_name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
        )
        model.model_json_schema()
    except pydantic.PydanticUserError as exc:
        raise ConfigError(
            f"tool {tool_name}: its parameters cannot be described as JSON Schema ({exc}); "
            "use JSON-like types: str, int, float, bool, lists, dicts, pydantic models, enums"
        ) from None
    return takes_context, names, model


def _is_context(hint: Any) -> bool:
    return hint is ToolContext or typing.get_origin(hint) is ToolContext


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated titles: tokens the model pays for and gains nothing from."""

    def node(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (names(v) if k in ("properties", "$defs") else node(v))
                for k, v in value.items()
                if not (k == "title" and isinstance(v, str))
            }
        if isinstance(value, list):
            return [node(v) for v in value]
        return value

    def names(mapping: dict[str, Any]) -> dict[str, Any]:
        return {k: node(v) for k, v in mapping.items()}

    cleaned: dict[str, Any] = node(schema)
    return cleaned


# -- docstrings --------------------------------------------------------------------------

_GOOGLE_ARGS = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):$")
_GOOGLE_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:$")
_NUMPY_RULE = re.compile(r"^-{3,}$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+):\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(first paragraph, {parameter: description}) from a Google, NumPy or Sphinx docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or _is_section(lines, i) or stripped.startswith(":"):
            break
        summary.append(stripped)
    params: dict[str, str] = {}
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _GOOGLE_ARGS.match(stripped):
            params.update(_google_params(lines[i + 1 :]))
        elif stripped in ("Parameters", "Other Parameters") and _numpy_header(lines, i):
            params.update(_numpy_params(lines[i + 2 :]))
        elif m := _SPHINX_PARAM.match(stripped):
            params[m[1]] = _continued(m[2], lines[i + 1 :])
    return " ".join(summary), params


def _is_section(lines: list[str], i: int) -> bool:
    return bool(_GOOGLE_SECTION.match(lines[i].strip())) or _numpy_header(lines, i)


def _numpy_header(lines: list[str], i: int) -> bool:
    return i + 1 < len(lines) and bool(_NUMPY_RULE.match(lines[i + 1].strip()))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    base: int | None = None
    current: str | None = None
    for line in lines:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent == 0:
            break
        base = indent if base is None else base
        if indent <= base:
            m = re.match(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line.strip())
            current = str(m[1]) if m else None
            if m and current:
                params[current] = m[2].strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return params


def _numpy_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    current: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _numpy_header(lines, i):
            break
        if _indent(line) == 0:
            current = [n.strip() for n in line.split(":")[0].split(",") if n.strip()]
            for name in current:
                params[name] = ""
        else:
            for name in current:
                params[name] = f"{params[name]} {line.strip()}".strip()
    return params


def _continued(first: str, rest: list[str]) -> str:
    parts = [first.strip()]
    for line in rest:
        if not line.strip() or _indent(line) == 0:
            break
        parts.append(line.strip())
    return " ".join(p for p in parts if p)
