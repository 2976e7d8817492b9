"""Redaction of secret values from any text rota writes or sends.

Every secret value read in this process (Vault.get and Vault.set register it) is replaced by
`[redacted:NAME]` wherever it appears as-is, JSON-escaped, URL-quoted or base64-encoded. One
compiled regex of every form, rebuilt on register, keeps a call to `redact` cheap.

Call `redactor.redact` / `redactor.redact_json` on anything that leaves the process or is
stored: step results before they are saved, a model's context before it is sent, trace span
attributes and error messages. `RedactingFilter` does it for log records; add it to handlers
(a filter on a logger does not see records propagated from its children).
`rota.logredaction.install_log_redaction` does it for every log line of a process.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote


def _forms(value: str) -> set[str]:
    """The ways a value commonly shows up in text."""
    raw = value.encode()
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
    }
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.update((encoded, encoded.rstrip("=")))  # padded, and as JWTs and URLs write it
    return {f for f in forms if f}


class Redactor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}  # value -> secret name
        # The compiled pattern and each form it matches -> secret name, swapped as one.
        self._state: tuple[re.Pattern[str], dict[str, str]] | None = None

    def register(self, name: str, value: str) -> None:
        if not value or self._names.get(value) == name:
            return
        with self._lock:
            self._names[value] = name
            forms: dict[str, str] = {}
            for secret, secret_name in self._names.items():
                for form in _forms(secret):
                    forms.setdefault(form, secret_name)
            # Longest first: a value that contains another is replaced whole.
            alternatives = sorted(forms, key=len, reverse=True)
            self._state = (re.compile("|".join(map(re.escape, alternatives))), forms)

    def __len__(self) -> int:
        return len(self._names)

    def clear(self) -> None:
        """Forget every value (tests: one test's secrets must not redact the next's text)."""
        with self._lock:
            self._names.clear()
            self._state = None

    def redact(self, text: str) -> str:
        state = self._state
        if state is None or not text:
            return text
        pattern, forms = state
        return pattern.sub(lambda m: f"[redacted:{forms[m.group()]}]", text)

    def redact_json(self, obj: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, tuples, strings) with every string
        redacted, keys included; other values are returned as they are."""
        if self._state is None:
            return obj
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact_json(k): self.redact_json(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.redact_json(v) for v in obj)
        return obj


_RECORD_FIELDS = frozenset(
    (*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime")
)


class RedactingFilter(logging.Filter):
    """Redacts a log record's message, arguments, traceback, stack and the text values of
    its `extra=` fields, in place."""

    def __init__(self, redactor_: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor_ is None else redactor_

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        if not r:
            return True
        record.msg = r.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = r.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact(record.stack_info)
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and isinstance(value, str):
                record.__dict__[name] = r.redact(value)
        return True


redactor = Redactor()
"""The process-wide redactor that Vault registers every value it reads with."""
