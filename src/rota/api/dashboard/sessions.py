"""Dashboard sessions and one-time login links, kept server-side in `rota_meta`.

A session is a random id in an HttpOnly cookie; the database keeps only its SHA-256 with the
principal, the expiry and the session's CSRF token, so a leaked database row cannot be
replayed as a cookie and signing out (or the expiry) ends the session everywhere at once.
The principal is read again on every request (`resolve`), so disabling it or taking a role
away takes effect on the next click. No API token is ever kept: it is checked once, at
sign-in, and forgotten.

A one-time login code (`mint_login_code`, printed by `rota serve` and `rota dev` as
`/login/once?code=...`) is stored the same way, hashed, and deleted by the first request
that presents it (`redeem_login_code`), so a second use is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets as random
from dataclasses import dataclass
from typing import Protocol

from ...identity import admin
from ...identity.admin import Actor
from ...storage.base import AuditLog, DashboardStore, PrincipalStore
from ...storage.principals import Principal

SESSION_COOKIE = "rota_session"
SESSION_TTL_S = 12 * 3600.0
LOGIN_CODE_TTL_S = 30 * 60.0
DEV_ADMIN = "dev"  # the local admin `rota dev` makes when a fresh database has none

_SESSION_KEY = "dashboard.session."
_CODE_KEY = "dashboard.login."


class SessionStore(DashboardStore, PrincipalStore, AuditLog, Protocol):
    """What sessions need: rota_meta rows, principals, and the audit log."""


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, until when, and the token its forms must echo (CSRF)."""

    principal: Principal
    expires_at: float
    csrf: str


def open_session(store: SessionStore, principal: str, now: float) -> str:
    """A new session for `principal`; returns the id for the cookie (never stored as is)."""
    _sweep(store, _SESSION_KEY, now)
    sid = random.token_urlsafe(32)
    row = {"principal": principal, "expires": now + SESSION_TTL_S, "csrf": random.token_urlsafe(32)}
    store.meta_keep(_SESSION_KEY + _digest(sid), json.dumps(row))
    return sid


def resolve(store: SessionStore, sid: str, now: float) -> Session | None:
    """The live session `sid` names, with its principal as stored now; None when the id is
    unknown, expired, or its principal is gone or disabled."""
    if not sid or len(sid) > 100:
        return None
    raw = store.meta_value(_SESSION_KEY + _digest(sid))
    if raw is None:
        return None
    row = json.loads(raw)
    if float(row["expires"]) <= now:
        return None
    principal = store.principal(str(row["principal"]))
    if principal is None or principal.disabled:
        return None
    return Session(principal, float(row["expires"]), str(row["csrf"]))


def close_session(store: SessionStore, sid: str) -> None:
    """Sign out: the session's row is deleted, so the cookie is worthless everywhere."""
    if sid and len(sid) <= 100:
        store.meta_take(_SESSION_KEY + _digest(sid))


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Whether a request carries this session's CSRF token (compared in constant time)."""
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), str(presented).encode())


def mint_login_code(
    store: SessionStore, principal: str, now: float, ttl_s: float = LOGIN_CODE_TTL_S
) -> str:
    """A single-use code that signs `principal` in at `/login/once?code=...` within `ttl_s`."""
    _sweep(store, _CODE_KEY, now)
    code = random.token_urlsafe(24)
    row = {"principal": principal, "expires": now + ttl_s}
    store.meta_keep(_CODE_KEY + _digest(code), json.dumps(row))
    return code


def redeem_login_code(store: SessionStore, code: str, now: float) -> str | None:
    """The principal the code signs in, once: the code is deleted whatever the outcome."""
    if not code or len(code) > 100:
        return None
    raw = store.meta_take(_CODE_KEY + _digest(code))
    if raw is None:
        return None
    row = json.loads(raw)
    return str(row["principal"]) if float(row["expires"]) > now else None


def link_principal(store: SessionStore) -> tuple[str, bool]:
    """Whom a printed login link signs in: the first enabled admin user (or admin of any
    kind); when there is none, a local admin user `dev` is made. Returns (name, made)."""
    admins = [p for p in store.principals() if "admin" in p.roles and not p.disabled]
    admins.sort(key=lambda p: (p.kind != "user", p.name))
    if admins:
        return admins[0].name, False
    made = store.principal(DEV_ADMIN) is None
    if made:
        dev = Principal(DEV_ADMIN, kind="user", roles=frozenset({"admin"}))
        admin.add(store, dev, Actor("rota:dev", "machine"))
    return DEV_ADMIN, made


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _sweep(store: SessionStore, prefix: str, now: float) -> None:
    """Forget expired rows of one kind, so they do not pile up in rota_meta."""
    rows = store.meta_prefixed(prefix)
    store.meta_drop([k for k, v in rows.items() if float(json.loads(v)["expires"]) <= now])


def login_link(
    store: SessionStore, base_url: str, now: float, *, make_dev_admin: bool
) -> tuple[str, str, bool] | None:
    """A one-time sign-in URL for the startup banner: (url, principal, whether `dev` was
    made). Without an admin, None, unless `make_dev_admin` (rota dev) makes one."""
    admins = [p for p in store.principals() if "admin" in p.roles and not p.disabled]
    if not admins and not make_dev_admin:
        return None
    name, made = link_principal(store)
    code = mint_login_code(store, name, now)
    return f"{base_url.rstrip('/')}/login/once?code={code}", name, made
