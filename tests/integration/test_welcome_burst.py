"""A burst of 200 adds on the real services: every welcome message goes out inside its
welcome_code's 20 seconds; the sandbox records when each code was issued and used.

A timing SLA, not a correctness test: marked `sla`, left out of `make test` and run by
`make test-sla` against PostgreSQL, Redis and Celery workers (see the README)."""

import datetime as dt

import pytest
from django.db.models import F

from channels_app.models import SourceRule, WelcomeDelivery
from scrm.wecom.sandbox.models import SandboxWelcomeCode
from scrm.wecom.sandbox.simulate import simulate_adds
from tests.integration.conftest import WORKER_LOG, requires_broker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.sla, requires_broker]
BURST = 200


def test_every_welcome_of_a_200_add_burst_is_sent_within_20_seconds(
    corp, live_server, celery_worker_process
):
    SourceRule.objects.create(corp=corp, name="所有新客户", welcome_text="您好 {customer_name}")
    report = simulate_adds(corp_id=corp.corp_id, adds=BURST, url=live_server.url, seed=8)
    assert report.answered_200 == BURST
    # Each add queues its welcome's row at once (outcome "queued"), then the worker sends it.
    assert wait_for(
        lambda: WelcomeDelivery.objects.exclude(outcome="queued").count() == BURST, timeout=90
    ), WORKER_LOG.read_text()[-3000:]
    assert WelcomeDelivery.objects.exclude(outcome="sent").count() == 0
    codes = SandboxWelcomeCode.objects.all()
    assert codes.filter(used_at__isnull=True).count() == 0
    latencies = sorted(
        (c.used_at - c.issued_at).total_seconds() for c in codes.only("issued_at", "used_at")
    )
    assert latencies[-1] < 20, latencies[-10:]
    assert codes.filter(used_at__gt=F("issued_at") + dt.timedelta(seconds=20)).count() == 0
