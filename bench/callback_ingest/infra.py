"""The benchmark's surroundings: a scratch PostgreSQL database, the Redis broker, gunicorn."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing, suppress
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


def gunicorn_command(*, port: int, workers: int, worker_class: str, threads: int) -> list[str]:
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
