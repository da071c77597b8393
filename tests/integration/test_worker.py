"""End to end on the real services: simulated WeCom callbacks over HTTP to a live server on
PostgreSQL, queued through Redis, processed by a real Celery worker process."""

import pytest

from contacts.models import ExternalContact, FirstSource
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
