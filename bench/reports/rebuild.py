"""One rollup rebuild in a process of its own, so that its peak memory is its own.

    python -m bench.reports.rebuild --corp 1 --first 2025-12-06 --last 2026-12-05

Run by run.py with the benchmark's environment (DATABASE_URL, DEBUG off). Prints one JSON
document: wall time, resident memory before the rebuild (Python, Django and the app loaded)
and its peak over the process's life (VmHWM, the kernel's high-water mark).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def memory_mb(field: str) -> float | None:
    """VmRSS (now) or VmHWM (peak) of this process, in MB (Linux /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corp", type=int, required=True)
    parser.add_argument("--first", type=date.fromisoformat, required=True)
    parser.add_argument("--last", type=date.fromisoformat, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from analytics.rollups import rollups_rebuild
    from scrm.wecom.models import Corp

    corp = Corp.objects.get(pk=args.corp)
    before = memory_mb("VmRSS")
    started = time.perf_counter()
    rollups_rebuild(corp=corp, first=args.first, last=args.last)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    json.dump(
        {
            "wall_s": round(wall, 2),
            "rss_before_mb": before,
            "peak_rss_mb": memory_mb("VmHWM") or round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
