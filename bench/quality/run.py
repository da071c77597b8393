"""Benchmark the hourly channel quality ranking: one corp with 200 channels and a few months of
rollups, scored and ranked as beat does it every hour.

    python bench/quality/run.py [--channels 200] [--days 120] [--runs 7] [--keep]

Creates the PostgreSQL database `scrm_bench_quality` (dropped at the end unless --keep),
migrates it and writes the rollups the ranking reads with COPY: per day and channel one flow,
cohort and cost row per live code (10 codes a channel, 500 staff members with a reply time),
devices for the visitors. Then times analytics.quality.quality_scores_compute (the hourly job's
work: the channel report over the period, the channels' reply medians, the scores, the ranks,
the hour's rows replaced) with one warm-up and `runs` timed calls: median and p95, against the
target of 5 s. Also times the quality page's selector and the pickers' ranks. Writes JSON to
bench/results/. See README.md here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from bench.callback_ingest import infra  # noqa: E402
from bench.reports.bulk import CopyBuffer, row  # noqa: E402
from bench.reports.dataset import scrubbed_env  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/scrm_bench_quality"
TARGET_MS = 5000
CODES_PER_CHANNEL = 10
STAFF = 500
COHORT_FIGURES = (
    "new_customers", "consult_72h", "mature_30d", "retained_30d",
    "revenue_7", "orders_7", "buyers_7", "repeat_buyers_7",
    "revenue_15", "orders_15", "buyers_15", "repeat_buyers_15",
    "revenue_30", "orders_30", "buyers_30", "repeat_buyers_30",
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    return parser.parse_args(argv)


def timed(fn: Callable[[], object], runs: int) -> dict:
    """One warm-up call, then `runs` timed calls: median and p95 (nearest rank) in ms."""
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "median_ms": round(median, 1),
        "p95_ms": round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 1),
        "min_ms": round(ordered[0], 1),
        "runs": len(samples),
        "samples_ms": [round(sample, 1) for sample in samples],
    }


def generate(args: argparse.Namespace) -> dict:
    """The corp, channels, codes and staff through the ORM; the rollups with COPY."""
    from django.db import connection

    from analytics.models import RollupDay
    from channels_app.models import Channel, LiveCode
    from contacts.models import Staff
    from scrm import days
    from scrm.wecom.models import Corp

    rng = random.Random(args.seed)
    corp = Corp.objects.create(corp_id="wwbenchquality01", name="质量基准", secret="x" * 32,
                               callback_token="t" * 16, encoding_aes_key="k" * 43)  # fmt: skip
    channels = Channel.objects.bulk_create(
        Channel(corp=corp, name=f"渠道{n}", code=f"ch_{n:03d}") for n in range(args.channels)
    )
    codes = LiveCode.objects.bulk_create(
        LiveCode(corp=corp, channel=channel, name=f"{channel.code}-{k}",
                 slug=f"{channel.code}-{k}", mode=("native", "landing")[k % 2])
        for channel in channels for k in range(CODES_PER_CHANNEL)
    )  # fmt: skip
    staff = Staff.objects.bulk_create(
        Staff(corp=corp, userid=f"s{n:03d}", avg_reply_minutes=rng.choice([None, *range(5, 600)]))
        for n in range(STAFF)
    )
    # Each channel has a quality of its own, so the ranking has something to rank.
    quality = {channel.pk: rng.random() for channel in channels}
    last = days.today(corp)
    first = last - timedelta(days=args.days - 1)
    counts = {"flows": 0, "cohorts": 0, "visitors": 0, "costs": 0}
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg2's own cursor, for copy_expert
        flows = CopyBuffer(raw, "analytics_dailyflow", ("corp_id", "channel_id", "live_code_id",
                           "staff_id", "day", "scans", "adds", "landing_adds", "lost", "removed",
                           "touch"))  # fmt: skip
        cohorts = CopyBuffer(raw, "analytics_dailycohort", ("corp_id", "channel_id",
                             "live_code_id", "staff_id", "day", *COHORT_FIGURES))  # fmt: skip
        visitors = CopyBuffer(raw, "analytics_dailyvisitor", ("corp_id", "channel_id",
                              "live_code_id", "staff_id", "day", "device_key", "utm_source",
                              "utm_medium", "utm_campaign", "device"))  # fmt: skip
        costs = CopyBuffer(raw, "analytics_dailycost", ("corp_id", "channel_id", "day", "amount"))
        for offset in range(args.days):
            day = first + timedelta(days=offset)
            mature = (last - day).days >= 30
            for code in codes:
                q = quality[code.channel_id]
                member = staff[rng.randrange(STAFF)]
                landing = code.mode == "landing"
                scans = rng.randint(5, 40) if landing else 0
                adds = rng.randint(1, 12)
                new = max(1, adds - rng.randint(0, 2))
                consult = int(new * q * rng.random())
                retained = int(new * (0.4 + 0.5 * q)) if mature else 0
                revenue = round(new * 80 * q * rng.random(), 2)
                buyers = min(new, int(new * q))
                for touch in ("any", "first"):
                    flows.add(row(corp.pk, code.channel_id, code.pk, member.pk, day, scans, adds,
                                  adds if landing else 0, rng.randint(0, 1), 0, touch))  # fmt: skip
                    counts["flows"] += 1
                cohorts.add(row(corp.pk, code.channel_id, code.pk, member.pk, day, new, consult,
                                new if mature else 0, retained,
                                *[revenue, buyers, buyers, 0] * 3))  # fmt: skip
                counts["cohorts"] += 1
                for device in range(scans // 2):
                    key = f"d{code.pk}-{device}-{offset % 7}"  # devices come back weekly
                    visitors.add(row(corp.pk, code.channel_id, code.pk, member.pk, day, key,
                                     "", "", "", "mobile"))  # fmt: skip
                    counts["visitors"] += 1
            for channel in channels:
                costs.add(row(corp.pk, channel.pk, day, round(100 + 400 * rng.random(), 2)))
                counts["costs"] += 1
        for buffer in (flows, cohorts, visitors, costs):
            buffer.flush()
    now = datetime.now(UTC)
    RollupDay.objects.bulk_create(
        RollupDay(corp=corp, day=first + timedelta(days=n), computed_at=now, dirty=False)
        for n in range(args.days)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"corp": corp.pk, "channels": len(channels), "live_codes": len(codes), "staff": STAFF,
            "days": args.days, "first_day": first.isoformat(), "last_day": last.isoformat(),
            "rows": counts}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = infra.db_params(args.database_url)
    os.environ.update(scrubbed_env(args.database_url))  # before Django reads its settings
    infra.database_create(params)
    busy_before = infra.cpu_busy()
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        dataset = generate(args)
        dataset["generated_s"] = round(time.perf_counter() - started, 1)
        print(f"Generated in {dataset['generated_s']} s: {json.dumps(dataset['rows'])}", flush=True)
        measurements = measure(args, dataset["corp"])
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            infra.database_drop(params)
            print(f"Database {params['dbname']} dropped (no --keep).")
    busy_after = infra.cpu_busy()
    scoring = measurements["quality_scores_compute"]
    verdict = "met" if scoring["p95_ms"] < TARGET_MS else "MISSED"
    print(f"hourly scoring of {dataset['channels']} channels: median {scoring['median_ms']} ms, "
          f"p95 {scoring['p95_ms']} ms (target < {TARGET_MS} ms: {verdict})")  # fmt: skip
    for name in ("quality_overview", "quality_picker_ranks"):
        found = measurements[name]
        print(f"{name}: median {found['median_ms']} ms, p95 {found['p95_ms']} ms")
    infra.warn_if_busy(busy_before, busy_after)
    summary = {
        "benchmark": "quality",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": dataset,
        "target_ms": TARGET_MS,
        "verdict": verdict,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "cpu_busy_before": busy_before, "cpu_busy_after": busy_after},
        "measurements": measurements,
    }  # fmt: skip
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"quality-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"Results written to {out}")
    return 0


def measure(args: argparse.Namespace, corp_pk: int) -> dict:
    from django.db import connection

    from analytics.models import QualityScore
    from analytics.quality import quality_overview, quality_picker_ranks, quality_scores_compute
    from scrm.wecom.models import Corp

    corp = Corp.objects.get(pk=corp_pk)
    found = {"quality_scores_compute": timed(lambda: quality_scores_compute(corp=corp), args.runs)}
    ranked = QualityScore.objects.filter(corp=corp).values("computed_at").distinct().count()
    assert ranked >= 1, "no ranking stored"
    # A week of hourly history for the page: the hour's rows copied back 168 hours.
    latest = list(QualityScore.objects.filter(corp=corp))
    for hours in range(1, 168):
        QualityScore.objects.bulk_create(
            QualityScore(**{**{f.attname: getattr(score, f.attname) for f in score._meta.fields
                               if f.attname != "id"},
                            "computed_at": score.computed_at - timedelta(hours=hours)})
            for score in latest
        )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE analytics_qualityscore")
    found["quality_overview"] = timed(lambda: quality_overview(corp=corp), args.runs)
    found["quality_picker_ranks"] = timed(lambda: quality_picker_ranks([corp.pk]), args.runs)
    return found


if __name__ == "__main__":
    with closing(psycopg2.connect(dbname="postgres", host="127.0.0.1", user="postgres")):
        pass  # PostgreSQL answers: fail here, before anything is created
    sys.exit(main())
