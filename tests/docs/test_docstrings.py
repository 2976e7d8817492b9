"""Every public name has a docstring: the API reference (docs/reference.md) is built from them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import rota
from rota import Agent, App, RunContext


def _public_methods(cls: type) -> list[str]:
    return [
        f"{cls.__name__}.{name}"
        for name, member in vars(cls).items()
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    ]


NAMES = [*rota.__all__, *(m for c in (App, Agent, RunContext) for m in _public_methods(c))]


def _resolve(dotted: str) -> object:
    obj: object = rota
    for part in dotted.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", NAMES)
def test_public_name_has_a_docstring(name: str) -> None:
    obj = _resolve(name)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    doc = obj.__doc__ if not isinstance(obj, property) else (obj.fget.__doc__ if obj.fget else None)
    assert doc and doc.strip(), f"rota.{name} has no docstring"
    # A dataclass without one gets its signature as __doc__: that explains nothing.
    short = name.rsplit(".", 1)[-1]
    assert not doc.startswith(f"{short}("), f"rota.{name} has only its generated signature"


def test_reference_page_renders_the_package() -> None:
    """docs/reference.md renders `rota` itself, so no public name is left out of the site."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
    assert "::: rota\n" in page
