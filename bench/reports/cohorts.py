"""Benchmark the cohort matrices (analytics.reports.cohorts) on the reports data set: the
matrix over its 12 months (365 local days) by month, week and day of cohorts, each metric,
by none and by channel; target p95 < 1 s warm (issue "Decisions from data").

    python -m bench.reports.dataset --keep --database-url postgres://.../scrm_bench_reports_x
    python -m bench.reports.cohorts --database-url postgres://.../scrm_bench_reports_x [--rebuild]

Reuses a data set kept by dataset.py (see README.md; the database's name starts with
scrm_bench_reports), applies the project's migrations to it (CustomerCohort's first-add time,
lapse and first order), rebuilds the 365 days when asked (or when no cohort row has them yet:
the full rebuild, in a process of its own, with its wall time and peak RSS), ANALYZEs, then
times each matrix: one warm-up and --runs runs, median and p95 (nearest rank). Prints the
table with the load average before and after, and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.reports.dataset import DEFAULT_URL, db_params, meta_read, scrubbed_env  # noqa: E402
from bench.reports.run import rebuild_full, timed  # noqa: E402

TARGET_MS = 1000
# (period, metric, by): the matrices a manager opens over a year.
CASES = [
    ("month", "retention", "none"),
    ("month", "revenue", "none"),
    ("month", "buyers", "none"),
    ("month", "retention", "channel"),
    ("month", "revenue", "channel"),
    ("month", "buyers", "channel"),
    ("week", "retention", "none"),
    ("week", "revenue", "none"),
    ("day", "retention", "none"),
    ("day", "revenue", "none"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"[{DEFAULT_URL}]")
    parser.add_argument("--runs", type=int, default=20, help="warm runs per matrix [20]")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the 365 days first")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    env = scrubbed_env(args.database_url)
    os.environ.update(env)  # before Django reads its settings
    meta = meta_read(db_params(args.database_url))
    if meta is None:
        raise SystemExit("no data set in that database: run bench.reports.dataset --keep first")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from analytics.models import CustomerCohort
    from analytics.reports.cohorts import CohortParams, CohortReport
    from scrm.wecom.models import Corp

    call_command("migrate", verbosity=0)
    corp = Corp.objects.get(pk=meta["corp_pk"])
    first, last = date.fromisoformat(meta["first_day"]), date.fromisoformat(meta["last_day"])
    found: dict = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    if args.rebuild or not CustomerCohort.objects.filter(added_at__isnull=False).exists():
        print("full 365-day rebuild (own process) ...", flush=True)
        found["rebuild_full"] = rebuild_full(env, corp.pk, first, last)
        print(f"  {found['rebuild_full']['wall_s']} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    # As of the day after the data set's last day (its clock), 12 months of cohorts.
    now = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=corp.tzinfo)
    year_first = last - timedelta(days=364)
    print(f"{'matrix':34} {'rows':>5} {'cols':>5} {'median ms':>10} {'p95 ms':>8}  target")
    for period, metric, by in CASES:
        params = CohortParams(corp=corp, first=year_first, last=last, period=period,
                              metric=metric, by=by)  # fmt: skip
        stats, result = timed(lambda p=params: CohortReport(p, now=now).calculate(), args.runs)
        name = f"{period}/{metric}/{by}"
        stats.update(rows=len(result.rows), columns=len(result.columns),
                     customers=result.totals["size"])  # fmt: skip
        found[name] = stats
        verdict = "PASS" if stats["p95_ms"] < TARGET_MS else "FAIL"
        print(f"{name:34} {len(result.rows):5} {len(result.columns):5} "
              f"{stats['median_ms']:10} {stats['p95_ms']:8}  {verdict}", flush=True)  # fmt: skip
    found["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    found["cpus"] = os.cpu_count()
    print(f"load average before {found['load_average_before']}, after "
          f"{found['load_average_after']} ({found['cpus']} CPUs)")  # fmt: skip
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"cohorts-{stamp}.json"
    path.write_text(json.dumps({"meta": meta, "results": found}, indent=1, default=str))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
