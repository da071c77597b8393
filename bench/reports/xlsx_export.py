"""The 100,000-row XLSX export in a process of its own, so that its peak memory is its own.

    python -m bench.reports.xlsx_export [--rows 100000]

Writes `--rows` report-shaped rows (the channel report grouped by staff member: an id, a name
and every figure, money as Decimal, rates as Decimal or None, as ReportResult.rows holds them)
plus the totals row through analytics.exports.xlsx_write to a temporary file. The rows are
built first, as a report's result holds them, so the time is the writer's. Needs no database.
Prints one JSON document: wall and CPU time, the file's size, resident memory before the
export (Python, Django, the app and the rows loaded) and its peak over the process's life
(VmHWM): constant_memory keeps the writer's own share flat.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.reports.rebuild import memory_mb  # noqa: E402

RATE = Decimal("0.0001")


def report_rows(count: int, seed: int = 618) -> Iterator[dict[str, Any]]:
    """`count` rows shaped like ChannelReport's (group_by="staff"), a few with null rates."""
    rng = random.Random(seed)
    for index in range(count):
        scans = rng.randint(0, 400)
        adds = rng.randint(0, 120)
        new = rng.randint(0, adds)
        buyers = rng.randint(0, new)
        revenue = Decimal(rng.randint(0, 5_000_000)) / 100
        cost = Decimal(rng.randint(1, 2_000_000)) / 100
        yield {
            "key": index + 1,
            "name": f"成员{index + 1:06d}",
            "scans": scans, "visitors": scans // 2, "adds": adds, "new_customers": new,
            "lost": adds // 10, "removed": adds // 20, "net_adds": adds - adds // 10 - adds // 20,
            "scan_to_add": (Decimal(adds) / scans).quantize(RATE) if scans else None,
            "consult_72h_rate": (Decimal(buyers) / new).quantize(RATE) if new else None,
            "retained_30d_rate": Decimal(rng.randint(0, 10_000)) / 10_000,
            "pending_30d": rng.randint(0, new),
            "revenue": revenue, "orders": buyers + rng.randint(0, buyers), "buyers": buyers,
            "repurchase_rate": Decimal(rng.randint(0, 10_000)) / 10_000 if buyers else None,
            "cost": cost,
            "cost_per_new_customer": (cost / new).quantize(Decimal("0.01")) if new else None,
            "roi": (revenue / cost).quantize(RATE),
        }  # fmt: skip


def xlsx_export_run(rows: int) -> dict[str, Any]:
    from analytics.exports import Table, report_columns, xlsx_write

    totals = {"scans": 0, "adds": 0, "revenue": Decimal("123456.78"), "roi": Decimal("1.2345")}
    table = Table(
        title="渠道报表",
        columns=report_columns("channels", "staff"),
        rows=list(report_rows(rows)),
        totals=totals,
    )
    before = memory_mb("VmRSS")
    with tempfile.TemporaryDirectory(prefix="scrm-xlsx-bench-") as folder:
        path = os.path.join(folder, "export.xlsx")
        started, cpu = time.perf_counter(), time.process_time()
        written = xlsx_write(table, path)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        size = os.path.getsize(path)
    return {
        "rows": written,
        "wall_s": round(wall, 2),
        "wall_ms": round(wall * 1000, 1),
        "cpu_s": round(cpu, 2),
        "file_mb": round(size / 1024 / 1024, 1),
        "rss_before_mb": before,
        "peak_rss_mb": memory_mb("VmHWM"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    import django

    django.setup()
    json.dump(xlsx_export_run(args.rows), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
