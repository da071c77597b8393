"""Benchmark the WeCom callback endpoint against a bare Django view on the same server.

    python bench/callback_ingest/run.py [--duration 15] [--connections 32] [--rounds 3] [--keep]

Creates a PostgreSQL database, migrates it, registers a corp, starts gunicorn (2 workers) with
DEBUG off and Celery publishing to Redis (no worker: only ingest is measured), then loads the
baseline view and the callback alternately. Prints medians next to the targets, writes JSON to
bench/results/, checks that every 200 from the callback left exactly one inbox row, and tears
everything down. Exits 1 on any non-200 answer or row-count mismatch (with --strict, also when a
target is missed). See README.md next to this file.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `scrm` importable
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.callback_ingest import infra  # noqa: E402
from bench.callback_ingest.infra import HOST, fmt, median, median_of  # noqa: E402
from bench.callback_ingest.loadgen import RoundResult, run_round  # noqa: E402
from bench.callback_ingest.payloads import add_event_requests, http_request  # noqa: E402

BASELINE_PATH = "/bench/empty/"
CORP_ID = "wwbench0000000001"
TARGET_RATIO = 0.50
TARGET_P99_MS = 50.0
# The callback refuses timestamps more than 10 minutes off; bodies are built per round.
MAX_ROUND_SECONDS = 480
# Events built per target round: the callback's best rate so far (from the baseline's before the
# first target round) times the round length, doubled. A round that runs out ends early and says
# so. Each pre-built request is ~0.8 kB, so the 300,000 cap costs ~250 MB at most.
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
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker [8]")
    parser.add_argument(
        "--worker-connections",
        type=int,
        default=None,
        help="connections a worker holds at most [connections / workers, for an even split; "
        "0: gunicorn's default]",
    )
    parser.add_argument(
        "--max-requests", type=int, default=300_000, help="cap on requests per round [300000]"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scrm_bench"),
        help="PostgreSQL URL; the database is created and dropped [$DATABASE_URL or scrm_bench]",
    )
    parser.add_argument(
        "--broker-url",
        # Not read from $CELERY_BROKER_URL: the db is flushed, and a developer's broker is not ours.
        default="redis://127.0.0.1:6379/15",
        help="Redis broker URL for the server; its db is flushed [redis://127.0.0.1:6379/15]",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--strict", action="store_true", help="also exit 1 when a target is missed")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= MAX_ROUND_SECONDS:
        parser.error(f"--duration must be in (0, {MAX_ROUND_SECONDS}]")
    if args.connections < 1 or args.rounds < 1 or args.workers < 1:
        parser.error("--connections, --rounds and --workers must be at least 1")
    if args.worker_connections is None:
        args.worker_connections = even_split(args)
    return args


def even_split(args: argparse.Namespace) -> int:
    """Connections per worker for an even split, or 0 (gunicorn's default of 1,000).

    A gthread worker accepts every connection it can, and the client opens its connections in
    one burst, so without a cap they land unevenly: 32/0, 27/5, 21/11 and 18/14 were seen, and
    a round then measures the split rather than the endpoint (one worker's GIL for all of it).
    gthread keeps at most worker_connections - threads connections idle between requests, so
    the cap must exceed the thread count; when it would not, there is no cap."""
    per_worker = math.ceil(args.connections / args.workers)
    if args.worker_class != "gthread" or per_worker <= args.threads:
        return 0
    return per_worker


# -- the rounds --------------------------------------------------------------------------------


class Bench:
    """Runs baseline and target rounds against one server and keeps every result."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        port: int,
        server_pid: int,
        db: dict[str, object],
        token: str,
        aes_key: str,
    ) -> None:
        self.args = args
        self.port = port
        self.server_pid = server_pid
        self.db = db
        self.token = token
        self.aes_key = aes_key
        self.host_header = f"{HOST}:{port}"
        self.run_tag = secrets.token_hex(4)
        self.next_index = 0
        self.best_rps = {"baseline": 0.0, "target": 0.0}
        self.results: list[RoundResult] = []
        # The baseline gets a body of the same size as a callback, so both pay the same transport.
        sample = self._events(1)[0]
        body = sample[sample.index(b"\r\n\r\n") + 4 :]
        self.baseline_request = http_request(
            method="POST",
            path=BASELINE_PATH,
            host=self.host_header,
            body=body,
            content_type="text/xml",
        )

    def _events(self, count: int) -> list[bytes]:
        requests = add_event_requests(
            corp_id=CORP_ID,
            token=self.token,
            aes_key=self.aes_key,
            host=self.host_header,
            count=count,
            run_tag=self.run_tag,
            first_index=self.next_index,
        )
        self.next_index += count
        return requests

    def _round(self, label: str, duration: float, **load: object) -> RoundResult:
        # Server and database CPU per request: unlike req/s, hardly skewed by other load.
        server_cpu = infra.server_cpu(self.server_pid)
        db_cpu = infra.postgres_cpu(self.db)
        result = run_round(
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
            f"p99 {s['p99_ms']:>7.2f} ms  n {s['requests']:>6}  non-200 {s['non_200']}  "
            f"CPU/req gunicorn {s['server_cpu_ms_per_request']} ms, "
            f"postgres {s['db_cpu_ms_per_request']} ms"
            + ("  (ran out of pre-built events)" if result.exhausted else ""),
            flush=True,
        )
        return result

    def baseline(self, label: str, duration: float) -> RoundResult:
        return self._round(
            label, duration, repeat=self.baseline_request, max_requests=self.args.max_requests
        )

    def target(self, label: str, duration: float) -> RoundResult:
        rate = self.best_rps["target"] or self.best_rps["baseline"]
        budget = int(rate * (duration + 2) * BUDGET_HEADROOM) + BUDGET_FLOOR
        budget = min(self.args.max_requests, budget)
        built = time.perf_counter()
        requests = self._events(budget)  # before the clock starts: client crypto is not measured
        print(
            f"  (built {budget} encrypted events in {time.perf_counter() - built:.1f} s)",
            flush=True,
        )
        return self._round(label, duration, requests=requests)


def summarize(rounds: list[RoundResult]) -> dict[str, float | int]:
    return {
        "rps": round(median([r.rps for r in rounds]), 1),
        "p50_ms": round(median([r.percentile_ms(50) for r in rounds]), 2),
        "p99_ms": round(median([r.percentile_ms(99) for r in rounds]), 2),
        "non_200": sum(r.non_200 for r in rounds),
        "requests": sum(r.answered for r in rounds),
        "server_cpu_ms_per_request": median_of(r.cpu_ms_per_request(r.server_cpu) for r in rounds),
        "db_cpu_ms_per_request": median_of(r.cpu_ms_per_request(r.db_cpu) for r in rounds),
        "client_cpu_ms_per_request": median_of(r.cpu_ms_per_request(r.client_cpu) for r in rounds),
    }


def evaluate(
    baseline: dict, target: dict, *, non_200: int, stored: int, target_ok: int
) -> dict[str, dict]:
    """The checks, each with its measured value, its goal and whether it is met."""
    ratio = target["rps"] / baseline["rps"] if baseline["rps"] else 0.0
    return {
        "ratio": {
            "label": "ratio target/baseline req/s",
            "value": round(ratio, 3),
            "goal": f">= {TARGET_RATIO:.2f}",
            "ok": ratio >= TARGET_RATIO,
        },
        "target_p99_ms": {
            "label": "target p99 latency (ms)",
            "value": target["p99_ms"],
            "goal": f"< {TARGET_P99_MS:g}",
            "ok": target["p99_ms"] < TARGET_P99_MS,
        },
        "non_200": {
            "label": "non-200 answers (all rounds)",
            "value": non_200,
            "goal": "0",
            "ok": non_200 == 0,
        },
        # Every 200 from the callback promises a stored event: warm-up answers count too.
        "inbox_rows": {
            "label": "inbox rows = target 200 answers",
            "value": stored,
            "goal": f"= {target_ok}",
            "ok": stored == target_ok,
        },
    }


def print_table(args: argparse.Namespace, baseline: dict, target: dict, checks: dict) -> None:
    workers = f"{args.workers} x {args.worker_class}"
    if args.worker_class == "gthread":
        workers += f" ({args.threads} threads)"
    if args.worker_connections:
        workers += f", at most {args.worker_connections} connections each"
    print(
        f"\nCallback ingest: {args.connections} connections, {args.rounds} x {args.duration:g} s "
        f"per endpoint, gunicorn {workers}, {os.cpu_count()} CPUs; medians of rounds"
    )
    print(
        f"{'endpoint':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} {'requests':>9}"
        f"   CPU ms/req: {'gunicorn':>8} {'postgres':>8} {'client':>8}"
    )
    for name, s in (("baseline", baseline), ("target", target)):
        print(
            f"{name:<10} {s['rps']:>9.1f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} "
            f"{s['non_200']:>8} {s['requests']:>9}   {'':>11} "
            f"{fmt(s['server_cpu_ms_per_request']):>8} {fmt(s['db_cpu_ms_per_request']):>8} "
            f"{fmt(s['client_cpu_ms_per_request']):>8}"
        )
    print(f"\n{'check':<34} {'value':>10}   {'target':<10} result")
    for check in checks.values():
        verdict = "PASS" if check["ok"] else "FAIL"
        print(f"{check['label']:<34} {check['value']:>10}   {check['goal']:<10} {verdict}")


def report(args: argparse.Namespace, bench: Bench, stored: int, queued: int) -> dict:
    measured = [r for r in bench.results if not r.label.endswith("warm-up")]
    baseline = summarize([r for r in measured if r.label.startswith("baseline")])
    target = summarize([r for r in measured if r.label.startswith("target")])
    target_ok = sum(r.ok for r in bench.results if r.label.startswith("target"))
    non_200 = sum(r.non_200 for r in bench.results)
    checks = evaluate(baseline, target, non_200=non_200, stored=stored, target_ok=target_ok)
    print_table(args, baseline, target, checks)
    print(f"processing tasks left in the broker queue (no worker runs): {queued}")
    return {
        "benchmark": "callback_ingest",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "gunicorn": {
                "workers": args.workers,
                "worker_class": args.worker_class,
                "threads": args.threads if args.worker_class == "gthread" else None,
                "worker_connections": args.worker_connections or None,
            },
            "database": "postgresql",
            "broker": "redis",
            "baseline_path": BASELINE_PATH,
            "target_path": f"/wecom/callback/{CORP_ID}/",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "baseline": baseline,
        "target": target,
        "ratio": checks["ratio"]["value"],
        "checks": checks,
        "inbox_rows": stored,
        "target_200_answers": target_ok,
        "broker_queue_length": queued,
        "rounds": [r.summary() for r in bench.results],
    }


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db = infra.db_params(args.database_url)
    broker = redis.Redis.from_url(args.broker_url)
    token = secrets.token_hex(8)
    aes_key = secrets.token_urlsafe(48).replace("-", "a").replace("_", "b")[:43]
    secret_key = secrets.token_urlsafe(50)
    env = {"database_url": args.database_url, "broker_url": args.broker_url}
    manage_env = infra.server_env(settings_module="scrm.settings", secret_key=secret_key, **env)
    server_env = infra.server_env(
        settings_module="bench.callback_ingest.settings", secret_key=secret_key, **env
    )
    log_path = Path(tempfile.mkdtemp(prefix="bench-callback-")) / "gunicorn.log"
    proc = None
    created = False
    try:
        print(f"Creating database {db['dbname']} and migrating ...", flush=True)
        infra.database_create(db)
        created = True
        broker.flushdb()
        infra.manage(manage_env, "migrate", "--noinput", "-v", "0")
        infra.manage(
            manage_env,
            *("wecom_corp", "add", "--corp-id", CORP_ID, "--name", "Bench corp"),
            *("--secret", secrets.token_hex(16), "--token", token, "--aes-key", aes_key),
        )
        busy_before = infra.cpu_busy()
        port = infra.free_port()
        command = infra.gunicorn_command(
            port=port,
            workers=args.workers,
            worker_class=args.worker_class,
            threads=args.threads,
            worker_connections=args.worker_connections,
        )
        print(f"Starting gunicorn on {HOST}:{port} (log: {log_path}) ...", flush=True)
        proc = infra.server_start(command, server_env, log_path)
        infra.server_wait(proc, port=port, path=BASELINE_PATH, log_path=log_path)

        bench = Bench(args, port=port, server_pid=proc.pid, db=db, token=token, aes_key=aes_key)
        print(f"Warm-up ({args.warmup:g} s each):", flush=True)
        bench.baseline("baseline warm-up", args.warmup)
        bench.target("target warm-up", args.warmup)
        print(f"Rounds ({args.duration:g} s each, baseline and target alternating):", flush=True)
        for number in range(1, args.rounds + 1):
            bench.baseline(f"baseline {number}", args.duration)
            bench.target(f"target {number}", args.duration)

        infra.server_stop(proc)  # nothing in flight while the rows are counted
        stored = infra.inbox_count(db)
        queued = infra.broker_queue_length(broker)
        busy_after = infra.cpu_busy()
        summary = report(args, bench, stored, queued)
        infra.results_finish(
            summary,
            name="callback_ingest",
            command=command,
            busy=(busy_before, busy_after),
            results_dir=args.results_dir,
            log_path=log_path,
        )
    finally:
        infra.teardown(
            proc=proc, broker=broker, db=db, created=created, keep=args.keep, log_path=log_path
        )

    checks = summary["checks"]
    failed = not (checks["non_200"]["ok"] and checks["inbox_rows"]["ok"])
    if args.strict:
        failed = failed or not all(c["ok"] for c in checks.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
