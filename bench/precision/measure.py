"""What every case measures alike: the window, CPU over the window, and the tick accounting.

Fire times are whole seconds (every schedule fires every second, aligned to the epoch), so a
tick is identified by (schedule, whole second) in both tools.
"""

from __future__ import annotations

import glob
import math
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Window:
    """Ticks at whole seconds in [start, end) are judged; CPU is measured over
    [start - 0.5, end - 0.5), the span in which those ticks are decided and run."""

    start: int
    end: int

    @classmethod
    def after(cls, t0: float, warmup: int, seconds: int) -> Window:
        start = math.ceil(t0) + warmup
        return cls(start, start + seconds)

    @property
    def cpu_from(self) -> float:
        return self.start - 0.5

    @property
    def cpu_to(self) -> float:
        return self.end - 0.5

    def seconds(self) -> range:
        return range(self.start, self.end)


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_s(native_id: int) -> float:
    """CPU seconds of one thread of this process (Linux /proc; 1/CLK_TCK resolution)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def processes_cpu_s(comm: str, cmdline_has: str = "") -> float:
    """CPU seconds of every process named `comm` whose command line contains `cmdline_has`
    (PostgreSQL backends show their database there: "postgres: 15/main: user db host")."""
    total = 0
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as f:
                text = f.read()
            name = text[text.index("(") + 1 : text.rindex(")")]
            if name != comm:
                continue
            if cmdline_has:
                with open(path[: -len("stat")] + "cmdline", "rb") as f:
                    if cmdline_has.encode() not in f.read():
                        continue
        except OSError:  # ended meanwhile
            continue
        fields = text.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # steal included, guest is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 1.0))


class CpuSampler:
    """Samples named CPU counters at window.cpu_from and window.cpu_to, in a daemon thread;
    `result()` gives each counter's use in percent of one core over that span."""

    def __init__(self, window: Window, counters: dict[str, Callable[[], float]]) -> None:
        self.window = window
        self.counters = counters
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def _sample(self) -> None:
        self.samples.append((time.time(), {k: f() for k, f in self.counters.items()}))

    def _run(self) -> None:
        sleep_until(self.window.cpu_from)
        self._sample()
        sleep_until(self.window.cpu_to)
        self._sample()

    def result(self) -> dict[str, Any]:
        if len(self.samples) < 2:
            return {"cpu_error": f"only {len(self.samples)} of 2 CPU samples taken"}
        (t1, a), (t2, b) = self.samples
        out: dict[str, Any] = {"cpu_span_s": round(t2 - t1, 3)}
        for key in self.counters:
            out[f"{key}_s"] = round(b[key] - a[key], 3)
            out[f"{key}_pct"] = round(100 * (b[key] - a[key]) / (t2 - t1), 2)
        if abs(t1 - self.window.cpu_from) > 0.2:
            out["cpu_warning"] = f"first sample {t1 - self.window.cpu_from:+.2f}s off"
        return out


@dataclass(frozen=True)
class Record:
    """One run (rota: one row of rota_runs) or one execution (APScheduler)."""

    schedule: str
    fire: int  # the nominal fire time, whole seconds since the epoch
    lateness_s: float | None  # start - nominal; None if it never started
    executions: int = 1


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(records: Iterable[Record], schedules: list[str], window: Window) -> dict[str, Any]:
    """Lateness percentiles, missed and duplicate ticks for the window's fire times."""
    per_tick: Counter[tuple[str, int]] = Counter()
    executions = 0
    started: dict[tuple[str, int], float] = {}
    never_started = 0
    for r in records:
        if not window.start <= r.fire < window.end:
            continue
        key = (r.schedule, r.fire)
        per_tick[key] += 1
        executions += max(r.executions - 1, 0)  # re-executions of one run count as duplicates
        if r.lateness_s is None:
            never_started += 1
        else:
            started[key] = min(r.lateness_s, started.get(key, math.inf))
    expected = len(schedules) * (window.end - window.start)
    wanted = set(schedules)
    unknown = {s for s, _ in per_tick} - wanted
    if unknown:
        raise RuntimeError(f"runs of unknown schedules: {sorted(unknown)[:5]}")
    missed = expected - len(started)
    duplicates = sum(n - 1 for n in per_tick.values() if n > 1) + executions
    late = sorted(started.values())
    out: dict[str, Any] = {
        "schedules": len(schedules),
        "window_s": window.end - window.start,
        "expected": expected,
        "runs": sum(per_tick.values()),
        "missed": missed,
        "never_started": never_started,
        "duplicates": duplicates,
    }
    if late:
        out.update(
            p50_ms=round(1000 * percentile(late, 50), 1),
            p99_ms=round(1000 * percentile(late, 99), 1),
            max_ms=round(1000 * late[-1], 1),
            min_ms=round(1000 * late[0], 1),
            over_50ms_pct=round(100 * sum(1 for v in late if v > 0.05) / len(late), 2),
            over_1s=sum(1 for v in late if v > 1.0),
        )
    return out
