"""Finding the fenced code blocks of a Markdown file, with the marker that may precede each.

Kept apart from the test so the rules read in one place: a block is a fence of three
backticks with a language; the non-blank line just before it may be an HTML comment
`<!-- not-run: REASON -->` (an opt-out the test checks against its list of reasons).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of the fence), its language and text."""

    path: Path
    line: int
    lang: str
    text: str
    not_run: str | None  # the reason given by a `<!-- not-run: ... -->` marker, if any

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of `path`, in order. An unclosed fence is an error, not a skip."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}:{i + 1}: a code fence is never closed")
        indent = len(m.group("indent"))
        text = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        found.append(Block(path, i + 1, m.group("lang"), text, _marker(lines, i)))
        i = end + 1
    return found


def _marker(lines: list[str], fence: int) -> str | None:
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    m = _NOT_RUN.match(lines[j]) if j >= 0 else None
    return m.group("reason") if m else None
