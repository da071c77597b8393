"""Disabling a corp or rotating its callback keys takes effect in every process within about a
second: each process caches a corp's credentials (the callback is the hot path) under a shared
version that a save bumps (scrm.shared_version), compared every CORP_CHECK_SECONDS.

Another process is played here by a copy of this process's cache taken before the change: it
holds what a process that did not save the corp holds."""

from __future__ import annotations

import gc
import time

import pytest

from scrm.wecom import services
from scrm.wecom.crypto import MessageCrypto
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.simulate import event_xml

CHECK = 0.05  # seconds between version checks here, so the test need not wait a second


@pytest.fixture
def post(client):
    def post(corp: Corp, crypto: MessageCrypto, external_userid: str) -> int:
        xml = event_xml(corp.corp_id, "add_external_contact", int(time.time()),
                        UserID="staff01", ExternalUserID=external_userid)  # fmt: skip
        timestamp, nonce = str(int(time.time())), "12345"
        body, signature = crypto.envelope(xml, timestamp=timestamp, nonce=nonce)
        return client.post(
            f"/wecom/callback/{corp.corp_id}/?msg_signature={signature}"
            f"&timestamp={timestamp}&nonce={nonce}",
            data=body,
            content_type="text/xml",
        ).status_code

    return post


@pytest.fixture
def other_process(monkeypatch):
    """Snapshot and restore of the corp credential cache, as a process that did not save."""
    monkeypatch.setattr(services, "CORP_CHECK_SECONDS", CHECK)

    class OtherProcess:
        def remember(self) -> None:
            self.entries = dict(services._corp_cache)
            assert self.entries, "nothing cached yet"

        def resume(self) -> None:
            services._corp_cache.update(self.entries)
            time.sleep(CHECK * 2)  # its next version check is due

    return OtherProcess()


def test_a_disabled_corp_is_refused_by_every_process_within_seconds(
    corp, crypto, post, other_process, django_capture_on_commit_callbacks
):
    assert post(corp, crypto, "wm1") == 200  # cached
    other_process.remember()
    # A change that bumps nothing is not seen while the cache lives (up to 60 s): the cache
    # is what serves the callback, and what the version must invalidate.
    Corp.objects.filter(pk=corp.pk).update(is_active=False)
    time.sleep(CHECK * 2)
    assert post(corp, crypto, "wm2") == 200
    Corp.objects.filter(pk=corp.pk).update(is_active=True)

    gc.collect()  # the save's receivers must outlive a collection
    with django_capture_on_commit_callbacks(execute=True):
        corp.is_active = False
        corp.save()
    other_process.resume()
    assert post(corp, crypto, "wm3") == 404
    assert services._corp_cache == {}


def test_rotated_callback_keys_retire_the_old_ones_in_every_process(
    corp, crypto, post, other_process, django_capture_on_commit_callbacks
):
    assert post(corp, crypto, "wm1") == 200
    other_process.remember()
    new_key = "b" * 42 + "C"
    with django_capture_on_commit_callbacks(execute=True):
        corp.callback_token, corp.encoding_aes_key = "rotatedToken2026", new_key
        corp.save()
    other_process.resume()
    # The old Token and EncodingAESKey no longer verify, in the process that cached them.
    assert post(corp, crypto, "wm2") == 403
    rotated = MessageCrypto("rotatedToken2026", new_key, corp.corp_id)
    assert post(corp, rotated, "wm3") == 200


def test_a_cached_corp_costs_no_version_read_until_its_check_is_due(corp, crypto, post, settings):
    """The hot path: within CORP_CHECK_SECONDS a cached corp is a dictionary lookup."""
    assert post(corp, crypto, "wm1") == 200
    entry = services._corp_cache[corp.corp_id]
    assert post(corp, crypto, "wm2") == 200
    assert services._corp_cache[corp.corp_id] is entry
    assert entry.check - time.monotonic() <= services.CORP_CHECK_SECONDS
