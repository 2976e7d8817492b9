"""Changing principals: each change is validated, stored and audited in one transaction.

The CLI (`rota principals ...`), the HTTP API and `app.principal(...)` all change principals
through these functions, so every path audits the same way. `Actor` says who made the
change and whether a human or a machine did.
"""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..clock import system_clock
from ..errors import ConfigError
from ..storage.audit import PRINCIPAL_CHANGED, SCOPE_CHANGED, AuditEntry
from ..storage.base import PrincipalStore
from .principals import (
    Principal,
    UnknownPrincipal,
    check_name,
    check_roles,
    check_scopes,
)

ACTOR_ENV = "ROTA_ACTOR"


@dataclass(frozen=True)
class Actor:
    name: str
    kind: str  # "human" | "machine"


APP = Actor("rota:app", "machine")
"""Changes made by syncing the principals an app declares in code."""


def actor_of(principal: Principal) -> Actor:
    """A principal making a change itself (through the HTTP API), as the audit names it."""
    return Actor(principal.name, principal.actor_kind)


def cli_actor() -> Actor:
    """The person at the terminal: ROTA_ACTOR if set (e.g. an SSO login), else the OS user."""
    try:
        name = os.environ.get(ACTOR_ENV) or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        name = f"uid:{os.getuid()}"
    return Actor(name, "human")


def declare(store: PrincipalStore, wanted: Principal, actor: Actor = APP) -> Principal:
    """Create or update a principal to match a declaration (kind, scopes, roles). A disabled
    principal stays disabled: only `enable` turns it back on."""

    def change(before: Principal | None) -> tuple[Principal | None, list[AuditEntry]]:
        after = replace(wanted, disabled=before.disabled if before else False)
        if after == before:
            return None, []
        return after, _entries(actor, before, after)

    return _stored(store, wanted.name, change)


def declare_all(store: PrincipalStore, declared: Iterable[Principal]) -> list[Principal]:
    """Sync the principals an app declares in code, as the app: what App does when it opens
    its store, and `rota db migrate` and `rota principals` do before an app process has."""
    return [declare(store, wanted) for wanted in declared]


def add(store: PrincipalStore, wanted: Principal, actor: Actor) -> Principal:
    """Create a principal; refused when the name is taken."""

    def change(before: Principal | None) -> tuple[Principal | None, list[AuditEntry]]:
        if before is not None:
            raise ConfigError(
                f"principal {wanted.name!r} exists; change it with `rota principals grant` "
                "or `rota principals revoke`"
            )
        return wanted, _entries(actor, None, wanted)

    return _stored(store, wanted.name, change)


def regrant(
    store: PrincipalStore,
    name: str,
    actor: Actor,
    scopes: Iterable[str] = (),
    roles: Iterable[str] = (),
    *,
    add: bool,
) -> Principal:
    """Add (or remove) scopes and roles."""
    s, r = check_scopes(scopes), check_roles(roles)

    def edit(p: Principal) -> Principal:
        if add:
            return replace(p, scopes=p.scopes | s, roles=p.roles | r)
        return replace(p, scopes=p.scopes - s, roles=p.roles - r)

    return _update(store, name, actor, edit)


grant = functools.partial(regrant, add=True)
revoke = functools.partial(regrant, add=False)


def set_disabled(store: PrincipalStore, name: str, actor: Actor, disabled: bool) -> Principal:
    return _update(store, name, actor, lambda p: replace(p, disabled=disabled))


def _update(store: PrincipalStore, name: str, actor: Actor, edit: Any) -> Principal:
    check_name(name)

    def change(before: Principal | None) -> tuple[Principal | None, list[AuditEntry]]:
        if before is None:
            raise UnknownPrincipal(name, [p.name for p in store.principals()])
        after = edit(before)
        return (None, []) if after == before else (after, _entries(actor, before, after))

    return _stored(store, name, change)


def _stored(store: PrincipalStore, name: str, change: Any) -> Principal:
    result = store.change_principal(name, change, system_clock.now())
    assert result is not None  # change() refuses or returns a principal
    return result


def _entries(actor: Actor, before: Principal | None, after: Principal) -> list[AuditEntry]:
    """One record for the principal itself (created, kind, enabled) and one for its scopes
    and roles, each only when that part changed."""
    entries = []
    old = before or Principal(after.name, after.kind)
    detail: dict[str, Any] = {}
    if before is None:
        detail["created"] = {"kind": after.kind}
    elif old.kind != after.kind:
        detail["kind"] = {"from": old.kind, "to": after.kind}
    if old.disabled != after.disabled:
        detail["disabled"] = after.disabled
    if detail:
        entries.append(_entry(actor, PRINCIPAL_CHANGED, after.name, detail))
    grants = _diff("scopes", old.scopes, after.scopes) | _diff("roles", old.roles, after.roles)
    if grants:
        entries.append(_entry(actor, SCOPE_CHANGED, after.name, grants))
    return entries


def _diff(what: str, old: frozenset[str], new: frozenset[str]) -> dict[str, list[str]]:
    out = {}
    if added := sorted(new - old):
        out[f"{what}_added"] = added
    if removed := sorted(old - new):
        out[f"{what}_removed"] = removed
    return out


def _entry(actor: Actor, action: str, subject: str, detail: dict[str, Any]) -> AuditEntry:
    return AuditEntry(actor.name, action, actor.kind, subject=subject, detail=detail)
