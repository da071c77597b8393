"""End-to-end burst: N adds through the production processes, every welcome timed.

    python bench/e2e/run.py [--adds 2000] [--rate 0] [--floor 200] [--keep]

Creates a PostgreSQL database of its own, migrates it, sets up a sandbox corp with a native
code (a welcome text and a tag), starts the production processes of the README (gunicorn 2 x
gthread 8 threads, a Celery worker -c 2 for the default queue and one for welcome,
welcome_sweep, beat), has the in-process sandbox deliver N add callbacks as fast as it can
(or at --rate), waits until every add is processed, welcomed, detailed and tagged, and prints
a summary; JSON goes to bench/results/e2e-<UTC time>.json. See README.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `scrm` importable
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from bench.callback_ingest import infra  # noqa: E402
from bench.e2e import probes  # noqa: E402

HOST = infra.HOST


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adds", type=int, default=2000, help="adds in the burst [2000]")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="adds delivered per second, 0: the sandbox's full rate [0]",
    )
    parser.add_argument(
        "--floor",
        type=int,
        default=200,
        help="adds of the floor measurement, in one eager process; 0: skip [200]",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="per Celery worker [2]")
    parser.add_argument("--pool", default="prefork", help="Celery pool [prefork]")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for processing after the last delivery [300]",
    )
    parser.add_argument(
        "--pg",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server; a database scrm_bench_e2e_<run> is created "
        "and dropped [postgres://postgres@127.0.0.1:5432]",
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/11",
        help="Redis db; keys get a prefix of the run's own, deleted after "
        "[redis://127.0.0.1:6379/11]",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--floor-only", action="store_true", help="only the floor: no burst, no processes started"
    )
    parser.add_argument(
        "--floor-profile", default="", help="write a cProfile of the floor's process to this file"
    )
    parser.add_argument(
        "--stages",
        type=int,
        default=0,
        help="only the CPU of each stage of N adds (stages.py), in one process: no burst",
    )
    parser.add_argument("--label", default="", help="a word stored with the results")
    return parser.parse_args(argv)


def run_env(args: argparse.Namespace, run_id: str, database_url: str) -> dict[str, str]:
    prefix = f"e2e{run_id}:"
    env = infra.server_env(
        settings_module="scrm.settings", database_url=database_url, broker_url=args.redis,
        secret_key=secrets.token_urlsafe(50),
    )  # fmt: skip
    env.update({
        "CACHE_URL": args.redis, "CACHE_KEY_PREFIX": prefix,
        "CELERY_BROKER_KEY_PREFIX": prefix, "LANDING_REDIS_URL": args.redis,
        "LANDING_REDIS_PREFIX": prefix + "landing:",
        "SECRETS_KEY": Fernet.generate_key().decode(),
    })  # fmt: skip
    env.pop("WECOM_API_BASE", None)  # the sandbox, in process
    return env


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def celery(queues: str, name: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "scrm", "worker", "-Q", queues, "-n",
            f"{name}@%h", "--pool", args.pool, "-c", str(args.concurrency),
            "--loglevel", "WARNING"]  # fmt: skip


def wait_workers(expected: int, timeout: float = 60) -> None:
    from scrm.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5)) >= expected:
            return
    raise RuntimeError("Celery workers did not answer pings")


def pg_sessions(dbname: str) -> tuple[int, float]:
    """(sessions opened, ms spent executing statements) of the run's database so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sessions, active_time FROM pg_stat_database WHERE datname = %s", [dbname]
        )
        sessions, active = cursor.fetchone()
    return int(sessions), float(active)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = datetime.now(UTC).strftime("%H%M%S") + secrets.token_hex(2)
    dbname = f"scrm_bench_e2e_{run_id}"
    database_url = f"{args.pg.rstrip('/')}/{dbname}"
    db = infra.db_params(database_url)
    env = run_env(args, run_id, database_url)
    logs = ROOT / "bench" / "results" / f"e2e-{run_id}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    broker = redis.Redis.from_url(args.redis)
    procs: dict[str, subprocess.Popen] = {}
    load_before = os.getloadavg()
    infra.database_create(db)
    try:
        print(f"run {run_id}: database {dbname}, migrating ...", flush=True)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, env=env, check=True)  # fmt: skip
        subprocess.run([sys.executable, "manage.py", "setup_periodic_tasks"], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        os.environ.update(env)
        import django

        django.setup()
        from bench.e2e.scenario import CORP_ID, burst_figures, progress_counts, scenario_setup

        scenario = scenario_setup()
        if args.stages:
            stages = in_process_run(env, "bench.e2e.stages", args.stages)
            print(json.dumps({"stages": stages, "load": os.getloadavg()}, indent=1))
            return 0
        if args.floor_only:
            floor = floor_measure(env, args.floor or 200, args.floor_profile)
            print(json.dumps({"floor": floor, "load": os.getloadavg()}))
            return 0
        port = infra.free_port()
        gunicorn = infra.gunicorn_command(port=port, workers=2, worker_class="gthread", threads=8)
        procs["web"] = start(gunicorn, env, logs / "web.log")
        procs["worker_default"] = start(celery("default", "default", args), env,
                                        logs / "default.log")  # fmt: skip
        procs["worker_welcome"] = start(celery("welcome,welcome_sweep", "welcome", args), env,
                                        logs / "welcome.log")  # fmt: skip
        procs["beat"] = start([sys.executable, "-m", "celery", "-A", "scrm", "beat", "--loglevel",
                               "WARNING", "--pidfile", "", "-s", str(logs / "celerybeat-schedule")],
                              env, logs / "beat.log")  # fmt: skip
        infra.server_wait(procs["web"], port=port, path="/admin/login/", log_path=logs / "web.log")
        wait_workers(2)
        time.sleep(2)  # beat's first round and the workers' warm-up, outside the figures

        postmaster = probes.postmaster_pid()
        groups = [
            probes.Group(name, lambda p=proc: probes.tree(p.pid)) for name, proc in procs.items()
        ]
        if postmaster:
            groups.append(probes.Group("postgres", lambda: probes.backends_of(postmaster, dbname)))
        groups.append(probes.Group("bench_sandbox", lambda: [os.getpid()]))
        for group in groups:
            group.mark_start()
        sessions0, active0 = pg_sessions(dbname)
        sampler = probes.Sampler(groups)
        sampler.start()

        curve: list[dict] = []
        t0 = time.monotonic()
        delivering = threading.Event()
        delivering.set()

        def sample_curve() -> None:
            from django.db import connection

            while (
                delivering.is_set()
                or curve[-1]["processed"] < args.adds
                or (curve[-1]["welcomed"] < args.adds)
            ):
                row = progress_counts()
                row["t"] = round(time.monotonic() - t0, 2)
                curve.append(row)
                if time.monotonic() - t0 > args.timeout + args.adds / 5:
                    break
                time.sleep(0.5)
            connection.close()

        from scrm.wecom.sandbox.simulate import simulate_adds

        curve.append(progress_counts() | {"t": 0.0})
        watcher = threading.Thread(target=sample_curve, daemon=True)
        watcher.start()
        print(f"delivering {args.adds} adds ...", flush=True)
        first: list[float] = []

        def mark_first(index: int, _total: int) -> None:
            if index == 1:
                first.append(time.monotonic())

        report = simulate_adds(corp_id=CORP_ID, adds=args.adds, rate=args.rate,
                               url=f"http://{HOST}:{port}", states=[scenario.state], seed=15,
                               progress=mark_first)  # fmt: skip
        delivered_s = time.monotonic() - first[0]
        first_delivery_t = round(first[0] - t0, 2)  # the sandbox prepared its customers first
        delivering.clear()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            counts = progress_counts()
            if min(counts["processed"], counts["welcomed"], counts["detailed"],
                   counts["tagged"]) >= args.adds:  # fmt: skip
                break
            time.sleep(0.25)
        done = time.monotonic()
        counts = progress_counts()
        time.sleep(1.0)  # trailing work (debounced syncs) into the CPU figures
        sampler.stop()
        watcher.join(timeout=5)
        sessions1, active1 = pg_sessions(dbname)
        figures = burst_figures(adds=args.adds, tag_id=scenario.tag_id)
        elapsed = done - first[0]
        n = max(1, args.adds)
        summary = {
            "run": run_id, "label": args.label,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {"adds": args.adds, "rate": args.rate, "pool": args.pool,
                       "concurrency": args.concurrency, "gunicorn": "2 x gthread 8",
                       "database": dbname},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_before": [round(x, 2) for x in load_before],
                        "load_after": [round(x, 2) for x in os.getloadavg()]},
            "delivery": {"answered_200": report.answered_200, "failed": report.failed,
                         "seconds": round(delivered_s, 2),
                         "adds_per_s": round(args.adds / delivered_s, 1)},
            "processed": {"complete": min(counts[k] for k in ("processed", "welcomed",
                                                              "detailed", "tagged")) >= args.adds,
                          "final_counts": counts, "seconds": round(elapsed, 2),
                          "adds_per_s": round(args.adds / elapsed, 1)},
            # The welcome's critical path: from the first callback until every add is
            # recorded and its welcome settled (sent or expired), from the backlog curve.
            "welcome_path": welcome_path(curve, first_delivery_t, args.adds),
            **figures,
            "cpu_ms_per_add": {g.name: round(1000 * g.cpu_seconds() / n, 2) for g in groups},
            "processes_seen": {g.name: g.processes_seen() for g in groups},
            "rss_mb_max": {g.name: round(max(g.max_rss.values(), default=0), 1)
                           for g in groups},
            "postgres": {"sessions_opened": sessions1 - sessions0,
                         "active_ms_per_add": round((active1 - active0) / n, 2)},
            "backlog_curve_first_delivery_t": first_delivery_t,
            "backlog_curve": curve,
        }  # fmt: skip
        summary["cpu_ms_per_add"]["total_app"] = round(
            sum(v for k, v in summary["cpu_ms_per_add"].items() if k != "bench_sandbox"), 2
        )
        if args.floor:
            summary["floor"] = floor_measure(env, args.floor, args.floor_profile)
            summary["floor"]["ratio_whole_to_floor"] = round(
                summary["cpu_ms_per_add"]["total_app"] / summary["floor"]["cpu_ms_per_add"], 2
            )
        out = ROOT / "bench" / "results" / f"e2e-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print_summary(summary)
        print(f"\nResults written to {out.relative_to(ROOT)}; logs in {logs.relative_to(ROOT)}")
        ok = summary["processed"]["complete"] and not any(figures["rows_minus_adds"].values())
        return 0 if ok else 1
    finally:
        for proc in procs.values():
            infra.server_stop(proc)
        with suppress(Exception):
            from django.db import connections

            connections.close_all()
        with suppress(redis.RedisError):
            keys = list(broker.scan_iter(f"*e2e{run_id}:*", count=1000))
            for start_at in range(0, len(keys), 500):
                broker.delete(*keys[start_at : start_at + 500])
        if not args.keep:
            infra.database_drop(db)


def welcome_path(curve: list[dict], first_t: float, adds: int) -> dict:
    done = next((p["t"] for p in curve if min(p["processed"], p["welcomed"]) >= adds), None)
    if done is None:
        return {"seconds": None, "adds_per_s": None}
    seconds = max(done - first_t, 0.5)  # sampled every 0.5 s
    return {"seconds": round(seconds, 1), "adds_per_s": round(adds / seconds, 1)}


def in_process_run(env: dict[str, str], module: str, adds: int, profile: str = "") -> dict:
    """Run `module` (floor.py, stages.py) for `adds` adds in a process of its own without a
    broker (Celery eager); the JSON line it prints last."""
    result = subprocess.run(
        [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []),
         "-m", module, str(adds)], cwd=ROOT,
        env={k: v for k, v in env.items() if k != "CELERY_BROKER_URL"},
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def floor_measure(env: dict[str, str], adds: int, profile: str = "") -> dict:
    """The same adds, in one process without a broker (Celery eager) on one connection: every
    statement and every WeCom call an add needs, without queues, processes or reconnects."""
    return in_process_run(env, "bench.e2e.floor", adds, profile)


def print_summary(s: dict) -> None:
    f = s
    print("\n== e2e burst", s["run"], s["label"], "load", s["machine"]["load_before"], "->",
          s["machine"]["load_after"])  # fmt: skip
    print(f"adds {s['config']['adds']}: delivered {f['delivery']['adds_per_s']}/s "
          f"({f['delivery']['answered_200']} answered 200), processed end to end "
          f"{f['processed']['adds_per_s']}/s in {f['processed']['seconds']} s "
          f"(complete: {f['processed']['complete']}); recorded and welcomed "
          f"{f['welcome_path']['adds_per_s']}/s in {f['welcome_path']['seconds']} s")  # fmt: skip
    print(f"welcomes: {f['welcome_outcomes']}; within 20 s: {f['welcomes_within_20s']} "
          f"({100 * (f['welcomes_within_20s_share'] or 0):.1f} %)")  # fmt: skip
    r = f["receipt_to_welcome_s"]
    print(f"receipt to welcome s: p50 {r['p50']} p95 {r['p95']} p99 {r['p99']} max {r['max']}")
    print(f"rows minus adds (0 = none lost, none double): {f['rows_minus_adds']}")
    print(f"surge (analytics.surges) tagged 紧急跟进: {f['surge_tagged']} customers")
    print("CPU ms per add:", s["cpu_ms_per_add"])
    print("RSS MB max per process:", s["rss_mb_max"])
    print("PostgreSQL:", s["postgres"])
    if "floor" in s:
        print(f"floor: {s['floor']['cpu_ms_per_add']} ms per add "
              f"({s['floor']}); whole / floor = {s['floor']['ratio_whole_to_floor']}")  # fmt: skip
    peak = max(s["backlog_curve"], key=lambda row: row["received"] - row["processed"])
    print(f"backlog peak: {peak['received'] - peak['processed']} inbox rows at t={peak['t']} s")


if __name__ == "__main__":
    sys.exit(main())
