"""Where a landing visit spends its time: cProfile and the SQL of /l/<slug>/ under Django's test
client, against PostgreSQL, DEBUG off, Celery publishing to Redis (no worker), one thread.

    python bench/landing/profile_view.py [--visits 500] [--warmup 60] [--top 30] [--keep]

Creates its own database (scrm_bench_landing_profile), migrates it, sets up the same published
landing code as run.py, then profiles in a child process with the server's environment. The
warm-up goes past the 18 landing slots, so the profile shows the steady state of a busy code
(every slot leased, the oldest lease reused). Not named profile.py: that would shadow the
standard library's `profile`, which cProfile imports.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import secrets
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.callback_ingest import infra  # noqa: E402
from bench.landing.dataset import SLUG  # noqa: E402
from bench.landing.run import DEFAULT_CAPS, dataset, setup_env  # noqa: E402
from bench.landing.visits import USER_AGENT  # noqa: E402

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/scrm_bench_landing_profile"
BROKER_URL = "redis://127.0.0.1:6379/13"
# The app's steps broken down by callee (regexes on pstats' "file:line(function)").
STEPS = (
    r"channels_app/(views|selectors|lock_objects|landing_db|landing_redis|services/landing|"
    r"services/assignment)\.py:\d+\((landing|landing_config|landing_visit|_visit_on|loads|"
    r"attempt|staff_ranked|daily_counters_read|daily_counter_claim|landing_slot_lease_lock|"
    r"_claim|_lease|_returning|_record|_refill)\)"
)
TOTALS = (
    ("request, through the test client", r"django/test/client\.py:\d+\(request\)"),
    ("the view (channels_app.views.landing)", r"channels_app/views\.py:\d+\(landing\)"),
    ("SQL: execute, all queries", r"method 'execute' of 'psycopg2"),
    ("SQL: COMMIT", r"method 'commit' of 'psycopg2"),
    ("ORM: compiling SQL (SQLCompiler.as_sql)", r"models/sql/compiler\.py:\d+\(as_sql\)"),
    ("Celery: publishing the top-up task", r"celery/app/task\.py:\d+\(apply_async\)"),
    ("template rendering (shortcuts.render)", r"django/shortcuts\.py:\d+\(render\)"),
)
PARAMS = {"utm_source": "pyq", "utm_medium": "qr", "utm_campaign": "618", "utm_content": "ad01"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=500, help="profiled visits [500]")
    parser.add_argument("--warmup", type=int, default=60, help="visits before profiling [60]")
    parser.add_argument("--top", type=int, default=30, help="functions listed per table [30]")
    parser.add_argument("--caps", default=DEFAULT_CAPS, help=f"daily caps [{DEFAULT_CAPS}]")
    parser.add_argument("--database-url", default=DATABASE_URL, help="dropped afterwards")
    parser.add_argument("--broker-url", default=BROKER_URL, help="its db is flushed")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the child: Django configured with the server's environment ----------------------------------


def _visit(client, path: str, index: int, *, tag: str) -> int:
    user_agent = USER_AGENT.format(tag=tag, index=index)
    return client.get(path, PARAMS, HTTP_USER_AGENT=user_agent).status_code


def _per_visit_ms(client, path: str, first: int, count: int, tag: str) -> float:
    started = time.perf_counter()
    for index in range(first, first + count):
        _visit(client, path, index, tag=tag)
    return (time.perf_counter() - started) * 1000 / count


def child(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    path, tag = f"/l/{SLUG}/", secrets.token_hex(4)
    statuses = {_visit(client, path, index, tag=tag) for index in range(args.warmup)}
    with connection.cursor() as cursor:  # planner statistics, as autovacuum would gather
        cursor.execute("ANALYZE")
    print(f"warm-up: {args.warmup} visits, statuses {sorted(statuses)}; ANALYZE")

    # Django logs statement times in whole milliseconds: time them here with perf_counter.
    # BEGIN and COMMIT are only in Django's log (psycopg2 begins implicitly, commits by API).
    timings: list[float] = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - started) * 1000)

    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(timed):
        status = _visit(client, path, args.warmup, tag=tag)
    statements = [q for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    print(
        f"\nOne visit (status {status}): {len(queries)} statements, "
        f"{len(statements)} of them queries or savepoints; "
        f"{sum(timings):.2f} ms in cursor.execute"
    )
    timed_ms = iter(timings)
    for number, query in enumerate(queries.captured_queries, 1):
        sql = " ".join(query["sql"].split())
        ms = "    -   " if sql in ("BEGIN", "COMMIT") else f"{next(timed_ms, 0.0):6.2f} ms"
        print(f"  {number:>2}. {ms}  {sql[:150]}")

    first = args.warmup + 1
    baseline_ms = _per_visit_ms(client, "/bench/empty/", first, 200, tag)
    landing_ms = _per_visit_ms(client, path, first, 100, tag)
    first += 100
    print(
        f"\nWall time per request, one thread, no profiler: /bench/empty/ {baseline_ms:.2f} ms, "
        f"{path} {landing_ms:.2f} ms"
    )

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for index in range(first, first + args.visits):
        _visit(client, path, index, tag=tag)
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"\ncProfile: {args.visits} visits in {elapsed:.2f} s (profiler overhead included)")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(args.top)
        body = out.getvalue()
        print(f"\n-- top {args.top} by {order} --")
        print(body[body.index("   ncalls") :] if "   ncalls" in body else body)
    print("\n-- where a visit's time goes (ms per visit, profiler overhead included) --")
    print(breakdown(pstats.Stats(profiler), args.visits))
    return 0


def _matching(stats: pstats.Stats, pattern: str) -> list[tuple]:
    regex = re.compile(pattern)
    return [key for key in stats.stats if regex.search(pstats.func_std_string(key))]


def breakdown(stats: pstats.Stats, visits: int, *, floor_ms: float = 0.15) -> str:
    """Cumulative time per visit of a few totals, then of each step of the app's landing path
    with its costliest callees (pstats' caller records: time spent under that caller only)."""
    per_visit = 1000 / visits
    lines = []
    for label, pattern in TOTALS:
        seconds = sum(stats.stats[key][3] for key in _matching(stats, pattern))
        lines.append(f"  {label:<56} {seconds * per_visit:8.2f}")
    steps = [key for key in _matching(stats, STEPS) if stats.stats[key][3] * per_visit >= floor_ms]
    for step in sorted(steps, key=lambda key: -stats.stats[key][3]):
        lines.append(f"\n  {_short(step):<56} {stats.stats[step][3] * per_visit:8.2f}")
        callees = [
            (record[3] * per_visit, key)
            for key, (*_, callers) in stats.stats.items()
            if (record := callers.get(step)) is not None
        ]
        for ms, key in sorted(callees, reverse=True):
            if ms >= floor_ms:
                lines.append(f"    {_short(key):<54} {ms:8.2f}")
    return "\n".join(lines)


def _short(key: tuple) -> str:
    path, line, name = key
    if path == "~":
        return name
    parts = Path(path).parts
    where = "/".join(parts[-2:]) if "site-packages" in parts or parts[-2:-1] else parts[-1]
    return f"{where}:{line}({name})"


# -- the parent: database, data, teardown -------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    db = infra.db_params(args.database_url)
    broker = redis.Redis.from_url(args.broker_url)
    env = {"database_url": args.database_url, "broker_url": args.broker_url}
    secret_key = secrets.token_urlsafe(50)
    manage_env = infra.server_env(settings_module="scrm.settings", secret_key=secret_key, **env)
    child_env = setup_env(
        infra.server_env(
            settings_module="bench.callback_ingest.settings", secret_key=secret_key, **env
        )
    )
    child_env["ALLOWED_HOSTS"] = "testserver"  # the test client's host name
    created = False
    try:
        print(f"Creating database {db['dbname']} and migrating ...", flush=True)
        infra.database_create(db)
        created = True
        broker.flushdb()
        infra.manage(manage_env, "migrate", "--noinput", "-v", "0")
        dataset(child_env, "setup", "--caps", args.caps)
        command = [sys.executable, "-m", "bench.landing.profile_view", "--child"]
        command += ["--visits", str(args.visits), "--warmup", str(args.warmup)]
        command += ["--top", str(args.top)]
        return subprocess.run(command, cwd=ROOT, env=child_env, check=False).returncode
    finally:
        with suppress(redis.RedisError):
            broker.flushdb()
        if created and not args.keep:
            infra.database_drop(db)


if __name__ == "__main__":
    sys.exit(main())
