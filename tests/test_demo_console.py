"""`make run` as a newcomer sees it: `manage.py demo` in a process of its own on a fresh
database, its console read line by line. The login and the URLs come last, framed; no line per
simulated request, no kombu warning in eager mode; a second start adds no second burst."""

from __future__ import annotations

import os
import queue
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "LANDING_REDIS_URL",
            "WECOM_API_BASE", "LOG_LEVEL", "CACHE_KEY_PREFIX", "LANDING_REDIS_PREFIX",
            "CELERY_BROKER_KEY_PREFIX", "DJANGO_SETTINGS_MODULE")  # fmt: skip
RULE = "=" * 78


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _demo_console(env: dict[str, str], *, timeout: float = 180.0) -> list[str]:
    """The demo's console up to the end of its banner (the second rule), then stopped."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--addr", f"127.0.0.1:{port}", "--no-history",
         "--every", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    console: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and console.count(RULE) < 2:
            try:
                console.append(lines.get(timeout=1).rstrip("\n"))
            except queue.Empty:
                assert process.poll() is None, "\n".join(console)
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert console.count(RULE) == 2, "\n".join(console)
    return console


def _customers(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM contacts_externalcontact").fetchone()[0]


def test_the_demo_console_ends_with_the_login_and_a_second_start_adds_no_burst(tmp_path):
    database = tmp_path / "demo.sqlite3"
    env = {name: value for name, value in os.environ.items() if name not in SERVICES}
    env.update({"DEBUG": "true", "DATABASE_URL": f"sqlite:///{database}"})
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env,
                   check=True, capture_output=True)  # fmt: skip

    first = _demo_console(env)
    text = "\n".join(first)
    banner = first[first.index(RULE) :]
    assert any("operator / scrm-demo-2026" in line for line in banner)
    assert any("/admin/" in line for line in banner)
    assert any("/l/xhs-618/" in line for line in banner)
    assert "40 customers added" in text
    assert "No hostname was supplied" not in text
    assert "POST /wecom/callback" not in text  # no line per simulated request
    assert " INFO " not in text
    customers = _customers(database)
    assert customers >= 40  # the burst's adds, and those of the landing scans

    second = _demo_console(env)
    assert "no new burst" in "\n".join(second)
    assert _customers(database) == customers
