"""The landing page is hot (every scan of a campaign): its statements are counted so that a
change adding a query per visit shows up here before it shows up in bench/landing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.models import Scan
from channels_app.services.publishing import live_code_publish

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"


def _statements(captured: CaptureQueriesContext) -> list[str]:
    """What reached the database, savepoints aside (the test's transaction adds them)."""
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


@pytest.mark.django_db
def test_a_landing_visit_stays_within_its_statements(make_code, sandbox_corp, client,
                                                     database_path):  # fmt: skip
    code = live_code_publish(live_code=make_code())
    client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.1")  # counters
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/l/{code.slug}/", {"utm_source": "xhs"},
                              HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.2")  # fmt: skip
    assert response.status_code == 200
    statements = _statements(captured)
    # The code and its pool come from the per-process cache; then returning device, counters,
    # counter claim, slot lock, slot lease, scan INSERT. The slot top-up check is debounced and
    # runs after commit.
    assert len(statements) <= 6, "\n".join(statements)
    assert statements[-1].startswith("INSERT INTO"), statements[-1]
    assert Scan.objects.count() == 2


@pytest.mark.django_db
def test_a_landing_visit_on_the_redis_path_runs_no_statement(make_code, sandbox_corp, client,
                                                             redis_path, monkeypatch):  # fmt: skip
    from channels_app import landing_redis
    from channels_app.services.landing_scans import landing_scans_flush

    code = live_code_publish(live_code=make_code())
    client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.1")  # seeds
    monkeypatch.setattr(landing_redis, "_flush_soon", lambda: None)  # the flush is a task's work
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/l/{code.slug}/", {"utm_source": "xhs"},
                              HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.2")  # fmt: skip
    assert response.status_code == 200
    assert _statements(captured) == []
    assert Scan.objects.count() == 1  # the first visit's, flushed at once (Celery eager)
    landing_scans_flush()
    assert Scan.objects.count() == 2
    assert Scan.objects.filter(utm_source="xhs").count() == 1


@pytest.mark.django_db
def test_a_capped_member_on_the_redis_path_costs_a_statement_once_per_grant(
    make_code, sandbox_corp, client, staff, redis_path, monkeypatch
):
    from channels_app import landing_redis
    from channels_app.models import DailyCounter

    monkeypatch.setattr(landing_redis, "_flush_soon", lambda: None)
    code = live_code_publish(live_code=make_code(caps=(100,)))  # a grant of 10 visits
    code.pool.exclude(staff=staff[0]).update(is_enabled=False)
    client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.1")  # 1st grant
    assert DailyCounter.objects.get(staff=staff[0]).assigned == landing_redis.grant_chunk(100)
    with CaptureQueriesContext(connection) as captured:
        for index in range(2, 20):
            response = client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE,
                                  REMOTE_ADDR=f"10.0.0.{index}")  # fmt: skip
            assert response.status_code == 200
    # Visits 2..10 spend the first grant; the 11th reserves the next ten with one UPDATE.
    assert [q.split()[0] for q in _statements(captured)] == ["UPDATE"]
    assert DailyCounter.objects.get(staff=staff[0]).assigned == 20
