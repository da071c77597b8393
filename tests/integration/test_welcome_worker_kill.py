"""A welcome worker killed with SIGKILL in the middle of a burst of adds loses no welcome: the
messages it held stay in Redis's unacked set for the broker's visibility timeout (an hour),
so the welcome sweep (beat, every 2 s, on the welcome workers' second queue) sends them from
their queued
WelcomeDelivery rows while their welcome_code lives. Every customer gets at most one welcome,
and at least 95 % get theirs within the code's 20 seconds (the sandbox records when each code
was issued and used). Two welcome workers, a default worker and beat run as real processes.

A timing SLA on the real services: marked `sla`, run by `make test-sla` (see the README)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import close_old_connections, connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from channels_app.models import SourceRule, WelcomeDelivery
from scrm.celery import app as celery_app
from scrm.management.commands.setup_periodic_tasks import PERIODIC_TASKS
from scrm.wecom.sandbox.models import SandboxWelcomeCode
from scrm.wecom.sandbox.simulate import SimulationReport, simulate_adds
from tests.integration.conftest import ROOT, _start_worker, requires_broker, worker_env
from tests.isolation import RUN_ID

pytestmark = [pytest.mark.integration, pytest.mark.sla, requires_broker]
BURST = 200
RATE = 20  # adds a second: a 10-second burst, the worker dies in its middle
KILL_AFTER = 20  # welcomes handled before the kill, which waits for A to be at work
QUEUES = "welcome,welcome_sweep"
# Per run: two runs on one machine keep their workers' logs apart.
LOGS = ROOT / ".pytest-welcome-kill" / RUN_ID
FIGURES = ROOT / ".pytest-welcome-kill.json"


def _beat_schedule_only_the_welcome_sweep() -> None:
    """The welcome sweep's row of the deployed schedule (the rest would only add load)."""
    ((name, task, seconds),) = [
        row for row in PERIODIC_TASKS if row[1].endswith("welcome_sweep_task")
    ]
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=seconds, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval})


@pytest.fixture
def processes(transactional_db) -> Iterator[dict[str, subprocess.Popen]]:
    """A default worker, two welcome workers (A is the one to kill) and beat."""
    assert connection.vendor == "postgresql"
    celery_app.control.purge()
    _beat_schedule_only_the_welcome_sweep()
    LOGS.mkdir(parents=True, exist_ok=True)
    started: dict[str, tuple[subprocess.Popen, object]] = {
        "default": _start_worker("default", LOGS / "default.log"),
        # As deployed (README): the welcome workers take the sweep's queue too.
        "welcome-a": _start_worker(QUEUES, LOGS / "welcome-a.log", name="welcome-a"),
        "welcome-b": _start_worker(QUEUES, LOGS / "welcome-b.log", name="welcome-b"),
    }
    beat_log = (LOGS / "beat.log").open("w")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "scrm", "beat", "--loglevel", "INFO",
         "-S", "django_celery_beat.schedulers:DatabaseScheduler", "--max-interval", "1",
         "--pidfile", ""],
        cwd=ROOT, env=worker_env(), stdout=beat_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    started["beat"] = (beat, beat_log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, (process, _log) in started.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited: " + (LOGS / f"{name}.log").read_text())
            if len(celery_app.control.ping(timeout=0.5)) >= 3:
                break
        else:
            raise RuntimeError("celery workers did not answer pings within 60 s")
        yield {name: process for name, (process, _log) in started.items()}
    finally:
        for process, log in started.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()


def _in_flight(log: Path) -> int:
    """Tasks a worker received and never finished: what its death took with it."""
    lines = [line for line in log.read_text().splitlines() if "after_add_task[" in line]
    received = sum(1 for line in lines if " received" in line)
    return received - sum(1 for line in lines if " succeeded in " in line)


def _sweep_sent(log: Path) -> int:
    """Welcomes the sweeps sent (their return values in the worker's log)."""
    total = 0
    for line in log.read_text().splitlines():
        if "welcome_sweep_task[" in line and " succeeded in " in line:
            total += int(line.rsplit(":", 1)[1].strip() or 0)
    return total


def test_a_welcome_worker_killed_with_sigkill_mid_burst_loses_no_welcome(
    corp, live_server, processes
):
    SourceRule.objects.create(corp=corp, name="所有新客户", welcome_text="您好 {customer_name}")
    reports: list[SimulationReport] = []

    def burst() -> None:
        try:
            reports.append(simulate_adds(corp_id=corp.corp_id, adds=BURST, rate=RATE,
                                         url=live_server.url, seed=13))  # fmt: skip
        finally:
            close_old_connections()
            connection.close()

    sender = threading.Thread(target=burst, name="welcome-kill-burst")
    sender.start()
    handled = WelcomeDelivery.objects.exclude(outcome=WelcomeDelivery.Outcome.QUEUED)
    a_log = LOGS / "welcome-a.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (handled.count() < KILL_AFTER or _in_flight(a_log) < 2):
        time.sleep(0.1)
    os.kill(processes["welcome-a"].pid, signal.SIGKILL)  # in the middle of its tasks
    killed_after = handled.count()
    processes["welcome-a"].wait(timeout=10)
    sender.join(timeout=120)
    assert reports, "the burst did not finish"
    assert reports[0].answered_200 == BURST

    deadline = time.monotonic() + 90
    while WelcomeDelivery.objects.exclude(outcome=WelcomeDelivery.Outcome.QUEUED).count() < BURST:
        assert time.monotonic() < deadline, (LOGS / "default.log").read_text()[-3000:]
        time.sleep(0.5)

    in_flight = _in_flight(a_log)
    codes = list(SandboxWelcomeCode.objects.values("external_userid", "issued_at", "used_at"))
    used = [c for c in codes if c["used_at"] is not None]
    delays = sorted((c["used_at"] - c["issued_at"]).total_seconds() for c in used)
    within = sum(1 for d in delays if d < 20)
    p99 = delays[math.ceil(0.99 * len(delays)) - 1] if delays else None
    # Where the time went: the inbox (callback to queued welcome), then the welcome itself.
    rows = list(WelcomeDelivery.objects.values_list("received_at", "queued_at", "sent_at"))
    inbox = sorted((q - r).total_seconds() for r, q, _s in rows)
    welcome = sorted((s - q).total_seconds() for _r, q, s in rows)
    outcomes: dict[str, int] = {}
    for outcome in WelcomeDelivery.objects.values_list("outcome", flat=True):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    figures = {
        "adds": BURST, "killed_after_handled": killed_after, "in_flight_at_kill": in_flight,
        "welcomes_sent": len(used), "within_20s": within, "p99_delay_s": p99,
        "max_delay_s": delays[-1] if delays else None, "outcomes": outcomes,
        "inbox_lag_p50_p99_s": [inbox[len(inbox) // 2], inbox[math.ceil(0.99 * len(inbox)) - 1]],
        "welcome_lag_p50_p99_s": [
            welcome[len(welcome) // 2], welcome[math.ceil(0.99 * len(welcome)) - 1]
        ],
        "welcome_lag_max_s": welcome[-1],
        "sent_by_sweep": _sweep_sent(LOGS / "welcome-b.log"),
    }  # fmt: skip
    FIGURES.write_text(json.dumps(figures, indent=2))
    print("welcome worker kill:", json.dumps(figures))

    assert in_flight >= 1, "the killed worker held no welcome: nothing was tested"
    # At most one welcome per customer: one code per add, each used at most once by WeCom,
    # and one WelcomeDelivery per add.
    assert len(codes) == BURST
    assert len({c["external_userid"] for c in codes}) == BURST
    assert WelcomeDelivery.objects.count() == BURST
    assert outcomes.get(WelcomeDelivery.Outcome.SENT, 0) <= len(used)
    # At least 95 % within the code's 20 seconds.
    assert within >= math.ceil(0.95 * BURST), figures
