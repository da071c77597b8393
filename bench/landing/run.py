"""Benchmark the tracked-link landing page /l/<slug>/ against a bare Django view on one server.

    python bench/landing/run.py [--duration 15] [--connections 32] [--rounds 3] [--keep]

Creates a PostgreSQL database, migrates it, sets up a sandbox corp and a published landing code
whose pool has daily caps (some capped below what the run sends, some uncapped), starts gunicorn
(2 workers, as bench/callback_ingest) with DEBUG off and Celery publishing to Redis (no worker),
then loads the baseline view and the landing page alternately, every visit from a new visitor.
Afterwards it checks in the database that no cap was exceeded, that every capped member's
scans are covered by the capacity its DailyCounter gave and that every answer left one scan.
Prints medians next to the targets, writes JSON to bench/results/, tears everything down.
Exits 1 on a non-200 answer or a failed database check (with --strict, also when the ratio
target is missed). See README.md here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import redis  # noqa: E402

from bench.callback_ingest import infra, loadgen  # noqa: E402
from bench.callback_ingest.infra import HOST, fmt, median, median_of  # noqa: E402
from bench.landing.dataset import SLUG, parse_caps  # noqa: E402
from bench.landing.locks import ActivitySampler  # noqa: E402
from bench.landing.visits import visit_request, visit_requests  # noqa: E402

BASELINE_PATH = "/bench/empty/"
TARGET_PATH = f"/l/{SLUG}/"
TARGET_RATIO = 0.40
# Three capped members (700 in all, far fewer than a run's visits, so the caps are reached during
# the first round and hold under load from then on) and three uncapped ones: every answer must
# then be a 200 page, and a 503 "all advisors busy" is a failure.
DEFAULT_CAPS = "200,200,300,,,"
# Visits built per target round: the best rate so far (the baseline's before the first target
# round) times the round length, doubled; a round that runs out ends early and says so. A visit
# is ~0.4 kB, so the 300,000 cap costs ~120 MB at most.
BUDGET_HEADROOM = 2.0
BUDGET_FLOOR = 2_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per round [15]")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections [32]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per endpoint [3]")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds each [3]")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class [gthread]")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker [4]")
    parser.add_argument(
        "--max-requests", type=int, default=300_000, help="cap on requests per round [300000]"
    )
    parser.add_argument(
        "--caps",
        default=DEFAULT_CAPS,
        help=f"daily cap per pool member, empty for none [{DEFAULT_CAPS}]",
    )
    parser.add_argument(
        "--database-url",
        # Not read from $DATABASE_URL: the database is dropped, and callback_ingest's default
        # (scrm_bench) must not be shared with a run of that benchmark.
        default="postgres://postgres@127.0.0.1:5432/scrm_bench_landing",
        help="PostgreSQL URL; the database is created and dropped [scrm_bench_landing]",
    )
    parser.add_argument(
        "--broker-url",
        # Not read from $CELERY_BROKER_URL: the db is flushed, and a developer's broker is not ours.
        default="redis://127.0.0.1:6379/13",
        help="Redis broker URL for the server; its db is flushed [redis://127.0.0.1:6379/13]",
    )
    parser.add_argument(
        "--path",
        choices=["redis", "database"],
        default="redis",
        help="the landing path: Redis (LANDING_REDIS_URL set, as in production) or the "
        "database (unset) [redis]",
    )
    parser.add_argument(
        "--landing-redis-url",
        default="redis://127.0.0.1:6379/12",
        help="LANDING_REDIS_URL for --path redis; its db is flushed [redis://127.0.0.1:6379/12]",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--strict", action="store_true", help="also exit 1 when the ratio target is missed"
    )
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600]")
    if args.connections < 1 or args.rounds < 1 or args.workers < 1:
        parser.error("--connections, --rounds and --workers must be at least 1")
    try:
        args.cap_list = parse_caps(args.caps)
    except ValueError as exc:
        parser.error(f"--caps: {exc}")
    return args


# -- the rounds --------------------------------------------------------------------------------


class Bench:
    """Runs baseline and landing rounds against one server and keeps every result."""

    def __init__(
        self, args: argparse.Namespace, *, port: int, server_pid: int, db: dict[str, object]
    ) -> None:
        self.args = args
        self.port = port
        self.server_pid = server_pid
        self.db = db
        self.host_header = f"{HOST}:{port}"
        self.tag = secrets.token_hex(4)
        self.next_index = 0
        self.best_rps = {"baseline": 0.0, "target": 0.0}
        self.results: list[loadgen.RoundResult] = []
        self.activity: dict[str, dict[str, float]] = {}  # label -> mean connections per state
        # The same headers and query string as a visit: both endpoints pay the same parsing.
        self.baseline_request = visit_request(
            path=BASELINE_PATH, host=self.host_header, tag=self.tag, index=0
        )

    def _round(self, label: str, duration: float, **load: object) -> loadgen.RoundResult:
        # Server and database CPU per request: unlike req/s, hardly skewed by other load.
        server_cpu = infra.server_cpu(self.server_pid)
        db_cpu = infra.postgres_cpu(self.db)
        result = loadgen.run_round(
            label=label,
            host=HOST,
            port=self.port,
            connections=self.args.connections,
            duration=duration,
            **load,
        )
        result.server_cpu = infra.cpu_used_since(server_cpu, infra.server_cpu(self.server_pid))
        result.db_cpu = infra.cpu_used_since(db_cpu, infra.postgres_cpu(self.db))
        self.results.append(result)
        kind = label.split()[0]
        self.best_rps[kind] = max(self.best_rps[kind], result.rps)
        s = result.summary()
        print(
            f"  {label:<16} {s['rps']:>8.1f} req/s  p50 {s['p50_ms']:>7.2f} ms  "
            f"p99 {s['p99_ms']:>7.2f} ms  n {s['requests']:>6}  "
            f"status {dict(sorted(result.status_counts.items()))}  errors {result.errors}  "
            f"CPU/req gunicorn {s['server_cpu_ms_per_request']} ms, "
            f"postgres {s['db_cpu_ms_per_request']} ms"
            + ("  (ran out of pre-built visits)" if result.exhausted else ""),
            flush=True,
        )
        return result

    def baseline(self, label: str, duration: float) -> loadgen.RoundResult:
        return self._round(
            label, duration, repeat=self.baseline_request, max_requests=self.args.max_requests
        )

    def target(self, label: str, duration: float) -> loadgen.RoundResult:
        rate = self.best_rps["target"] or self.best_rps["baseline"]
        budget = int(rate * (duration + 2) * BUDGET_HEADROOM) + BUDGET_FLOOR
        budget = min(self.args.max_requests, budget)
        requests = visit_requests(
            path=TARGET_PATH,
            host=self.host_header,
            tag=self.tag,
            first_index=self.next_index,
            count=budget,
        )
        self.next_index += budget
        sampler = ActivitySampler(self.db).start()
        try:
            result = self._round(label, duration, requests=requests)
        finally:
            self.activity[label] = sampler.stop()
        shown = ", ".join(f"{state} {n:.1f}" for state, n in self.activity[label].items())
        print(f"  {'':<16} database connections, mean: {shown}", flush=True)
        return result


# -- the data, through the project's own code --------------------------------------------------


def dataset(env: dict[str, str], *command: str) -> dict:
    """Run bench/landing/dataset.py with the server's environment; its JSON answer."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.landing.dataset", *command],
        cwd=ROOT,
        env={**env, "LOG_LEVEL": "WARNING"},
        check=True,
        timeout=300,
        stdout=subprocess.PIPE,
    )
    return json.loads(completed.stdout.decode().strip().splitlines()[-1])


def setup_env(env: dict[str, str]) -> dict[str, str]:
    """Publishing must reach the in-process sandbox WeCom, never a WECOM_API_BASE from the
    developer's shell. The server gets the same, although the landing path calls no WeCom API."""
    env = {key: value for key, value in env.items() if key != "WECOM_API_BASE"}
    env["WECOM_SANDBOX_ENABLED"] = "true"
    # The load comes from one machine and measures the page, not the rate limits.
    for limit in ("PER_IP", "PER_IP_24H", "PER_CODE"):
        env[f"LANDING_RATE_LIMIT_{limit}"] = "0"
    return env


def database_analyze(params: dict[str, object]) -> str:
    """Give the planner statistics for the tables the warm-up filled, as autovacuum would within
    a minute; returns the server's autovacuum setting.

    Without them the returning-device lookup filters every scan of the code instead of using
    the device_key index, and slows down as the run adds scans.
    """
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        cur.execute("ANALYZE")
        cur.execute("SHOW autovacuum")
        return str(cur.fetchone()[0])


# -- the report --------------------------------------------------------------------------------


def summarize(rounds: list[loadgen.RoundResult]) -> dict[str, object]:
    statuses: dict[str, int] = {}
    for r in rounds:
        for status, count in r.status_counts.items():
            statuses[str(status)] = statuses.get(str(status), 0) + count
    return {
        "rps": round(median([r.rps for r in rounds]), 1),
        "p50_ms": round(median([r.percentile_ms(50) for r in rounds]), 2),
        "p99_ms": round(median([r.percentile_ms(99) for r in rounds]), 2),
        "requests": sum(r.answered for r in rounds),
        "status_counts": dict(sorted(statuses.items())),
        "errors": sum(r.errors for r in rounds),
        "non_200": sum(r.non_200 for r in rounds),
        "server_cpu_ms_per_request": median_of(r.cpu_ms_per_request(r.server_cpu) for r in rounds),
        "db_cpu_ms_per_request": median_of(r.cpu_ms_per_request(r.db_cpu) for r in rounds),
        "client_cpu_ms_per_request": median_of(r.cpu_ms_per_request(r.client_cpu) for r in rounds),
    }


def median_activity(rounds: list[dict[str, float]]) -> dict[str, float]:
    states = sorted({state for r in rounds for state in r})
    return {state: round(median([r.get(state, 0.0) for r in rounds]), 2) for state in states}


def answers(rounds: list[loadgen.RoundResult]) -> dict[str, int]:
    """Every answer of these rounds (warm-up included) by kind."""
    ok = sum(r.status_counts.get(200, 0) for r in rounds)
    busy = sum(r.status_counts.get(503, 0) for r in rounds)
    answered = sum(r.answered for r in rounds)
    return {
        "200": ok,
        "503": busy,
        "other": answered - ok - busy,
        "errors": sum(r.errors for r in rounds),
    }


def evaluate(
    baseline: dict, target: dict, *, baseline_answers: dict, target_answers: dict, db: dict
) -> dict[str, dict]:
    """The checks, each with its measured value, its goal, whether it is met and whether a
    failure is fatal (a broken guarantee) or only a missed performance target."""
    ratio = target["rps"] / baseline["rps"] if baseline["rps"] else 0.0
    staff = db["staff"]
    capped = [row for row in staff if row["cap"] is not None]
    over_cap = [row for row in capped if max(row["scans"], row["counter_assigned"]) > row["cap"]]
    # DailyCounter.assigned is capacity taken (claims on the database path, grants to the Redis
    # store): it covers a capped member's scans; what it exceeds them by was granted, unspent.
    uncovered = [row for row in capped if row["scans"] > row["counter_assigned"]]
    # A member whose whole cap was taken must have spent it by the end: visits keep coming long
    # after the caps are reached, so capacity granted and never spent is lost to a bug.
    unspent = sum(
        row["cap"] - row["scans"] for row in capped if row["counter_assigned"] >= row["cap"]
    )
    # A 503 ("all advisors busy") is right only when nobody may take a customer: no uncapped
    # member, and every capped one at its cap. With an uncapped member, every answer is a 200.
    uncapped = len(capped) < len(staff)
    all_at_cap = bool(capped) and all(row["scans"] >= row["cap"] for row in capped)
    busy_ok = target_answers["503"] == 0 or (not uncapped and all_at_cap)
    scans = db["scans"]
    checks = {
        "ratio": {
            "label": "ratio landing/baseline req/s",
            "value": round(ratio, 3),
            "goal": f">= {TARGET_RATIO:.2f}",
            "ok": ratio >= TARGET_RATIO,
            "fatal": False,
        },
        "baseline_non_200": {
            "label": "baseline non-200 (all rounds)",
            "value": sum(v for k, v in baseline_answers.items() if k != "200"),
            "goal": "0",
            "fatal": True,
        },
        "target_errors": {
            "label": "landing other/errors (all rounds)",
            "value": target_answers["other"] + target_answers["errors"],
            "goal": "0",
            "fatal": True,
        },
        "target_503": {
            "label": "landing 503 busy pages",
            "value": target_answers["503"],
            "goal": "0" if uncapped else "only at caps",
            "ok": busy_ok,
            "fatal": True,
        },
        "scans_assigned": {
            "label": "scans with staff = landing 200",
            "value": scans["assigned"],
            "goal": f"= {target_answers['200']}",
            "ok": scans["assigned"] == target_answers["200"],
            "fatal": True,
        },
        "scans_unassigned": {
            "label": "scans without staff = landing 503",
            "value": scans["unassigned"],
            "goal": f"= {target_answers['503']}",
            "ok": scans["unassigned"] == target_answers["503"],
            "fatal": True,
        },
        "returning": {
            "label": "returning-device scans",
            "value": scans["reused"],
            "goal": "0",
            "fatal": True,
        },
        "caps": {
            "label": "staff-days over their cap",
            "value": len(over_cap),
            "goal": "0",
            "fatal": True,
        },
        "counters": {
            "label": "capped: scans > DailyCounter",
            "value": len(uncovered),
            "goal": "0",
            "fatal": True,
        },
        "unspent": {
            "label": "capped at the cap: visits not spent",
            "value": unspent,
            "goal": "0",
            "fatal": True,
        },
    }
    for check in checks.values():
        check.setdefault("ok", check["value"] == 0)
    return checks


def print_table(
    args: argparse.Namespace, baseline: dict, target: dict, checks: dict, load: dict
) -> None:
    workers = f"{args.workers} x {args.worker_class}"
    if args.worker_class == "gthread":
        workers += f" ({args.threads} threads)"
    print(
        f"\nLanding page: {args.connections} connections, {args.rounds} x {args.duration:g} s "
        f"per endpoint, gunicorn {workers}, {os.cpu_count()} CPUs; medians of rounds"
    )
    print(
        "load average (1, 5, 15 min): before "
        + " ".join(f"{x:.2f}" for x in load["before"])
        + ", after "
        + " ".join(f"{x:.2f}" for x in load["after"])
    )
    print(
        f"{'endpoint':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'200':>7} {'503':>5} "
        f"{'other':>6} {'requests':>9}   CPU ms/req: {'gunicorn':>8} {'postgres':>8} {'client':>8}"
    )
    for name, s in (("baseline", baseline), ("landing", target)):
        counts = s["status_counts"]
        other = s["requests"] - counts.get("200", 0) - counts.get("503", 0) + s["errors"]
        print(
            f"{name:<10} {s['rps']:>9.1f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} "
            f"{counts.get('200', 0):>7} {counts.get('503', 0):>5} {other:>6} "
            f"{s['requests']:>9}   {'':>11} "
            f"{fmt(s['server_cpu_ms_per_request']):>8} {fmt(s['db_cpu_ms_per_request']):>8} "
            f"{fmt(s['client_cpu_ms_per_request']):>8}"
        )
    print(f"\n{'check':<36} {'value':>10}   {'target':<13} result")
    for check in checks.values():
        verdict = "PASS" if check["ok"] else ("FAIL" if check["fatal"] else "FAIL (target)")
        print(f"{check['label']:<36} {check['value']:>10}   {check['goal']:<13} {verdict}")


def print_staff(db: dict) -> None:
    """Per staff member and local day: scans assigned, DailyCounter.assigned (capacity taken),
    cap."""
    print(f"\n{'staff':<10} {'day':<11} {'scans':>7} {'counter':>8} {'cap':>6}   result")
    for row in db["staff"]:
        cap = row["cap"]
        top = max(row["scans"], row["counter_assigned"])
        if cap is not None and row["scans"] > row["counter_assigned"]:
            verdict = "FAIL: scans over the capacity taken"
        elif cap is not None and row["counter_assigned"] >= cap > row["scans"]:
            verdict = "FAIL: cap taken, not spent"
        elif cap is None:
            verdict = "ok (uncapped)"
        elif top > cap:
            verdict = "FAIL: cap exceeded"
        else:
            verdict = "ok (cap reached)" if top == cap else "ok (below cap)"
        print(
            f"{row['userid']:<10} {row['day'] or '-':<11} {row['scans']:>7} "
            f"{row['counter_assigned']:>8} {'-' if cap is None else cap:>6}   {verdict}"
        )
    capped = [row for row in db["staff"] if row["cap"] is not None]
    if capped and all(max(r["scans"], r["counter_assigned"]) <= r["cap"] for r in capped):
        figures = ", ".join(f"{r['userid']} {r['scans']}/{r['cap']}" for r in capped)
        print(f"no cap exceeded: {figures}")


def report(args: argparse.Namespace, bench: Bench, db_state: dict, queued: int, load: dict) -> dict:
    measured = [r for r in bench.results if not r.label.endswith("warm-up")]
    baseline = summarize([r for r in measured if r.label.startswith("baseline")])
    target = summarize([r for r in measured if r.label.startswith("target")])
    # Every answer left a scan, warm-up included; so the database is compared with all rounds.
    baseline_answers = answers([r for r in bench.results if r.label.startswith("baseline")])
    target_answers = answers([r for r in bench.results if r.label.startswith("target")])
    checks = evaluate(
        baseline,
        target,
        baseline_answers=baseline_answers,
        target_answers=target_answers,
        db=db_state,
    )
    activity = median_activity([v for k, v in bench.activity.items() if not k.endswith("warm-up")])
    print_table(args, baseline, target, checks, load)
    print(
        "landing rounds, the server's database connections (median of the rounds' means): "
        + ", ".join(f"{state} {n:.1f}" for state, n in activity.items())
    )
    print_staff(db_state)
    print(f"slot top-up tasks left in the broker queue (no worker runs): {queued}")
    print(
        f"landing path: {args.path}; scans still buffered in Redis when the server stopped, "
        f"written by verify: {db_state.get('flushed_at_verify', 0)}"
    )
    return {
        "benchmark": "landing",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "caps": args.cap_list,
            "gunicorn": {
                "workers": args.workers,
                "worker_class": args.worker_class,
                "threads": args.threads if args.worker_class == "gthread" else None,
            },
            "database": "postgresql",
            "broker": "redis",
            "landing_path": args.path,
            "baseline_path": BASELINE_PATH,
            "target_path": TARGET_PATH,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": load["before"],
            "load_average": load["after"],
        },
        "baseline": baseline,
        "target": target,
        "ratio": checks["ratio"]["value"],
        "checks": checks,
        "answers": {"baseline": baseline_answers, "target": target_answers},
        "database": db_state,
        "database_connections": {"median": activity, "rounds": bench.activity},
        "broker_queue_length": queued,
        "rounds": [r.summary() for r in bench.results],
    }


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db = infra.db_params(args.database_url)
    broker = redis.Redis.from_url(args.broker_url)
    secret_key = secrets.token_urlsafe(50)
    env = {"database_url": args.database_url, "broker_url": args.broker_url}
    manage_env = infra.server_env(settings_module="scrm.settings", secret_key=secret_key, **env)
    server_env = setup_env(
        infra.server_env(
            settings_module="bench.callback_ingest.settings", secret_key=secret_key, **env
        )
    )
    landing_store = redis.Redis.from_url(args.landing_redis_url)
    if args.path == "redis":
        server_env["LANDING_REDIS_URL"] = args.landing_redis_url
    else:
        server_env.pop("LANDING_REDIS_URL", None)
    log_path = Path(tempfile.mkdtemp(prefix="bench-landing-")) / "gunicorn.log"
    proc = None
    created = False
    try:
        print(f"Creating database {db['dbname']} and migrating ...", flush=True)
        infra.database_create(db)
        created = True
        broker.flushdb()
        if args.path == "redis":
            landing_store.flushdb()
        infra.manage(manage_env, "migrate", "--noinput", "-v", "0")
        started = time.perf_counter()
        data = dataset(server_env, "setup", "--caps", args.caps)
        members = ", ".join(
            f"{m['userid']} cap {'-' if m['cap'] is None else m['cap']}" for m in data["members"]
        )
        print(
            f"Published {TARGET_PATH} ({data['status']}, {data['slots']} landing slots) in "
            f"{time.perf_counter() - started:.1f} s; pool: {members}",
            flush=True,
        )
        load = {"before": _load_average()}
        busy_before = infra.cpu_busy()
        port = infra.free_port()
        command = infra.gunicorn_command(
            port=port, workers=args.workers, worker_class=args.worker_class, threads=args.threads
        )
        print(f"Starting gunicorn on {HOST}:{port} (log: {log_path}) ...", flush=True)
        proc = infra.server_start(command, server_env, log_path)
        infra.server_wait(proc, port=port, path=BASELINE_PATH, log_path=log_path)

        bench = Bench(args, port=port, server_pid=proc.pid, db=db)
        print(f"Warm-up ({args.warmup:g} s each):", flush=True)
        bench.baseline("baseline warm-up", args.warmup)
        bench.target("target warm-up", args.warmup)
        autovacuum = database_analyze(db)
        print(f"ANALYZE after the warm-up (autovacuum on this server: {autovacuum})", flush=True)
        print(f"Rounds ({args.duration:g} s each, baseline and target alternating):", flush=True)
        for number in range(1, args.rounds + 1):
            bench.baseline(f"baseline {number}", args.duration)
            bench.target(f"target {number}", args.duration)

        load["after"] = _load_average()
        infra.server_stop(proc)  # nothing in flight while the rows are counted
        db_state = dataset(server_env, "verify")
        queued = infra.broker_queue_length(broker)
        busy_after = infra.cpu_busy()
        summary = report(args, bench, db_state, queued, load)
        infra.results_finish(
            summary,
            name="landing",
            command=command,
            busy=(busy_before, busy_after),
            results_dir=args.results_dir,
            log_path=log_path,
        )
    finally:
        infra.teardown(
            proc=proc, broker=broker, db=db, created=created, keep=args.keep, log_path=log_path
        )
        if args.path == "redis":
            landing_store.flushdb()

    checks = summary["checks"]
    failed = not all(c["ok"] for c in checks.values() if c["fatal"])
    if args.strict:
        failed = failed or not all(c["ok"] for c in checks.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
