"""The callback is a hot path: pin its number of queries (verify, store, queue)."""

import time

import pytest

from scrm.wecom import services
from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.simulate import event_xml

pytestmark = pytest.mark.django_db


def test_callback_stores_an_event_in_a_fixed_number_of_queries(
    corp, crypto, client, monkeypatch, django_assert_num_queries, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(
        services, "callback_event_enqueue", lambda event_id: queued.append(event_id)
    )
    timestamp = str(int(time.time()))
    for index in range(3):
        xml = event_xml(corp.corp_id, "add_external_contact", int(timestamp),
                        UserID="staff01", ExternalUserID=f"wm{index}")  # fmt: skip
        body, signature = crypto.envelope(xml, timestamp=timestamp, nonce="1")
        query = f"msg_signature={signature}&timestamp={timestamp}&nonce=1"
        url = f"/wecom/callback/{corp.corp_id}/?{query}"
        # The first request reads the corp (then cached in-process for a minute); then an event
        # is one INSERT ... ON CONFLICT DO NOTHING, with no savepoint even inside a transaction.
        with (
            django_capture_on_commit_callbacks(execute=True),
            django_assert_num_queries(2 if index == 0 else 1),
        ):
            response = client.post(url, data=body, content_type="text/xml")
        assert response.status_code == 200
    stored = CallbackEvent.objects.order_by("pk")
    assert [event.external_user_id for event in stored] == ["wm0", "wm1", "wm2"]
    assert queued == [event.pk for event in stored]


def test_a_rotated_callback_token_takes_effect_at_once(corp, crypto, post_event):
    from scrm.wecom.crypto import MessageCrypto
    from scrm.wecom.models import CallbackEvent, Corp

    assert (
        post_event("add_external_contact", UserID="staff01", ExternalUserID="wm1").status_code
        == 200
    )
    Corp.objects.filter(pk=corp.pk).update(callback_token="rotated-token")  # no save() signal
    rotated = MessageCrypto("rotated-token", corp.encoding_aes_key, corp.corp_id)
    xml = event_xml(corp.corp_id, "add_external_contact", int(time.time()),
                    UserID="staff01", ExternalUserID="wm2")  # fmt: skip
    timestamp = str(int(time.time()))
    body, signature = rotated.envelope(xml, timestamp=timestamp, nonce="2")
    from django.test import Client

    response = Client().post(
        f"/wecom/callback/{corp.corp_id}/?msg_signature={signature}&timestamp={timestamp}&nonce=2",
        data=body, content_type="text/xml",
    )  # fmt: skip
    assert response.status_code == 200
    assert CallbackEvent.objects.filter(external_user_id="wm2").exists()
