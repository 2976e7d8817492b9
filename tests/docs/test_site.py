"""The documentation site builds with no warnings, and every page is in its navigation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

import rota

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def _nav_pages(nav: list[object]) -> set[str]:
    pages: set[str] = set()
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            pages |= _nav_pages(value)
        else:
            pages.add(str(value))
    return pages


def test_site_builds_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (tmp_path / "reference.html").read_text()
    shown = set(re.findall(r'id="rota\.(\w+)"', reference))  # top-level names only
    shown |= set(re.findall(r'id="rota\.scheduling\.\w+\.(\w+)"', reference))
    missing = sorted(set(rota.__all__) - shown)
    assert not missing, f"the API reference leaves out {missing}: give them docstrings"


def test_every_page_is_in_the_navigation() -> None:
    # yaml.BaseLoader: mkdocs.yml may hold tags (!ENV) that safe_load refuses.
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    listed = _nav_pages(config["nav"])
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set(), "add these pages to nav in mkdocs.yml"
    assert listed - pages == set(), "nav names pages that do not exist"


def test_readme_links_stay_in_the_repository() -> None:
    """A relative link in README.md names a file of this repository (none points outside)."""
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), f"README links outside the repository: {target}"
        assert path.exists(), f"README links to a missing file: {target}"
