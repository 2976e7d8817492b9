"""Identity: secrets (encrypted at rest, granted to principals) and their redaction."""

from __future__ import annotations

from ..redaction import RedactingFilter, Redactor, redactor
from .secrets import SecretDenied, SecretInfo, SecretKeyError, SecretNotFound, Vault

__all__ = [
    "RedactingFilter",
    "Redactor",
    "SecretDenied",
    "SecretInfo",
    "SecretKeyError",
    "SecretNotFound",
    "Vault",
    "redactor",
]
