"""Workers keep their database connections between tasks (CONN_MAX_AGE, health-checked), and
concurrent inbox drains take disjoint rows instead of waiting on each other's row locks."""

import random
import threading
import time

import pytest
from django.db import connection, connections, transaction

from contacts.models import ExternalContact
from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.simulate import sandbox_customer_add
from scrm.wecom.services import callback_events_drain
from tests.integration.conftest import WORKER_LOG, requires_broker, requires_postgres, wait_for

pytestmark = pytest.mark.integration


def _backend_pids() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in cursor.fetchall()}


@requires_broker
def test_workers_reuse_their_database_connections_across_tasks(
    corp, sandbox_corp, post_event, celery_worker_process
):
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(_backend_pids())
            time.sleep(0.02)
        connections.close_all()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        rng = random.Random(4)
        for _ in range(30):  # posted in this process: its one connection, not a server's
            customer, follow, code = sandbox_customer_add(corp=sandbox_corp, userid="staff01",
                                                          rng=rng)  # fmt: skip
            post_event("add_external_contact", follow.createtime, UserID="staff01",
                       ExternalUserID=customer.external_userid, WelcomeCode=code)  # fmt: skip
        assert wait_for(
            lambda: ExternalContact.objects.filter(details_fetched_at__isnull=False).count() == 30
        ), WORKER_LOG.read_text()[-3000:]
    finally:
        done.set()
        watcher.join()
    # 30 adds are some 70 tasks (drains, welcomes, details and tags): a connection per task
    # was as many backends; reused, one per worker thread (2 workers x 4 threads), and this
    # test's own.
    assert len(seen) <= 10, len(seen)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_drain_passes_over_a_row_another_drain_holds(corp, post_event, monkeypatch):
    from scrm.wecom import services

    monkeypatch.setattr(services, "callback_event_enqueue", lambda event_id: None)
    for index in range(3):
        post_event("add_external_contact", UserID="staff01", ExternalUserID=f"wm{index}")
    first, *others = CallbackEvent.objects.order_by("pk").values_list("pk", flat=True)
    held, release = threading.Event(), threading.Event()

    def other_drain() -> None:  # holds the first row's lock, as a drain at work does
        with transaction.atomic():
            CallbackEvent.objects.select_for_update().filter(pk=first).first()
            held.set()
            release.wait(30)
        connections.close_all()

    holder = threading.Thread(target=other_drain)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        assert callback_events_drain() == 2  # the two others, without waiting
        assert time.monotonic() - started < 10
    finally:
        release.set()
        holder.join()
    statuses = dict(CallbackEvent.objects.values_list("pk", "status"))
    assert statuses[first] == CallbackEvent.Status.PENDING  # its holder processes it
    assert all(statuses[pk] == CallbackEvent.Status.PROCESSED for pk in others)
