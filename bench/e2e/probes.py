"""What the processes cost while the burst runs: CPU and RSS per process (Linux /proc), with
PostgreSQL's backends of the run's database found by their process title."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process (all its threads); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """A process and its descendants (gunicorn's workers, a prefork pool's children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children(current))
    return found


def postmaster_pid() -> int | None:
    """The PostgreSQL server's main process on this machine (the parent of its backends)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith((b"/postgres", b"postgres")) and b"-D" in argv:
            return int(name)
    return None


def backends_of(postmaster: int, dbname: str) -> list[int]:
    """Backends connected to `dbname`: their title reads "postgres: <user> <db> <host> ..."."""
    wanted = f" {dbname} ".encode()
    pids = []
    for pid in children(postmaster):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                title = handle.read()
        except OSError:
            continue
        if wanted in title:
            pids.append(pid)
    return pids


@dataclass
class Group:
    """A named set of processes (a role: web, a worker, PostgreSQL): the last CPU reading of
    every process ever seen in it, and the largest RSS of each."""

    name: str
    find: Callable[[], list[int]]
    start_cpu: dict[int, float] = field(default_factory=dict)
    last_cpu: dict[int, float] = field(default_factory=dict)
    max_rss: dict[int, float] = field(default_factory=dict)

    def sample(self) -> None:
        for pid in self.find():
            cpu = proc_cpu(pid)
            if cpu is None:
                continue
            self.start_cpu.setdefault(pid, cpu if self.started else 0.0)
            self.last_cpu[pid] = cpu
            rss = proc_rss_mb(pid)
            if rss is not None:
                self.max_rss[pid] = max(rss, self.max_rss.get(pid, 0.0))

    started: bool = False

    def mark_start(self) -> None:
        """From now on: CPU counted from each process's current reading (new ones from 0)."""
        self.start_cpu, self.last_cpu, self.max_rss = {}, {}, {}
        self.started = True
        self.sample()
        self.started = False  # processes appearing later started after the mark: from 0

    def cpu_seconds(self) -> float:
        start = self.start_cpu
        return sum(max(0.0, cpu - start.get(pid, 0.0)) for pid, cpu in self.last_cpu.items())

    def processes_seen(self) -> int:
        return len(self.last_cpu)


class Sampler(threading.Thread):
    """Reads every group each `interval` seconds. A PostgreSQL backend that lives shorter
    than the interval is missed (and one's last moments always are): with a connection per
    task the PostgreSQL figure is a lower bound; with connections reused it is close."""

    def __init__(self, groups: list[Group], interval: float = 0.05) -> None:
        super().__init__(name="e2e-sampler", daemon=True)
        self.groups, self.interval = groups, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for group in self.groups:
                group.sample()
            time.sleep(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        for group in self.groups:
            group.sample()
