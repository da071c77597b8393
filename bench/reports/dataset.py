"""The reports benchmark's data set: one corp's year, written with COPY.

    python -m bench.reports.dataset [--scale 1.0] [--seed 618] [--end-date YYYY-MM-DD] [--keep]

Creates the database (default `scrm_bench_reports`; the name must start with it), runs
`manage.py migrate` against it, takes the loaded tables' constraints and indexes off, writes
at full size 1 corp, 500 staff, 200 channels with their costs, 2,000 live codes with pools and
landing slots, 1,000,000 customers first added over 365 local days, 1,300,000 adds with their
attributions, follow relations and first sources, 300,000 deletions, 3,000,000 scans and
200,000 conversions, puts the constraints back (validating every reference), fills the
daily counters, moves the id sequences past the rows, checks the product's invariants and
runs VACUUM ANALYZE. `--scale` shrinks every count. The parameters and counts are kept as
the database's comment (read by `run.py --reuse`). Prints one JSON document as its last line.
Without --keep the database is dropped at the end (useful only to time the generation).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from contextlib import closing
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and the apps importable
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

from bench.callback_ingest import infra  # noqa: E402
from bench.reports.bulk import constraints_drop, sequences_set, statements_run  # noqa: E402
from bench.reports.catalog import CORP_PK, catalog_write, slots_write  # noqa: E402
from bench.reports.checks import checks_run  # noqa: E402
from bench.reports.clock import Clock, day_weights  # noqa: E402
from bench.reports.customers import customers_write  # noqa: E402
from bench.reports.lifecycles import Counts, lifecycles_build  # noqa: E402
from bench.reports.scans import scans_write  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/scrm_bench_reports"
NAME_PREFIX = "scrm_bench_reports"
TZ = "Asia/Shanghai"
LOADED = [
    "wecom_corp", "contacts_staff", "channels_app_channel", "channels_app_channelcost",
    "channels_app_livecode", "channels_app_poolmember", "channels_app_landingslot",
    "channels_app_scan", "contacts_externalcontact", "contacts_followrelation",
    "contacts_relationevent", "channels_app_attribution", "contacts_firstsource",
    "contacts_conversionevent", "channels_app_dailycounter",
]  # fmt: skip
# The product's counter of adds per (code, staff member, local day): counter_bump_added.
# `assigned` stays 0: on the landing page's Redis path uncapped members take no capacity.
DAILY_COUNTERS = """
    INSERT INTO channels_app_dailycounter (corp_id, live_code_id, staff_id, day, assigned, added)
    SELECT corp_id, live_code_id, staff_id, (added_at AT TIME ZONE %(tz)s)::date, 0, count(*)
    FROM channels_app_attribution WHERE live_code_id IS NOT NULL
    GROUP BY corp_id, live_code_id, staff_id, (added_at AT TIME ZONE %(tz)s)::date
"""


def scrubbed_env(database_url: str) -> dict[str, str]:
    """The environment for the project's code in this benchmark: this database, DEBUG off (no
    query log growing in memory), per-process cache, eager Celery, no landing Redis: never a
    developer's Redis or broker."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "scrm.settings",
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "SECRET_KEY": env.get("SECRET_KEY") or "bench-reports-" + "x" * 40,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "CACHE_URL": "locmemcache://bench-reports",
            "CELERY_BROKER_URL": "",
            "LANDING_REDIS_URL": "",
            "WECOM_API_BASE": "",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def db_params(url: str) -> dict[str, object]:
    params = infra.db_params(url)  # refuses names without "bench"
    if not str(params["dbname"]).startswith(NAME_PREFIX):
        raise SystemExit(f"refusing database {params['dbname']!r}: use {NAME_PREFIX}*")
    return params


def meta_read(params: dict[str, object]) -> dict | None:
    """The parameters and counts a generation left as the database's comment, if any."""
    with closing(psycopg2.connect(**params)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = current_database()"
        )
        comment = cur.fetchone()[0]
    return json.loads(comment) if comment else None


def generate(args: argparse.Namespace, params: dict[str, object], log=print) -> dict:
    """Create, migrate and fill the database; returns the summary kept as its comment."""
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def phase(name: str, began: float) -> float:
        timings[name] = round(time.perf_counter() - began, 1)
        log(f"  {name}: {timings[name]} s")
        return time.perf_counter()

    counts = Counts.scaled(args.scale)
    last = args.end_date or (datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1))
    clock = Clock(last - timedelta(days=364), last, TZ)
    log(f"Creating {params['dbname']} and migrating ...")
    infra.database_create(params)
    infra.manage(scrubbed_env(args.database_url), "migrate", "--noinput", "-v", "0")
    began = phase("create_and_migrate", started)
    rng = random.Random(args.seed)
    conn = psycopg2.connect(**params)
    with closing(conn), conn.cursor() as cur:
        recreate = constraints_drop(cur, LOADED)
        weights = day_weights(clock, rng)
        catalog = catalog_write(
            cur,
            clock=clock,
            rng=rng,
            staff=max(10, round(500 * args.scale)),
            channels=max(5, round(200 * args.scale)),
            codes=max(10, round(2000 * args.scale)),
            customers_per_day=counts.customers / clock.days,
        )
        began = phase("catalog", began)
        life = lifecycles_build(
            clock=clock, catalog=catalog, rng=rng, counts=counts, weights=weights
        )
        began = phase("lifecycles", began)
        scans = scans_write(
            cur, clock=clock, catalog=catalog, life=life, rng=rng, total=counts.scans,
            weights=weights,
        )  # fmt: skip
        slots = slots_write(cur, clock, catalog)
        began = phase("scans", began)
        rows = customers_write(cur, clock=clock, catalog=catalog, life=life, rng=rng, log=log)
        del life
        conn.commit()
        began = phase("customers", began)
        cur.execute("SET maintenance_work_mem = '256MB'")
        statements_run(cur, recreate, log=log)
        began = phase("constraints_and_indexes", began)
        cur.execute(DAILY_COUNTERS, {"tz": TZ})
        sequences_set(cur, LOADED)
        conn.commit()
        began = phase("daily_counters_and_sequences", began)
        problems = {} if args.no_check else checks_run(cur, end=clock.end)
        conn.rollback()
        began = phase("checks", began)
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
        began = phase("vacuum_analyze", began)
        cur.execute("SELECT pg_database_size(current_database())")
        size = int(cur.fetchone()[0])
        summary = {
            "database": params["dbname"],
            "scale": args.scale,
            "seed": args.seed,
            "time_zone": TZ,
            "corp_pk": CORP_PK,
            "first_day": clock.first.isoformat(),
            "last_day": clock.last.isoformat(),
            "generated_at": datetime.now(ZoneInfo(TZ)).isoformat(timespec="seconds"),
            "generation_s": round(time.perf_counter() - started, 1),
            "phases_s": timings,
            "database_bytes": size,
            "database_size": f"{size / 2**30:.2f} GiB",
            "counts": {"slots": slots, **rows, "scans": scans},
            "check_failures": {k: v for k, v in problems.items() if v},
            "checks_run": len(problems),
        }
        cur.execute(
            sql.SQL("COMMENT ON DATABASE {} IS %s").format(sql.Identifier(str(params["dbname"]))),
            (json.dumps(summary),),
        )
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every count [1.0]")
    parser.add_argument("--seed", type=int, default=618, help="random seed [618]")
    parser.add_argument(
        "--end-date", type=date.fromisoformat, help="the last local day [yesterday, Shanghai]"
    )
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"[{DEFAULT_URL}]")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-check", action="store_true", help="skip the invariant checks")
    args = parser.parse_args(argv)
    if not 0.001 <= args.scale <= 3:
        parser.error("--scale must be within [0.001, 3]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = db_params(args.database_url)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        summary = generate(args, params, log=log)
    except BaseException:
        infra.database_drop(params)
        raise
    if not args.keep:
        infra.database_drop(params)
        log(f"Database {params['dbname']} dropped (no --keep).")
    print(json.dumps(summary))
    return 1 if summary["check_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
