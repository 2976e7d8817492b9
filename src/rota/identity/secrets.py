"""Secrets: encrypted at rest, granted to principals, handed to tools by name.

Values are encrypted with AES-256-GCM under one key: ROTA_SECRET_KEY (base64 of 32 bytes),
else a key file (ROTA_SECRET_KEY_FILE, default .rota/secret.key in the current directory)
created with mode 0600 on first use. Each write uses a fresh random 12-byte nonce and the
secret's name as associated data, so a ciphertext copied to another name does not decrypt.
A stored value is `v1:<key id>:<base64(nonce + ciphertext)>`; the key id (a keyed hash, not
the key) tells a wrong key apart from a damaged or moved ciphertext.

Every value read or written here is registered with rota.redaction.redactor.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, RotaError
from ..redaction import Redactor, redactor
from ..storage.audit import SECRET_DENIED, SECRET_READ, AuditEntry
from ..storage.base import SecretStore

KEY_ENV = "ROTA_SECRET_KEY"
KEY_FILE_ENV = "ROTA_SECRET_KEY_FILE"
DEFAULT_KEY_FILE = Path(".rota") / "secret.key"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,199}")
_VERSION = "v1"


class SecretNotFound(RotaError, LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no secret named {name!r} (see `rota secrets list`)")


class SecretDenied(RotaError, PermissionError):
    def __init__(self, name: str, principal: str | None) -> None:
        self.name, self.principal = name, principal
        who = f"principal {principal!r}" if principal else "a run with no principal"
        super().__init__(
            f"{who} is not granted secret {name!r}; "
            f"grant it with `rota secrets set {name} --grant {principal or 'PRINCIPAL'}`"
        )


class SecretKeyError(RotaError):
    """The key cannot decrypt a stored secret."""


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    grants: tuple[str, ...]
    created_at: float
    updated_at: float


# -- the key ----------------------------------------------------------------------------


def parse_key(text: str | bytes, source: str = KEY_ENV) -> bytes:
    """A 32-byte key from its base64 text; a ConfigError saying how to make one otherwise."""
    if isinstance(text, bytes) and len(text) == 32:
        return text
    raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    raw = raw.strip()
    key = b""
    for altchars in (b"+/", b"-_"):  # standard or URL-safe base64
        try:
            key = base64.b64decode(raw.encode("ascii", "replace"), altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    got = f"{len(key)} bytes" if key else "not valid base64"
    raise ConfigError(
        f"{source} must be the base64 of 32 random bytes ({got}); make one with "
        '`python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"`'
    )


def key_file_path() -> Path:
    return Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE).absolute()


def load_key() -> bytes:
    """ROTA_SECRET_KEY, else the key file, created (mode 0600) when it does not exist."""
    env = os.environ.get(KEY_ENV)
    if env:
        return parse_key(env)
    path = key_file_path()
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written in full to a private temporary file, then linked into place: a concurrent
    # first use sees either no file or the whole key, and exactly one key wins.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret.key.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(base64.b64encode(os.urandom(32)) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    with path.open("rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"the secret key file {path} can be read by other users "
                f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
            )
        return parse_key(f.read(), source=f"the secret key file {path}")


def key_id(key: bytes) -> str:
    return hmac.new(key, b"rota secret key id", hashlib.sha256).hexdigest()[:16]


# -- the vault --------------------------------------------------------------------------


class Vault:
    """Secrets in a store. The key is loaded on first encrypt or decrypt, so listing and
    deleting need none (and create no key file)."""

    def __init__(
        self,
        store: SecretStore,
        key: str | bytes | None = None,
        *,
        redact_with: Redactor | None = None,
        audit_with: Callable[[Sequence[AuditEntry]], None] | None = None,
    ) -> None:
        """`audit_with` appends audit records (default: straight to the store); a worker
        passes its own writer, which keeps a run's records in order."""
        self.store = store
        self._audit_with = audit_with
        self._key = parse_key(key, source="the key given to Vault") if key is not None else None
        self.redactor = redact_with or redactor

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_key()
        return self._key

    def set(self, name: str, value: str, grants: Sequence[str] | None = None) -> None:
        """Create or replace a secret. grants=None keeps an existing secret's grants."""
        check_name(name)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"secret {name!r} needs a non-empty value")
        self.redactor.register(name, value)
        self.store.put_secret(
            name, self._encrypt(name, value), _principals(grants), now=time.time()
        )

    def get(self, name: str, principal: str | None, *, run_id: str | None = None) -> str:
        """The value, for a tool running on behalf of `principal`. Every read, and every
        refused attempt, is audited (the secret's name, never its value)."""
        record = self.store.secret(name)
        allowed = record is not None and principal is not None and principal in record.grants
        self._audit(SECRET_READ if allowed else SECRET_DENIED, name, principal, run_id)
        if record is None:
            raise SecretNotFound(name)
        if not allowed:
            raise SecretDenied(name, principal)
        value = self._decrypt(name, record.ciphertext)
        self.redactor.register(name, value)
        return value

    def _audit(self, action: str, name: str, principal: str | None, run_id: str | None) -> None:
        entry = AuditEntry(principal or "rota:anonymous", action, subject=name, run_id=run_id)
        write = self._audit_with or getattr(self.store, "audit_many", None)
        if write is not None:
            write([entry])

    def names(self) -> list[str]:
        return [r.name for r in self.store.secrets()]

    def list(self) -> list[SecretInfo]:
        return [
            SecretInfo(r.name, r.grants, r.created_at, r.updated_at) for r in self.store.secrets()
        ]

    def delete(self, name: str) -> None:
        if not self.store.delete_secret(name):
            raise SecretNotFound(name)

    def grant(self, name: str, *principals: str) -> tuple[str, ...]:
        return self._change(name, add=_principals(principals) or ())

    def revoke(self, name: str, *principals: str) -> tuple[str, ...]:
        return self._change(name, remove=principals)

    def _change(
        self, name: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> tuple[str, ...]:
        grants = self.store.change_secret_grants(name, add, remove, now=time.time())
        if grants is None:
            raise SecretNotFound(name)
        return grants

    def _encrypt(self, name: str, value: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415  # heavy: cryptography, only to seal or open a secret

        nonce = os.urandom(12)
        sealed = AESGCM(self.key).encrypt(nonce, value.encode(), name.encode())
        return f"{_VERSION}:{key_id(self.key)}:{base64.b64encode(nonce + sealed).decode()}"

    def _decrypt(self, name: str, stored: str) -> str:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415  # heavy: cryptography, only to seal or open a secret
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415  # heavy: cryptography, only to seal or open a secret

        parts = stored.split(":", 2)
        if len(parts) != 3 or parts[0] != _VERSION:
            raise SecretKeyError(f"secret {name!r} is stored in a format this rota cannot read")
        _, kid, body = parts
        if not hmac.compare_digest(kid, key_id(self.key)):
            raise SecretKeyError(
                f"cannot decrypt secret {name!r}: the secret key does not match the one "
                f"these secrets were written with (check {KEY_ENV} or {key_file_path()})"
            )
        try:
            blob = base64.b64decode(body, validate=True)
            return AESGCM(self.key).decrypt(blob[:12], blob[12:], name.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretKeyError(
                f"cannot decrypt secret {name!r}: its stored ciphertext was altered or "
                "copied from another secret; set it again"
            ) from None


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"secret name {name!r} must start with a letter or _ and contain only letters, "
            "digits, _, . and - (at most 200 characters)"
        )


def _principals(grants: Iterable[str] | None) -> list[str] | None:
    if grants is None:
        return None
    out = []
    for g in grants:
        if not isinstance(g, str) or not g.strip():
            raise ConfigError(f"a grant must name a principal, not {g!r}")
        out.append(g.strip())
    return out
