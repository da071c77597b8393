"""Daily caps hold under 64 concurrent landing requests on PostgreSQL (real threads, a live
threaded server), on both landing stores: counters claimed in the database, and capacity the
Redis store was granted from them. (tests/channels/test_landing_store_contract.py runs the
same on the service without HTTP.)"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from channels_app.models import Channel, DailyCounter, LiveCode, Scan
from channels_app.services.live_codes import live_code_create
from channels_app.services.publishing import live_code_publish
from contacts.services import staff_get_or_create
from tests.integration.conftest import requires_postgres

pytestmark = [
    requires_postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("landing_path"),
]
CAPS = {"staff01": 5, "staff02": 7, "staff03": 10}


@pytest.mark.parametrize("strategy", ["least_loaded", "round_robin", "weighted"])
def test_64_concurrent_scans_never_exceed_daily_caps(corp, sandbox_corp, live_server, strategy):
    channel = Channel.objects.create(corp=corp, name="抖音信息流", code="dy_ad_07")
    pool = [{"staff": staff_get_or_create(corp=corp, userid=userid), "daily_cap": cap}
            for userid, cap in CAPS.items()]  # fmt: skip
    code = live_code_create(corp=corp, channel=channel, name="冲刺", slug="dy07",
                            mode=LiveCode.Mode.LANDING, strategy=strategy, pool=pool)  # fmt: skip
    live_code_publish(live_code=code)

    def scan(index: int) -> int:
        headers = {"User-Agent": f"Mozilla/5.0 (iPhone) MicroMessenger/8.0 device/{index}"}
        return requests.get(f"{live_server.url}/l/dy07/", headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = Counter(pool.map(scan, range(64)))
    total = sum(CAPS.values())
    assert statuses == {200: total, 503: 64 - total}
    assigned = Counter(Scan.objects.exclude(staff=None).values_list("staff__userid", flat=True))
    assert assigned == CAPS
    counters = dict(DailyCounter.objects.values_list("staff__userid", "assigned"))
    assert counters == CAPS
