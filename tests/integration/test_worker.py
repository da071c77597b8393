"""End to end on the real services: simulated WeCom callbacks over HTTP to a live server on
PostgreSQL, queued through Redis, processed by a real Celery worker process."""

import os

import pytest
import requests

from channels_app.models import Channel, DailyCounter, LiveCode, Scan
from channels_app.services.live_codes import live_code_create
from channels_app.services.publishing import live_code_publish
from contacts.models import ExternalContact, FirstSource
from contacts.services import staff_get_or_create
from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.models import SandboxFollow
from scrm.wecom.sandbox.simulate import simulate_adds
from tests.integration.conftest import WORKER_LOG, requires_broker, wait_for

pytestmark = [pytest.mark.integration, requires_broker]


def test_simulated_adds_flow_through_broker_and_worker(corp, live_server, celery_worker_process):
    report = simulate_adds(
        corp_id=corp.corp_id, adds=40, duplicates=0.3, shuffle=True, url=live_server.url,
        states=["pyq_0012", "xhs_618", ""], seed=3,
    )  # fmt: skip
    assert report.failed == 0
    assert wait_for(
        lambda: ExternalContact.objects.filter(details_fetched_at__isnull=False).count() == 40
    ), WORKER_LOG.read_text()[-3000:]
    assert CallbackEvent.objects.count() == 40
    assert CallbackEvent.objects.exclude(status=CallbackEvent.Status.PROCESSED).count() == 0
    expected = {
        (f.customer.external_userid, f.userid, f.state, f.add_way)
        for f in SandboxFollow.objects.select_related("customer")
    }
    actual = set(
        FirstSource.objects.values_list(
            "external_contact__external_userid", "staff__userid", "state", "add_way"
        )
    )
    assert actual == expected


@pytest.mark.skipif(
    not os.environ.get("LANDING_REDIS_URL"),
    reason="needs LANDING_REDIS_URL, shared with the worker process",
)
def test_landing_scans_buffered_in_redis_reach_the_database_through_the_worker(
    corp, sandbox_corp, live_server, redis_path, celery_worker_process
):
    channel = Channel.objects.create(corp=corp, name="小红书", code="xhs_1111")
    pool = [{"staff": staff_get_or_create(corp=corp, userid=userid), "daily_cap": 50}
            for userid in ("staff01", "staff02")]  # fmt: skip
    code = live_code_create(corp=corp, channel=channel, name="双十一", slug="xhs1111",
                            mode=LiveCode.Mode.LANDING, pool=pool)  # fmt: skip
    live_code_publish(live_code=code)
    for index in range(12):
        headers = {"User-Agent": f"Mozilla/5.0 (iPhone) MicroMessenger/8.0 device/{index}"}
        response = requests.get(f"{live_server.url}/l/xhs1111/?utm_source=xhs", headers=headers,
                                timeout=30)  # fmt: skip
        assert response.status_code == 200
    # No flush here: the page queued it (debounced) and the worker ran it.
    assert wait_for(lambda: Scan.objects.count() == 12), WORKER_LOG.read_text()[-3000:]
    assert wait_for(lambda: redis_path.client.xlen(redis_path.stream) == 0)
    assert Scan.objects.filter(utm_source="xhs", staff__isnull=False).count() == 12
    # Capacity comes from DailyCounter in grants (channels_app.landing_redis): it covers the
    # scans, within the caps.
    taken = list(DailyCounter.objects.values_list("assigned", flat=True))
    assert sum(taken) >= 12
    assert all(n <= 50 for n in taken)
