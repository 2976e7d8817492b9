"""API tokens: how a principal authenticates to rota's HTTP API (and `rota` to a remote one).

A token reads `rota_<id>_<secret>`: the id finds the row, the secret is 32 random bytes
that are shown once, when the token is made, and stored only as their SHA-256 (a fast hash
is enough for a high-entropy secret: there is nothing to guess). A token works until it
expires or is revoked, and only while its principal exists and is enabled. Every refusal is
audited (auth.denied), with the token's id when the token named one.

A token made with `fire=NAME` (`rota tokens create --fire NAME`) may fire that one job,
workflow or agent (`POST /api/jobs/NAME/runs`) and do nothing else: the API refuses it (403)
on every other route, whatever roles its principal holds. Its principal is the one the runs
are requested by (audited); `FIRE_PRINCIPAL` names the default one, a service principal made
with no scopes and no roles for that job alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as random
from dataclasses import dataclass
from typing import NoReturn, Protocol

from ..clock import Clock, iso, system_clock
from ..errors import ConfigError, RotaError
from ..storage.audit import AUTH_DENIED, TOKEN_CREATED, TOKEN_REVOKED, AuditEntry
from ..storage.base import AuditLog, PrincipalStore
from ..storage.principals import TokenRecord
from . import admin
from .admin import Actor
from .principals import Principal, UnknownPrincipal, check_name


class TokenStore(PrincipalStore, AuditLog, Protocol):
    """What tokens need: principals, their tokens, and the audit log."""


_TOKEN = re.compile(r"rota_([0-9a-f]{32})_([A-Za-z0-9_\-]{43})")


class TokenRefused(RotaError, PermissionError):
    """The token does not authenticate anyone; the message says why (never the token)."""


@dataclass(frozen=True)
class IssuedToken:
    id: str
    principal: str
    token: str  # shown once; only its hash is stored
    expires_at: float | None
    fire: str | None = None


@dataclass(frozen=True)
class Grant:
    """What a presented token allows: its principal, and the one job it may fire if it is
    restricted to that (`fire`; None: whatever the principal may do)."""

    principal: Principal
    token_id: str
    fire: str | None


FIRE_PRINCIPAL = "fire-{name}"
"""The default principal of a `--fire NAME` token (see fire_principal)."""


def fire_principal(job: str) -> str:
    """`fire-NAME`, cut to what a principal's name may hold."""
    return FIRE_PRINCIPAL.format(name=job)[:100]


MAX_LIFETIME_S = 10 * 365 * 86400.0  # a token's lifetime: ten years at most


def issue(
    store: TokenStore,
    principal: str,
    actor: Actor,
    *,
    expires_in_s: float | None = None,
    clock: Clock = system_clock,
    fire: str | None = None,
) -> IssuedToken:
    if store.principal(principal) is None:
        raise UnknownPrincipal(principal, [p.name for p in store.principals()])
    if expires_in_s is not None and not 0 < expires_in_s <= MAX_LIFETIME_S:
        raise ConfigError(
            f"a token's lifetime must be more than 0s and at most 3650d, got {expires_in_s:g}s"
        )
    token_id = random.token_hex(16)
    secret = random.token_urlsafe(32)
    now = clock.now()
    expires = None if expires_in_s is None else now + expires_in_s
    store.add_token(
        TokenRecord(token_id, principal, _hash(secret), now, expires, None, fire),
        AuditEntry(
            actor.name,
            TOKEN_CREATED,
            actor.kind,
            subject=principal,
            detail={"token_id": token_id, "expires_at": expires}
            | ({"fire": fire} if fire is not None else {}),
            at=now,
        ),
    )
    return IssuedToken(token_id, principal, f"rota_{token_id}_{secret}", expires, fire)


def issue_fire(
    store: TokenStore,
    job: str,
    actor: Actor,
    *,
    principal: str | None = None,
    expires_in_s: float | None = None,
) -> IssuedToken:
    """A token that may fire `job` and nothing else. Without `principal`, it stands for
    `fire-<job>`, a service principal with no scopes and no roles, made when missing."""
    if not job or len(job) > 200:
        raise ConfigError(f"--fire needs the name of a job, workflow or agent, got {job!r}")
    if principal is None:
        principal = check_name(fire_principal(job))
        if store.principal(principal) is None:
            admin.add(store, Principal(principal, kind="service"), actor)
    return issue(store, principal, actor, expires_in_s=expires_in_s, fire=job)


def revoke(store: TokenStore, token_id: str, actor: Actor, clock: Clock = system_clock) -> None:
    record = store.token(token_id)
    if record is None:
        raise TokenRefused(f"no token with id {token_id!r} (see `rota tokens list`)")
    entry = AuditEntry(
        actor.name,
        TOKEN_REVOKED,
        actor.kind,
        subject=record.principal,
        detail={"token_id": token_id},
    )
    if not store.revoke_token(token_id, clock.now(), entry):
        raise TokenRefused(f"token {token_id} was already revoked")


def authenticate(store: TokenStore, token: str, clock: Clock = system_clock) -> Principal:
    """The principal a presented token stands for; TokenRefused (audited) otherwise."""
    return grant(store, token, clock).principal


def grant(store: TokenStore, token: str, clock: Clock = system_clock) -> Grant:
    """What a presented token allows; TokenRefused (audited) when it authenticates no one."""
    match = _TOKEN.fullmatch(token.strip())
    if match is None:
        _refuse(store, None, None, "malformed token: expected rota_<id>_<secret>")
    token_id, secret = match[1], match[2]
    record = store.token(token_id)
    if record is None or not hmac.compare_digest(record.token_hash, _hash(secret)):
        _refuse(store, token_id, None, "unknown token")
    who = record.principal
    if record.revoked_at is not None:
        _refuse(store, token_id, who, f"token {token_id} was revoked")
    if record.expires_at is not None and clock.now() >= record.expires_at:
        _refuse(store, token_id, who, f"token {token_id} expired")
    principal = store.principal(who)
    if principal is None:
        _refuse(store, token_id, who, f"the principal {who!r} of token {token_id} was deleted")
    if principal.disabled:
        _refuse(store, token_id, who, f"principal {who!r} is disabled")
    return Grant(principal, token_id, record.fire)


def _refuse(
    store: TokenStore, token_id: str | None, principal: str | None, reason: str
) -> NoReturn:
    store.audit(
        principal or "rota:unauthenticated",
        AUTH_DENIED,
        actor_kind="machine" if principal is None else _kind(store, principal),
        subject=token_id,
        detail={"reason": reason},
    )
    raise TokenRefused(reason)


def _kind(store: TokenStore, name: str) -> str:
    found = store.principal(name)
    return found.actor_kind if found is not None else "machine"


def token_json(t: TokenRecord) -> dict[str, object]:
    """A token's record as `rota tokens list --json` and the HTTP API show it (never the
    token itself: rota does not have it)."""
    return {
        "id": t.id,
        "principal": t.principal,
        "created": iso(t.created_at),
        "expires": iso(t.expires_at),
        "revoked": iso(t.revoked_at),
        "fire": t.fire,  # the one job it may fire; null: what its principal may do
    }


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
