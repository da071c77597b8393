"""The callback is the hottest path (every event of every corp): once the corp is cached, an
event costs one INSERT. A change that adds a query per request shows up here before bench/."""

from __future__ import annotations

import time

from django.db import connection
from django.test.utils import CaptureQueriesContext

from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.simulate import event_xml


def _statements(captured: CaptureQueriesContext) -> list[str]:
    """What reached the database, savepoints aside (the test's transaction adds them)."""
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_a_callback_event_is_one_insert_once_the_corp_is_cached(corp, crypto, client):
    def post(external_userid: str):
        xml = event_xml(corp.corp_id, "add_external_contact", int(time.time()),
                        UserID="staff01", ExternalUserID=external_userid)  # fmt: skip
        timestamp, nonce = str(int(time.time())), "12345"
        body, signature = crypto.envelope(xml, timestamp=timestamp, nonce=nonce)
        return client.post(
            f"/wecom/callback/{corp.corp_id}/?msg_signature={signature}"
            f"&timestamp={timestamp}&nonce={nonce}",
            data=body,
            content_type="text/xml",
        )

    assert post("wmfirst").status_code == 200  # loads and caches the corp
    with CaptureQueriesContext(connection) as captured:
        assert post("wmsecond").status_code == 200
    statements = _statements(captured)
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT INTO")
    assert CallbackEvent.objects.count() == 2
