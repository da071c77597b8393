"""The benchmark's surroundings: a scratch PostgreSQL database, the Redis broker, gunicorn."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import closing, suppress
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg2
import redis
from psycopg2 import sql

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


# -- PostgreSQL and Redis ----------------------------------------------------------------------


def db_params(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"DATABASE_URL must be a postgres:// URL, not {parts.scheme}://")
    name = unquote(parts.path.lstrip("/"))
    # The script drops this database: refuse anything that does not look like a scratch one.
    if "bench" not in name:
        raise SystemExit(f"refusing to create/drop database {name!r}: its name lacks 'bench'")
    return {
        "dbname": name,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or "") or None,
        "host": parts.hostname or HOST,
        "port": parts.port or 5432,
    }


def _admin_connection(params: dict[str, object]):
    conn = psycopg2.connect(
        dbname="postgres",
        user=params["user"],
        password=params["password"],
        host=params["host"],
        port=params["port"],
    )
    conn.autocommit = True
    return conn


def database_create(params: dict[str, object]) -> None:
    with closing(_admin_connection(params)) as conn, conn.cursor() as cur:
        name = sql.Identifier(str(params["dbname"]))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(name))


def database_drop(params: dict[str, object]) -> None:
    with closing(_admin_connection(params)) as conn, conn.cursor() as cur:
        name = sql.Identifier(str(params["dbname"]))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def inbox_count(params: dict[str, object]) -> int:
    conn = psycopg2.connect(**params)
    with closing(conn), conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM wecom_callbackevent")
        return int(cur.fetchone()[0])


def broker_queue_length(client: redis.Redis) -> int:
    # kombu's Redis transport keeps each queue as a list named after it ("default" here).
    return int(client.llen("default"))


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(
    *, settings_module: str, database_url: str, broker_url: str, secret_key: str
) -> dict[str, str]:
    """Production-like: DEBUG off, a real SECRET_KEY, no TLS redirect (plain loopback HTTP)."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "DEBUG": "false",
            "SECRET_KEY": secret_key,
            "ALLOWED_HOSTS": HOST,
            "SECURE_SSL_REDIRECT": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict[str, str], *command: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=300
    )


def gunicorn_command(
    *, port: int, workers: int, worker_class: str, threads: int, worker_connections: int = 0
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "scrm.wsgi:application",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--log-level",
        "warning",
        "--graceful-timeout",
        "5",
        "--no-control-socket",  # gunicorn >= 24: one fixed socket path per user otherwise
    ]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    if worker_connections:
        command += ["--worker-connections", str(worker_connections)]
    return command


def server_start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = log_path.open("wb")
    # Its own session, so the master and its workers are stopped together by the group id.
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def server_wait(
    proc: subprocess.Popen, *, port: int, path: str, log_path: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{tail(log_path)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn not ready after {timeout:.0f} s:\n{tail(log_path)}")


def server_stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_busy(interval: float = 1.0) -> float | None:
    """Share of all CPUs busy over `interval` seconds (Linux /proc/stat), None elsewhere.

    The benchmark shares the machine with its server, PostgreSQL and Redis: anything else running
    (a test suite, a build) skews the figures, so the report warns about it.
    """

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    try:
        busy0, total0 = sample()
        time.sleep(interval)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / max(1, total1 - total0)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads (Linux /proc), 0 when gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")" that ends the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


CpuSnapshot = dict[int, float]


def cpu_used_since(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """CPU seconds used between two snapshots by the processes alive at the second one.

    A process that exited in between (a database connection recycled after CONN_MAX_AGE) takes its
    last share with it, so the figure is a slight underestimate, never negative.
    """
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def server_cpu(master_pid: int) -> CpuSnapshot:
    """CPU used so far by gunicorn's master and each worker (empty where /proc is missing)."""
    return {pid: _cpu_seconds(pid) for pid in [master_pid, *_children(master_pid)]}


def postgres_cpu(params: dict[str, object]) -> CpuSnapshot:
    """CPU used so far by each PostgreSQL backend connected to the bench database.

    WAL writer and checkpointer are shared with other databases and not counted.
    """
    conn = psycopg2.connect(**params)
    with closing(conn), conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cur.fetchall()]
    return {pid: _cpu_seconds(pid) for pid in pids}


# -- reporting and teardown, shared by every benchmark's run.py ---------------------------------

# Foreign CPU load (share of all CPUs) above which the figures are flagged as unreliable.
BUSY_WARNING = 0.15


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def warn_if_busy(*samples: float | None) -> None:
    busiest = max((s for s in samples if s is not None), default=None)
    if busiest is not None and busiest > BUSY_WARNING:
        print(
            f"WARNING: {busiest:.0%} of the CPUs were busy with other work while the benchmark's "
            "own processes were idle: the figures above are understated; rerun on a quiet machine."
        )


def results_finish(
    summary: dict,
    *,
    name: str,
    command: list[str],
    busy: tuple[float | None, float | None],
    results_dir: Path,
    log_path: Path,
) -> None:
    """Complete the summary with the server command and CPU readings, warn if the machine was
    busy, write it as bench/results/<name>-<UTC time>.json and point at logged tracebacks."""
    summary["config"]["gunicorn"]["command"] = " ".join(command[1:])
    summary["machine"]["cpu_busy_before"] = busy[0] and round(busy[0], 3)
    summary["machine"]["cpu_busy_after"] = busy[1] and round(busy[1], 3)
    warn_if_busy(*busy)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results_dir / f"{name}-{stamp}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"\nResults written to {shown}")
    tracebacks = tail(log_path, 100_000).count("Traceback")
    if tracebacks:
        print(f"gunicorn logged {tracebacks} traceback(s); see {log_path}")


def teardown(
    *,
    proc: subprocess.Popen | None,
    broker: redis.Redis,
    db: dict,
    created: bool,
    keep: bool,
    log_path: Path,
) -> None:
    """Stop the server, flush the broker db, drop the database unless kept, and remove an empty
    server log."""
    if proc is not None:
        server_stop(proc)
    with suppress(redis.RedisError):
        broker.flushdb()
    if created and not keep:
        database_drop(db)
    elif created:
        print(f"Database {db['dbname']} kept (--keep).")
    if log_path.exists() and log_path.stat().st_size == 0:  # keep only a log worth reading
        log_path.unlink()
        log_path.parent.rmdir()
