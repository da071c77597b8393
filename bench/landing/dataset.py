"""The landing benchmark's data, set up before the server starts and checked after it stops.

    python -m bench.landing.dataset setup --caps 200,200,300,,,
    python -m bench.landing.dataset verify

Run from the project root with the server's environment (settings module, DATABASE_URL; no
WECOM_API_BASE, so publishing reaches the in-process sandbox). Each command prints one JSON
document on stdout; Django's logging goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

import django

CORP_ID = "wwbenchlanding0001"
SLUG = "bench-landing"
CHANNEL = {"name": "朋友圈广告 (bench)", "code": "pyq_bench", "utm_source": "pyq"}


def parse_caps(text: str) -> list[int | None]:
    """ "200,200,300,,," -> [200, 200, 300, None, None, None]: one entry per pool member."""
    caps = [int(part) if part.strip() else None for part in text.split(",")]
    if any(cap is not None and cap < 0 for cap in caps):
        raise ValueError("caps must be >= 0 (empty: no cap)")
    return caps


def setup(caps: list[int | None]) -> dict[str, object]:
    """A sandbox corp with one member per cap, our Corp with its credentials, a channel and a
    landing code whose pool has those caps, published (landing slots in the sandbox)."""
    from channels_app.models import Channel, LandingSlot, LiveCode
    from channels_app.services.live_codes import live_code_create
    from channels_app.services.publishing import live_code_publish
    from contacts.services import staff_get_or_create
    from scrm.wecom.sandbox.simulate import sandbox_corp_setup
    from scrm.wecom.services import corp_create

    sandbox = sandbox_corp_setup(corp_id=CORP_ID, name="渠道压测企业", members=len(caps))
    corp = corp_create(
        corp_id=sandbox.corp_id,
        name=sandbox.name,
        secret=sandbox.secret,
        callback_token=sandbox.callback_token,
        encoding_aes_key=sandbox.encoding_aes_key,
    )
    staff = [
        staff_get_or_create(corp=corp, userid=userid)
        for userid in sandbox.members.order_by("userid").values_list("userid", flat=True)
    ]
    if len(staff) != len(caps):
        raise RuntimeError(f"expected {len(caps)} sandbox members, got {len(staff)}")

    channel = Channel(corp=corp, channel_type=Channel.Type.AD, **CHANNEL)
    channel.full_clean()
    channel.save()
    live_code = live_code_create(
        corp=corp,
        channel=channel,
        name="618 落地页压测",
        slug=SLUG,
        mode=LiveCode.Mode.LANDING,
        strategy=LiveCode.Strategy.LEAST_LOADED,
        pool=[{"staff": member, "daily_cap": cap} for member, cap in zip(staff, caps, strict=True)],
    )
    live_code = live_code_publish(live_code=live_code)
    return {
        "corp_id": corp.corp_id,
        "slug": live_code.slug,
        "status": live_code.status,
        "slots": LandingSlot.objects.filter(live_code=live_code).exclude(config_id="").count(),
        "members": [
            {"userid": s.userid, "staff_id": s.pk, "cap": cap}
            for s, cap in zip(staff, caps, strict=True)
        ],
    }


def verify() -> dict[str, object]:
    """What the run left in the database: scans per staff member and local day next to the
    DailyCounter's capacity taken (the database path's claims and the Redis store's grants),
    and the member's cap."""
    from django.db.models import Count, Q
    from django.db.models.functions import TruncDate

    from channels_app.models import DailyCounter, LiveCode, Scan
    from channels_app.services.landing_scans import landing_scans_flush

    # On the Redis path, scans the server buffered after its last flush (no worker runs in the
    # bench) are written now, as the beat's flush would.
    flushed = landing_scans_flush()
    live_code = LiveCode.objects.select_related("corp").get(slug=SLUG)
    scans = Scan.objects.filter(live_code=live_code)
    totals = scans.aggregate(
        total=Count("pk"),
        assigned=Count("pk", filter=Q(staff__isnull=False)),
        unassigned=Count("pk", filter=Q(staff__isnull=True)),
        reused=Count("pk", filter=Q(reused=True)),
        without_slot=Count("pk", filter=Q(staff__isnull=False, slot__isnull=True)),
    )
    # DailyCounter.assigned covers new assignments only: a returning device keeps its staff
    # member and takes no capacity, so it is compared with the scans that were not reused.
    per_day = (
        scans.filter(staff__isnull=False, reused=False)
        .annotate(day=TruncDate("created_at", tzinfo=live_code.corp.tzinfo))
        .values("staff_id", "day")
        .annotate(scans=Count("pk"))
    )
    scan_counts = {(row["staff_id"], row["day"]): row["scans"] for row in per_day}
    counters = {
        (c.staff_id, c.day): c.assigned for c in DailyCounter.objects.filter(live_code=live_code)
    }
    rows = []
    for member in live_code.pool.select_related("staff").order_by("staff__userid"):
        days = sorted(
            day for staff_id, day in scan_counts.keys() | counters if staff_id == member.staff_id
        )
        for day in days or [None]:
            rows.append(
                {
                    "userid": member.staff.userid,
                    "staff_id": member.staff_id,
                    "day": day.isoformat() if day else None,
                    "cap": member.daily_cap,
                    "scans": scan_counts.get((member.staff_id, day), 0),
                    "counter_assigned": counters.get((member.staff_id, day), 0),
                }
            )
    return {"slug": SLUG, "scans": totals, "staff": rows, "flushed_at_verify": flushed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    setup_parser = commands.add_parser("setup", help="create and publish the landing code")
    setup_parser.add_argument("--caps", type=parse_caps, required=True)
    commands.add_parser("verify", help="scans and counters per staff member, as JSON")
    args = parser.parse_args(argv)
    django.setup()
    result = setup(args.caps) if args.command == "setup" else verify()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
