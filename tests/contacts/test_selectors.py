import datetime as dt

import pytest
from django.utils import timezone

from contacts.selectors import external_contact_ids_pending_details, external_contact_list
from contacts.services import DETAILS_MAX_ATTEMPTS
from tests.factories import CorpFactory, ExternalContactFactory, FirstSourceFactory

pytestmark = pytest.mark.django_db


def test_list_filters_by_first_source_fields():
    corp = CorpFactory()
    scan = FirstSourceFactory(external_contact__corp=corp, add_way=1, state="pyq_0012")
    card = FirstSourceFactory(external_contact__corp=corp, add_way=3, state="")
    old = FirstSourceFactory(
        external_contact__corp=corp, add_way=1, state="xhs_618",
        added_at=timezone.now() - dt.timedelta(days=40),
    )  # fmt: skip

    def ids(**filters):
        return {c.pk for c in external_contact_list(filters=filters)}

    everyone = {scan.external_contact_id, card.external_contact_id, old.external_contact_id}
    assert ids() == everyone
    assert ids(add_way="3") == {card.external_contact_id}
    assert ids(state="pyq_0012") == {scan.external_contact_id}
    assert ids(state_prefix="xhs_") == {old.external_contact_id}
    assert ids(staff=scan.staff.userid) == {scan.external_contact_id}
    since = (timezone.localdate() - dt.timedelta(days=7)).isoformat()
    assert ids(added_from=since) == {scan.external_contact_id, card.external_contact_id}
    assert ids(corp=corp.corp_id) == everyone
    assert ids(corp="another") == set()


def test_list_prefetches_relations_without_n_plus_one(django_assert_num_queries):
    for _ in range(5):
        FirstSourceFactory()
    with django_assert_num_queries(2):
        rows = [
            (c.first_source.staff.userid, [r.staff.userid for r in c.follow_relations.all()])
            for c in external_contact_list()
        ]
    assert len(rows) == 5


def test_pending_details_skips_fetched_and_exhausted_customers():
    pending = ExternalContactFactory(details_fetched_at=None)
    ExternalContactFactory()  # fetched
    ExternalContactFactory(details_fetched_at=None, details_attempts=DETAILS_MAX_ATTEMPTS)
    assert external_contact_ids_pending_details() == [pending.pk]
