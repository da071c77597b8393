"""Concurrent callbacks on PostgreSQL, through a live threaded server: the database, not luck,
keeps one customer, one first source (the earliest add) and every same-second add."""

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from contacts.models import ExternalContact, FirstSource, FollowRelation
from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.simulate import (
    deliver,
    event_xml,
    sandbox_corp_setup,
    sandbox_customer_add,
)
from tests.integration.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def _callback_url(live_server, corp):
    return f"{live_server.url}/wecom/callback/{corp.corp_id}/"


def test_one_customer_adding_16_staff_at_once_keeps_the_earliest_first_source(
    corp, sandbox_corp, live_server
):
    sandbox_corp = sandbox_corp_setup(corp_id=corp.corp_id, name=corp.name, members=16)
    rng = random.Random(5)
    base = int(time.time()) - 1000
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=rng, state="s01", create_time=base + 1
    )
    events = [(follow.userid, follow.createtime, "s01")]
    for index in range(2, 17):
        userid = f"staff{index:02d}"
        created = base + index
        sandbox_corp.customers.get(pk=customer.pk).follows.create(
            userid=userid, createtime=created, add_way=1, state=f"s{index:02d}"
        )
        events.append((userid, created, f"s{index:02d}"))
    rng.shuffle(events)
    url = _callback_url(live_server, corp)

    def send(event):
        userid, created, state = event
        xml = event_xml(corp.corp_id, "add_external_contact", created, UserID=userid,
                        ExternalUserID=customer.external_userid, State=state)  # fmt: skip
        try:
            return deliver(sandbox_corp, xml, url)
        finally:
            connection.close()  # this pool thread's own connection (it logs the delivery)

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(send, events))
    assert statuses == [200] * 16
    # Every event processed at its first try: the customer's row is locked before any staff
    # row is inserted, so the 16 processings (and their details refreshes) never deadlock.
    assert set(CallbackEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert ExternalContact.objects.count() == 1
    assert FollowRelation.objects.count() == 16
    first = FirstSource.objects.get()
    assert (first.staff.userid, first.state) == ("staff01", "s01")
    assert int(first.added_at.timestamp()) == base + 1


def test_32_customers_adding_one_staff_in_the_same_second_are_all_recorded(
    corp, sandbox_corp, live_server
):
    rng = random.Random(9)
    now = int(time.time())
    customers = [
        sandbox_customer_add(corp=sandbox_corp, userid="staff01", rng=rng, create_time=now)[0]
        for _ in range(32)
    ]
    url = _callback_url(live_server, corp)

    def send(customer):
        xml = event_xml(corp.corp_id, "add_external_contact", now, UserID="staff01",
                        ExternalUserID=customer.external_userid, State="burst")  # fmt: skip
        try:
            return [deliver(sandbox_corp, xml, url) for _ in range(2)]  # each delivered twice
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = [s for pair in pool.map(send, customers) for s in pair]
    assert statuses == [200] * 64
    assert CallbackEvent.objects.count() == 32
    assert set(CallbackEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert ExternalContact.objects.count() == 32
    assert FirstSource.objects.filter(staff__userid="staff01", state="burst").count() == 32
