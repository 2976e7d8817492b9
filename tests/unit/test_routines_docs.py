"""docs/routines.md shows the example files as they are: its `# app.py` block is
examples/routines/app.py and each heredoc writes an example routine file verbatim (the docs
runner, tests/docs/test_code_blocks.py, runs those blocks; this test keeps them the files)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "routines.md"
EXAMPLES = ROOT / "examples" / "routines"
HEREDOC = re.compile(r"cat > (?P<path>\S+) <<'EOF'\n(?P<text>.*?)^EOF$", re.DOTALL | re.MULTILINE)


def test_the_app_block_is_the_example_app() -> None:
    page = PAGE.read_text()
    match = re.search(r"```python\n# app\.py\n(?P<text>.*?)```", page, re.DOTALL)
    assert match is not None
    assert match["text"] == (EXAMPLES / "app.py").read_text()


def test_each_routine_file_in_the_page_is_the_example_file() -> None:
    written = {m["path"]: m["text"] for m in HEREDOC.finditer(PAGE.read_text())}
    assert written == {
        "routines/daily-digest.md": (EXAMPLES / "routines" / "daily-digest.md").read_text(),
        "routines/ticket-triage.md": (EXAMPLES / "routines" / "ticket-triage.md").read_text(),
        "broken/triage-typos.md": (EXAMPLES / "broken" / "triage-typos.md").read_text(),
    }
