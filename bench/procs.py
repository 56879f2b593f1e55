"""Memory of running processes, read from /proc (Linux)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def children_of(pid: int) -> list[int]:
    """Every descendant of pid (prefork children, gunicorn workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def tree(pid: int) -> list[int]:
    return [pid, *children_of(pid)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time these processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def machine_idle_seconds() -> float:
    """Idle (and iowait) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, field_name: str = "VmRSS") -> float | None:
    """VmRSS (now) or VmHWM (peak) in MB, None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class RssSampler:
    """Samples the resident memory of a set of process trees in a background thread."""

    roots: dict[str, int]  # role -> root pid
    interval: float = 0.25
    samples: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for role, root in self.roots.items():
                for pid in tree(root):
                    rss = memory_mb(pid)
                    if rss is not None:
                        self.roles[pid] = role
                        self.samples.setdefault(pid, []).append((now, rss))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def series(self, role: str, since: float = 0.0) -> dict[int, list[float]]:
        return {
            pid: [rss for when, rss in points if when >= since]
            for pid, points in self.samples.items()
            if self.roles.get(pid) == role
        }
