"""Public names of a package loaded on first use (PEP 562), so that importing the package
loads none of its submodules: `import rota` and every CLI command start quickly, and each
subsystem is imported by the first code that uses it (docs/architecture.md)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class LazyExports:
    """A package's `__getattr__` and `__dir__`: `exports` maps each public name to the
    submodule (relative to `package`) that defines it."""

    def __init__(self, package: str, exports: Mapping[str, str], namespace: dict[str, Any]):
        self.package = package
        self.exports = exports
        self.namespace = namespace  # the package's globals()

    def load(self, name: str) -> Any:
        """Import a public name's submodule the first time the name is asked for."""
        module = self.exports.get(name)
        if module is None:
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", self.package), name)
        self.namespace[name] = value  # next time a plain attribute: no __getattr__ call
        return value

    def names(self) -> list[str]:
        return sorted({*self.namespace, *self.exports})
