"""Start-up time of `import rota`, `rota --help` and `rota --version`, old against new.

`from rota import App` is what every command that opens the app or a store pays on top.

    git archive <commit> | tar -x -C /tmp/rota-before
    .venv/bin/python -m bench.startup --before /tmp/rota-before/src --rounds 5

Each round runs every command once with the old source tree first on PYTHONPATH and once
with this one, back to back, in fresh interpreters; it prints the median wall time and the
median CPU time (user + system of the child) per command and build. On a shared machine the
CPU time is the steadier figure: the wall time also counts waiting for a core.

`--pycache DIR` has the children write and reuse their bytecode under DIR (after one untimed
round), as an installed package does; without it they inherit the environment, and with
PYTHONDONTWRITEBYTECODE set (as on the CI machine) each one compiles rota's modules again.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "src"
CLI = "from rota.cli import main; main()"
COMMANDS = {
    "import rota": ["-c", "import rota"],
    "from rota import App": ["-c", "from rota import App"],
    "rota --help": ["-c", CLI, "--help"],
    "rota --version": ["-c", CLI, "--version"],
}


def timed(src: str, argv: list[str], pycache: str | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh interpreter running argv with src first."""
    env = {**os.environ, "PYTHONPATH": src, "COLUMNS": "100"}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    """Interleave the builds, round by round, and print one table of medians (ms)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="the old build's src directory (omit: this build only)")
    p.add_argument("--after", default=str(HERE), help="the new build's src (default: this one)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pycache", help="the children's bytecode cache (omit: the environment's)")
    args = p.parse_args()
    builds = {"before": args.before, "after": args.after} if args.before else {"now": args.after}
    if args.pycache:
        for argv in COMMANDS.values():
            for src in builds.values():
                timed(src, argv, args.pycache)  # fills the cache; not counted
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            for build, src in builds.items():
                samples.setdefault((name, build), []).append(timed(src, argv, args.pycache))
    cache = f"bytecode under {args.pycache}" if args.pycache else "the environment's bytecode"
    print(f"median of {args.rounds} rounds, ms (wall / CPU), {cache}")
    for name in COMMANDS:
        cells = []
        for build in builds:
            runs = samples[(name, build)]
            wall = statistics.median(w for w, _ in runs) * 1000
            cpu = statistics.median(c for _, c in runs) * 1000
            cells.append(f"{build} {wall:6.0f} / {cpu:6.0f}")
        print(f"{name:20}  " + "   ".join(cells))


if __name__ == "__main__":
    main()
