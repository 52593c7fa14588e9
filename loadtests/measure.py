"""What every benchmark prints: latency percentiles of sequential calls; CPU and memory of the
stack's processes."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def report(name: str, samples_ms: list[float]) -> None:
    samples_ms.sort()
    p50 = statistics.median(samples_ms)
    p99 = samples_ms[min(len(samples_ms) - 1, int(len(samples_ms) * 0.99))]
    print(f"{name:<52} n={len(samples_ms):<6} p50={p50:7.2f} ms  p99={p99:7.2f} ms")  # noqa: T201


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Milliseconds each of ``n`` sequential calls took."""
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


# -- CPU and memory of the stack's processes (from /proc) ----------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds of the process and its reaped children, RSS bytes)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after its last ')'
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime 14..17, rss 24
    ticks = sum(int(v) for v in fields[11:15])
    return int(fields[1]), ticks / CLOCK_TICKS, int(fields[21]) * PAGE_SIZE


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            tree.setdefault(stat[0], []).append(int(entry.name))
    return tree


@dataclass(frozen=True)
class Usage:
    """Per process of the stack: CPU seconds (utime+stime of it, its live descendants and their
    reaped children) and RSS bytes (summed over the same processes)."""

    cpu: dict[str, float]
    rss: dict[str, int]

    def minus(self, before: Usage) -> dict[str, float]:
        return {name: cpu - before.cpu.get(name, 0.0) for name, cpu in self.cpu.items()}


def usage(pids: dict[str, int]) -> Usage:
    """CPU and RSS now for every named process (``pids.json`` of a run folder) and its children
    (PostgreSQL's backends, the `runuser` wrapper's child)."""
    tree = _children()
    cpu: dict[str, float] = {}
    rss: dict[str, int] = {}
    for name, root in pids.items():
        pending, seen = [root], set()
        while pending:
            pid = pending.pop()
            if pid in seen or (stat := _stat(pid)) is None:
                continue
            seen.add(pid)
            cpu[name] = cpu.get(name, 0.0) + stat[1]
            rss[name] = rss.get(name, 0) + stat[2]
            pending.extend(tree.get(pid, []))
    return Usage(cpu, rss)
