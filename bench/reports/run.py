"""Benchmark the channel reports: the product's rollups and reports against the same report
computed on read from the raw tables.

    python bench/reports/run.py [--scale 1.0] [--runs 10] [--keep]
    python bench/reports/run.py --reuse            # the data a --keep run left

Generates the data set (dataset.py, in a subprocess) or reuses it, then measures with wall
time, each as the median and p95 of warm runs (one warm-up first): the product's channel report
over 30 and 365 days, its daily trend over 90 days, the rebuild of one corp-day, the full
365-day rebuild (once, in a process of its own: its peak RSS), and the baseline
(baseline.py) over 30 and 365 days; prints them next to the targets with the ratio
product/baseline, checks that the product's 30-day figures equal the baseline's and writes
JSON to bench/results/. Until analytics/ has the product's side, only the baseline runs.
Exits 1 when the figures differ or the data's checks failed (with --strict, also when a
target is missed). See README.md here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from bench.callback_ingest import infra  # noqa: E402
from bench.reports.baseline import channel_report  # noqa: E402
from bench.reports.compare import reports_compare  # noqa: E402
from bench.reports.dataset import DEFAULT_URL, db_params, meta_read, scrubbed_env  # noqa: E402

# (measurement, target in ms, statistic the target applies to)
TARGETS = {
    "product_channel_30d": ("channel report, 30 days", 300, "p95_ms"),
    "product_channel_365d": ("channel report, 365 days", 1000, "p95_ms"),
    "product_daily_90d": ("daily trend, 90 days", 200, "p95_ms"),
    "product_rebuild_day": ("rebuild of one corp-day", 2000, "p95_ms"),
    "product_rebuild_full": ("full 365-day rebuild, 1 worker", 600_000, "wall_ms"),
    "product_rebuild_rss": ("peak RSS of the full rebuild", 300, "peak_rss_mb"),
    "product_xlsx_100k": ("XLSX export, 100,000 rows", 15_000, "wall_ms"),
    "baseline_channel_30d": ("baseline (on read), 30 days", None, "p95_ms"),
    "baseline_channel_365d": ("baseline (on read), 365 days", None, "p95_ms"),
}
NOT_YET = "product report not available yet"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="data set size [1.0]")
    parser.add_argument("--seed", type=int, default=618, help="data set seed [618]")
    parser.add_argument("--reuse", action="store_true", help="reuse the kept data set")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--runs", type=int, default=10, help="warm runs per measurement [10]")
    parser.add_argument(
        "--baseline-runs", type=int, default=5, help="warm runs of the 365-day baseline [5]"
    )
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"[{DEFAULT_URL}]")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.baseline_runs < 1:
        parser.error("--runs and --baseline-runs must be at least 1")
    return args


# -- timing ------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], runs: int) -> tuple[dict, object]:
    """One warm-up call, then `runs` timed calls: median and p95 (nearest rank: with fewer
    than 20 runs, the slowest) in ms, and the last call's result."""
    result = fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    stats = {
        "median_ms": round(ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else
                           (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2, 1),
        "p95_ms": round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 1),
        "min_ms": round(ordered[0], 1),
        "runs": len(samples),
        "samples_ms": [round(s, 1) for s in samples],
    }  # fmt: skip
    return stats, result


# -- the data set ------------------------------------------------------------------------------


def dataset_ensure(args: argparse.Namespace, params: dict) -> dict:
    if args.reuse:
        meta = meta_read(params)
        if meta is None:
            raise SystemExit(f"{params['dbname']} holds no generated data: run without --reuse")
        print(f"Reusing {params['dbname']}: scale {meta['scale']}, {meta['first_day']} to "
              f"{meta['last_day']}, generated {meta['generated_at']}", flush=True)  # fmt: skip
        return meta
    print(f"Generating the data set (scale {args.scale}) ...", flush=True)
    completed = subprocess.run(
        [sys.executable, "-m", "bench.reports.dataset", "--scale", str(args.scale),
         "--seed", str(args.seed), "--database-url", args.database_url, "--keep"],
        cwd=ROOT, check=False, stdout=subprocess.PIPE, timeout=3600,
    )  # fmt: skip
    lines = completed.stdout.decode().strip().splitlines()
    if not lines:
        raise SystemExit(f"dataset.py failed (exit {completed.returncode})")
    return json.loads(lines[-1])


# -- the product's side ------------------------------------------------------------------------


def product_load() -> tuple[dict | None, str]:
    """The product's report classes and rebuild (analytics/), or None and why not."""
    try:
        from analytics.reports import ChannelReport, DailyReport, ReportParams
        from analytics.rollups import rollups_rebuild
    except ImportError as exc:
        return None, f"{NOT_YET} ({exc})"
    return {
        "ChannelReport": ChannelReport,
        "DailyReport": DailyReport,
        "ReportParams": ReportParams,
        "rollups_rebuild": rollups_rebuild,
    }, ""


def rebuild_full(env: dict[str, str], corp_pk: int, first: date, last: date) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.reports.rebuild", "--corp", str(corp_pk),
         "--first", first.isoformat(), "--last", last.isoformat()],
        cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, timeout=7200,
    )  # fmt: skip
    result = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    result["wall_ms"] = round(result["wall_s"] * 1000, 1)
    return result


def product_measure(product: dict, env: dict, meta: dict, runs: int) -> tuple[dict, dict]:
    """Every measurement of the product's side; returns them and the 30-day report."""
    from scrm.wecom.models import Corp

    corp = Corp.objects.get(pk=meta["corp_pk"])
    first, last = date.fromisoformat(meta["first_day"]), date.fromisoformat(meta["last_day"])
    params = product["ReportParams"]

    def report(cls: type, days: int) -> Callable[[], object]:
        p = params(corp=corp, first=last - timedelta(days=days - 1), last=last, window=30,
                   group_by="channel")  # fmt: skip
        return lambda: cls(p).calculate()

    found: dict[str, dict] = {}
    print("  full rebuild (own process) ...", flush=True)
    found["product_rebuild_full"] = rebuild_full(env, corp.pk, first, last)
    found["product_rebuild_rss"] = found["product_rebuild_full"]
    # Statistics for the rollup tables the rebuild filled, as autovacuum would give them within
    # a minute (a development server may have it off, as this one does).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    rebuild = product["rollups_rebuild"]
    found["product_rebuild_day"], _ = timed(lambda: rebuild(corp=corp, first=last, last=last), runs)
    found["product_channel_30d"], result_30d = timed(report(product["ChannelReport"], 30), runs)
    found["product_channel_365d"], _ = timed(report(product["ChannelReport"], 365), runs)
    found["product_daily_90d"], _ = timed(report(product["DailyReport"], 90), runs)
    return found, {"result": result_30d, "first": last - timedelta(days=29), "last": last}


def xlsx_export_measure(rows: int = 100_000) -> dict:
    """The XLSX export of `rows` report-shaped rows (target < 15 s), in a process of its own
    (xlsx_export.py: wall time, the file's size, peak RSS). Needs no database."""
    if importlib.util.find_spec("analytics.exports") is None:
        return {"skipped": "analytics.exports does not exist yet"}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.reports.xlsx_export", "--rows", str(rows)],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, timeout=600,
    )  # fmt: skip
    return json.loads(completed.stdout.decode().strip().splitlines()[-1])


# -- the report --------------------------------------------------------------------------------


def _verdict(key: str, measured: dict | None) -> tuple[str, str, str, str]:
    label, target, stat = TARGETS[key]
    if not measured or "skipped" in measured:
        reason = (measured or {}).get("skipped", NOT_YET)
        return label, "-", "-", f"skipped: {reason}"
    if stat == "peak_rss_mb":
        value = measured["peak_rss_mb"]
        return label, f"{value:.0f} MB", "", f"< {target} MB  " + (
            "PASS" if value < target else "FAIL")  # fmt: skip
    if stat == "wall_ms":
        return label, f"{measured['wall_ms'] / 1000:.1f} s", "", f"< {target / 1000:.0f} s  " + (
            "PASS" if measured["wall_ms"] < target else "FAIL")  # fmt: skip
    median, p95 = f"{measured['median_ms']:.1f} ms", f"{measured['p95_ms']:.1f} ms"
    if target is None:
        return label, median, p95, ""
    return label, median, p95, f"p95 < {target} ms  " + (
        "PASS" if measured["p95_ms"] < target else "FAIL")  # fmt: skip


def table_print(found: dict, ratios: dict, compared: dict) -> None:
    print(f"\n{'measurement':<34} {'median':>12} {'p95':>12}   target")
    for key in TARGETS:
        label, median, p95, verdict = _verdict(key, found.get(key))
        print(f"{label:<34} {median:>12} {p95:>12}   {verdict}")
    for period, ratio in ratios.items():
        if ratio is None:
            shown = "n/a"
        elif ratio < 1:
            shown = f"{ratio:.4f} (the product {1 / ratio:.0f}x faster)"
        else:
            shown = f"{ratio:.2f} (the product {ratio:.1f}x slower)"
        print(f"ratio product/baseline (median), {period}: {shown}")
    print(f"figures, product vs baseline over 30 days: {compared['verdict']}")
    for line in compared.get("differences", [])[:20]:
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = db_params(args.database_url)
    env = scrubbed_env(args.database_url)
    os.environ.update(env)  # before Django reads its settings
    busy_before = infra.cpu_busy()
    meta = dataset_ensure(args, params)
    generated_here = not args.reuse
    try:
        found, ratios, compared = measure(args, env, params, meta)
    finally:
        if generated_here and not args.keep:
            infra.database_drop(params)
            print(f"Database {params['dbname']} dropped (no --keep).")
    busy_after = infra.cpu_busy()
    summary = {
        "benchmark": "reports",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": meta,
        "config": {"runs": args.runs, "baseline_runs_365d": args.baseline_runs},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "cpu_busy_before": busy_before and round(busy_before, 3),
            "cpu_busy_after": busy_after and round(busy_after, 3),
        },
        "measurements": found,
        "ratios_product_over_baseline": ratios,
        "cross_check_30d": compared,
    }
    infra.warn_if_busy(busy_before, busy_after)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"reports-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nResults written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    failed = compared["verdict"].startswith("DIFFERENT") or bool(meta.get("check_failures"))
    if args.strict:
        failed = failed or any("FAIL" in _verdict(k, found.get(k))[3] for k in TARGETS)
    return 1 if failed else 0


def measure(args: argparse.Namespace, env: dict, params: dict, meta: dict):
    import django

    django.setup()
    found: dict[str, dict] = {}
    last = date.fromisoformat(meta["last_day"])
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        cur.execute("SELECT current_setting('shared_buffers'), current_setting('work_mem')")
        meta["postgres"] = dict(zip(("shared_buffers", "work_mem"), cur.fetchone(), strict=True))
        print("Baseline (on read from the raw tables):", flush=True)
        for key, days, runs in (("baseline_channel_30d", 30, args.runs),
                                ("baseline_channel_365d", 365, args.baseline_runs)):  # fmt: skip
            start = last - timedelta(days=days - 1)
            found[key], result = timed(
                lambda start=start: channel_report(cur, corp_pk=meta["corp_pk"], first=start,
                                                   last=last), runs)  # fmt: skip
            found[key]["seconds_per_family"] = {k: round(v, 3) for k, v in result.seconds.items()}
            found[key]["totals"] = result.totals
            print(f"  {days} days: median {found[key]['median_ms']:.0f} ms, "
                  f"p95 {found[key]['p95_ms']:.0f} ms", flush=True)  # fmt: skip
        product, why = product_load()
        compared: dict = {"verdict": f"not compared: {why}"}
        ratios: dict = {"30 days": None, "365 days": None}
        if product is None:
            print(why)
            for key in TARGETS:
                found.setdefault(key, {"skipped": NOT_YET})
        else:
            print("Product (rollups and reports):", flush=True)
            measured, product_30d = product_measure(product, env, meta, args.runs)
            found.update(measured)
            ratios = {
                "30 days": found["product_channel_30d"]["median_ms"]
                / found["baseline_channel_30d"]["median_ms"],
                "365 days": found["product_channel_365d"]["median_ms"]
                / found["baseline_channel_365d"]["median_ms"],
            }
            result = product_30d["result"]
            as_of = result.computed_at  # the rollups' as-of time of the 30-day retention
            base = channel_report(cur, corp_pk=meta["corp_pk"], first=product_30d["first"],
                                  last=last, as_of=as_of)  # fmt: skip
            differences = reports_compare(list(result.rows), base.rows, days=30)
            totals = result.totals if isinstance(result.totals, dict) else vars(result.totals)
            differences += reports_compare([{**totals, "key": None}], [base.totals], days=30)
            compared = {
                "verdict": f"DIFFERENT ({len(differences)} figures)" if differences else "EQUAL",
                "as_of": as_of.isoformat(),
                "differences": differences,
            }
        print("XLSX export, 100,000 rows (own process) ...", flush=True)
        found["product_xlsx_100k"] = xlsx_export_measure()
    table_print(found, ratios, compared)
    return found, ratios, compared


if __name__ == "__main__":
    sys.exit(main())
