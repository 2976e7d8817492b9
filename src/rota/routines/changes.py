"""What changed in routine files between two looks (what `rota dev` says when it reloads):
routines added, removed, with changed triggers, or otherwise edited, and files that do not
load. A changed schedule fires no surprise run: the scheduler registers a redefined schedule
afresh from now (storage/schedules.py `sync_schedules`), so the ticks the old or the new
definition would have had in between are never fired."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .loader import Known, parse
from .triggers import build as build_trigger

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__"}


@dataclass(frozen=True)
class Look:
    """Each routine's triggers and its file's text, by routine name; the files that fail."""

    triggers: dict[str, tuple[str, ...]]
    texts: dict[str, str]
    problems: dict[str, str]  # file -> its first problem


def look(root: str | Path) -> Look:
    """Every `routines/*.md` file under `root` (syntax and fields only: names are checked
    by the app when it loads them)."""
    triggers: dict[str, tuple[str, ...]] = {}
    texts: dict[str, str] = {}
    problems: dict[str, str] = {}
    for path in sorted(Path(root).rglob("routines/*.md")):
        if SKIP_DIRS.intersection(path.parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems[str(path)] = f"cannot read: {exc}"
            continue
        routine, found = parse(text, str(path), Known(check_names=False))
        if routine is None:
            problems[str(path)] = str(found[0])
            continue
        spec = routine.spec
        built = [build_trigger(spec.name, t) for t in spec.triggers]
        triggers[spec.name] = tuple(t.describe() if t else "api" for t in built)
        texts[spec.name] = text
    return Look(triggers, texts, problems)


def changes(before: Look, after: Look) -> list[str]:
    """One line per change, in name order."""
    lines = [f"routine added: {n}" for n in sorted(set(after.triggers) - set(before.triggers))]
    lines += [f"routine removed: {n}" for n in sorted(set(before.triggers) - set(after.triggers))]
    for name in sorted(set(before.triggers) & set(after.triggers)):
        old, new = before.triggers[name], after.triggers[name]
        if old != new:
            lines.append(
                f"routine {name}: triggers changed ({'; '.join(old) or 'none'} -> "
                f"{'; '.join(new) or 'none'}); a new schedule starts from now, no missed "
                "tick is fired"
            )
        elif before.texts[name] != after.texts[name]:
            lines.append(f"routine {name}: changed")
    for file, problem in sorted(after.problems.items()):
        if before.problems.get(file) != problem:
            lines.append(f"routine file not loaded: {problem}")
    return lines
