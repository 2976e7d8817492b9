"""The docs harness itself: it finds every block, and a wrong block fails instead of passing."""

from __future__ import annotations

from pathlib import Path

import pytest
from codeblocks import Block, blocks
from test_code_blocks import (
    Context,
    _environment,
    _loose,
    _script,
    _transcript,
    check_console,
    check_promql,
    check_python,
    check_shell,
)

PAGE = """# A page

```python
x = 1
```

<!-- not-run: needs docker -->
```sh
docker run hello
```

  ```console
  $ echo hi
  hi
  ```
"""


def test_blocks_are_found_with_language_line_and_marker(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    found = blocks(page)
    assert [(b.lang, b.line, b.not_run) for b in found] == [
        ("python", 3, None),
        ("sh", 8, "needs docker"),
        ("console", 12, None),
    ]
    assert found[2].text == "$ echo hi\nhi\n"  # the fence's indent is removed


def test_an_unclosed_fence_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks(page)


def test_loose_output_match() -> None:
    assert _loose("audit log intact: ... records checked").search(
        "audit log intact: 5 records checked; head seq 5"
    )
    assert not _loose("status 401").search("status 200")


def test_transcript_reads_commands_outputs_and_exit_codes() -> None:
    steps = list(_transcript("$ rota x\nline one\n$ rota y  # exit 3\n"))
    assert steps == [("rota x", 0, ["line one"]), ("rota y  # exit 3", 3, [])]


def test_background_servers_are_waited_for() -> None:
    script = _script("rota dev --port 8800 &\nrota worker &\n", 5555)
    assert 'rota dev --port 5555 &\n__bg+=("$!")\n__ready\n' in script
    assert 'rota worker &\n__bg+=("$!")\nrota' not in script  # no port to wait for
    assert script.endswith('rota worker &\n__bg+=("$!")\n')


def _context(tmp_path: Path) -> Context:
    return Context(tmp_path, _environment(tmp_path), 5555, {})


def _block(lang: str, text: str) -> Block:
    return Block(Path("page.md"), 1, lang, text, None)


def test_a_failing_shell_block_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exit 1"):
        check_shell(_block("sh", "true\nfalse\necho never\n"), _context(tmp_path))


def test_a_background_process_that_dies_fails_the_block(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exited before the end"):
        check_shell(_block("sh", "sh -c 'exit 0' &\nsleep 0.5\n"), _context(tmp_path))


def test_console_output_that_differs_fails(tmp_path: Path) -> None:
    check_console(_block("console", "$ echo hello world\nhello   world\n"), _context(tmp_path))
    with pytest.raises(AssertionError, match="did not print"):
        check_console(_block("console", "$ echo hello\ngoodbye\n"), _context(tmp_path))
    with pytest.raises(AssertionError, match="exited 0, not 2"):
        check_console(_block("console", "$ true  # exit 2\n"), _context(tmp_path))


def test_python_blocks_share_a_namespace_and_save_named_files(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    check_python(_block("python", "# mod.py\nVALUE = 41\n"), ctx)
    check_python(_block("python", "VALUE += 1\n"), ctx)
    assert ctx.namespace["VALUE"] == 42
    assert (tmp_path / "mod.py").read_text() == "# mod.py\nVALUE = 41\n"


def test_promql_names_an_unknown_metric(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    check_promql(_block("promql", "rota_store_up == 0\n"), ctx)
    with pytest.raises(AssertionError, match="rota_no_such_metric"):
        check_promql(_block("promql", "rota_no_such_metric > 1\n"), ctx)
