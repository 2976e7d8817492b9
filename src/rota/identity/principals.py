"""Principals: who a run acts as. A user is a person; a service account is a machine identity.

A principal holds scopes (what its runs' tools may do: `billing:read`, `billing:write`) and
roles (what it may do through the HTTP API and approvals: `admin`, `operator`, `viewer`,
`approver:<group>`). Deny by default: a scope not held is a scope refused. A grant ending in
`:*` covers every scope under that prefix (`billing:*` holds `billing:refund:large`).

Principals live in the store. `app.principal(...)` declares one in code; the declaration is
synced when the app opens its store (code is the source of truth for kind, scopes and roles
of the principals it declares). `rota principals ...` manages the rest, and disables any:
a sync never re-enables a disabled principal. Every change is audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..errors import ConfigError, RotaError
from ..storage.principals import Principal

KINDS = ("user", "service")
FIXED_ROLES = ("admin", "operator", "viewer")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}")
_SCOPE_PART = r"[a-z0-9][a-z0-9_.\-]*"
_SCOPE = re.compile(rf"{_SCOPE_PART}(:{_SCOPE_PART})*(:\*)?")
_GROUP = re.compile(r"[a-z0-9][a-z0-9_.\-]*")


class UnknownPrincipal(RotaError, LookupError):
    """A name that is neither declared in the app nor stored: raised before anything runs as it,
    with the known names, so a typo in `run_as` is caught at start-up rather than at 3 a.m."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        names = sorted(known)
        hint = f"; known: {', '.join(names)}" if names else "; none exist yet"
        super().__init__(
            f"unknown principal {name!r}{hint}. Declare it with app.principal({name!r}, "
            f"kind='service', scopes=[...]) or `rota principals add {name} --kind service`"
        )


class PrincipalDisabled(RotaError, PermissionError):
    """The principal exists but was disabled (`rota principals disable`): its runs and tokens
    stop at once instead of acting on credentials someone meant to withdraw."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"principal {name!r} is disabled; runs as {name!r} are refused until "
            f"`rota principals enable {name}`"
        )


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"principal name {name!r} must start with a letter or digit and hold only "
            "letters, digits, _, ., @ and - (at most 100 characters)"
        )
    return name


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ConfigError(
            f"principal kind must be 'user' (a person) or 'service' (a machine identity), "
            f"got {kind!r}"
        )
    return str(kind)


def check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
        raise ConfigError(
            f"malformed scope {scope!r}: a scope is lower-case words joined by ':', such as "
            "'billing:read' or 'billing:*' (letters, digits, _, . and - in each word)"
        )
    return scope


def check_scopes(scopes: Iterable[str] | str | None) -> frozenset[str]:
    if isinstance(scopes, str):
        raise ConfigError(f"scopes must be a list, e.g. scopes=[{scopes!r}]")
    return frozenset(check_scope(s) for s in scopes or ())


def check_role(role: object) -> str:
    if isinstance(role, str):
        if role in FIXED_ROLES:
            return role
        group = role.removeprefix("approver:")
        if group != role and _GROUP.fullmatch(group):
            return role
    raise ConfigError(
        f"unknown role {role!r}: use admin, operator, viewer or approver:<group> "
        "(e.g. approver:finance)"
    )


def approver_groups(value: str | Sequence[str] | None, *, what: str) -> tuple[str, ...]:
    """Groups as given (`"finance"` or `["finance", "ops"]`), checked like role names."""
    if value is None:
        return ()
    groups = (value,) if isinstance(value, str) else value
    if not isinstance(groups, list | tuple) or not all(isinstance(g, str) for g in groups):
        raise ConfigError(f"{what}: approvers must be a group name or a list of them")
    for group in groups:
        try:
            check_role(f"approver:{group}")
        except ConfigError:
            raise ConfigError(
                f"{what}: approver group {group!r} is not a valid group name: use lower-case "
                "letters, digits, _, . and - (e.g. approvers='finance'); a principal decides "
                "with the role approver:<group>"
            ) from None
    return tuple(dict.fromkeys(groups))


def check_roles(roles: Iterable[str] | str | None) -> frozenset[str]:
    if isinstance(roles, str):
        raise ConfigError(f"roles must be a list, e.g. roles=[{roles!r}]")
    return frozenset(check_role(r) for r in roles or ())


def make_principal(
    name: str,
    kind: str = "service",
    scopes: Iterable[str] | None = None,
    roles: Iterable[str] | None = None,
) -> Principal:
    """A validated principal; a ConfigError names what is wrong."""
    return Principal(
        check_name(name), check_kind(kind), check_scopes(scopes), check_roles(roles), False
    )


def principal_json(p: Principal) -> dict[str, object]:
    """A principal as `rota principals show` and the HTTP API show it."""
    return {
        "name": p.name,
        "kind": p.kind,
        "scopes": sorted(p.scopes),
        "roles": sorted(p.roles),
        "disabled": p.disabled,
    }
