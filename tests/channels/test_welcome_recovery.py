"""A welcome survives the worker that took it: the add writes its welcome as QUEUED, a worker
claims it before calling WeCom, and the sweep (beat, every 2 s) queues again the welcomes
that a dead worker held, while their 20-second code lives. WeCom takes a code once: however
many attempts, one welcome per add. (The same with real workers killed by SIGKILL:
tests/integration/test_welcome_worker_kill.py.)"""

import datetime as dt
import random
import time

import pytest
from django.utils import timezone

from channels_app.models import SourceRule, WelcomeDelivery
from channels_app.services.welcome import (
    CLAIM_LEASE_SECONDS,
    REQUEUE_AFTER_SECONDS,
    welcome_resend,
    welcomes_requeue_lost,
)
from contacts.models import TimelineEvent
from scrm.management.commands.setup_periodic_tasks import PERIODIC_TASKS
from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.models import SandboxWelcomeCode
from scrm.wecom.sandbox.simulate import event_xml, sandbox_customer_add
from scrm.wecom.services import callback_event_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def lost_welcome(corp, sandbox_corp, crypto, client, django_capture_on_commit_callbacks):
    """An add processed, whose after-add task (and so its welcome) died with its worker."""
    SourceRule.objects.create(corp=corp, name="全部", welcome_text="您好 {customer_name}")
    customer, follow, code = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=random.Random(5)
    )
    xml = event_xml(corp.corp_id, "add_external_contact", follow.createtime, UserID="staff01",
                    ExternalUserID=customer.external_userid, WelcomeCode=code)  # fmt: skip
    timestamp, nonce = str(int(time.time())), "12345"
    body, signature = crypto.envelope(xml, timestamp=timestamp, nonce=nonce)
    with django_capture_on_commit_callbacks(execute=False):  # the queued processing is lost
        client.post(f"/wecom/callback/{corp.corp_id}/?msg_signature={signature}"
                    f"&timestamp={timestamp}&nonce={nonce}", data=body,
                    content_type="text/xml")  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False):  # and so is its after-add task
        assert callback_event_process(event_id=CallbackEvent.objects.get().pk)
    delivery = WelcomeDelivery.objects.get()
    assert delivery.outcome == WelcomeDelivery.Outcome.QUEUED
    assert delivery.welcome_code == code
    return delivery


def _later(seconds: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=seconds)


def _codes_used() -> int:
    return SandboxWelcomeCode.objects.filter(used_at__isnull=False).count()


def test_a_welcome_no_worker_started_is_queued_again_and_sent_once(lost_welcome):
    assert welcomes_requeue_lost() == 0  # just queued: its task may still be on its way
    assert welcomes_requeue_lost(now=_later(REQUEUE_AFTER_SECONDS + 0.5)) == 1  # sent (eager)
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.SENT
    assert lost_welcome.source == "rule"
    assert _codes_used() == 1
    assert TimelineEvent.objects.filter(kind="welcome_sent").count() == 1
    # The dead worker's message, back after the broker's visibility timeout, and more sweeps:
    assert welcome_resend(delivery_id=lost_welcome.pk) is None
    assert welcomes_requeue_lost(now=_later(REQUEUE_AFTER_SECONDS * 3)) == 0
    assert _codes_used() == 1
    assert WelcomeDelivery.objects.count() == 1


def test_a_welcome_whose_worker_died_sending_is_taken_over_once_its_claim_is_stale(lost_welcome):
    claimed = timezone.now() - dt.timedelta(seconds=1)
    WelcomeDelivery.objects.filter(pk=lost_welcome.pk).update(claimed_at=claimed,
                                                               queued_at=claimed)  # fmt: skip
    # A live worker's claim is left alone.
    assert welcomes_requeue_lost(now=_later(REQUEUE_AFTER_SECONDS)) == 0
    assert welcome_resend(delivery_id=lost_welcome.pk) is None
    assert _codes_used() == 0
    # Past the lease, the worker is taken for dead.
    stale = timezone.now() - dt.timedelta(seconds=CLAIM_LEASE_SECONDS + 1)
    WelcomeDelivery.objects.filter(pk=lost_welcome.pk).update(claimed_at=stale, queued_at=stale)
    assert welcomes_requeue_lost() == 1
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.SENT
    assert _codes_used() == 1


def test_a_worker_that_died_after_wecom_took_the_code_never_causes_a_second_welcome(
    lost_welcome,
):
    first = {"text": {"content": "the welcome that went out"}}
    SandboxWelcomeCode.objects.update(used_at=timezone.now(), message=first)  # sent, killed
    stale = timezone.now() - dt.timedelta(seconds=CLAIM_LEASE_SECONDS + 1)
    WelcomeDelivery.objects.filter(pk=lost_welcome.pk).update(claimed_at=stale, queued_at=stale)
    assert welcomes_requeue_lost() == 1
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.ALREADY_CHATTING  # WeCom refused
    assert SandboxWelcomeCode.objects.get().message == first  # the one welcome, not replaced


def test_welcomes_past_their_code_are_not_queued_again_and_are_finally_expired(lost_welcome):
    assert welcomes_requeue_lost(now=_later(21)) == 0  # the code is dead: no attempt
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.QUEUED
    assert welcomes_requeue_lost(now=_later(61)) == 0
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.EXPIRED
    assert _codes_used() == 0


def test_the_sweep_runs_every_two_seconds_on_the_welcome_queue(settings):
    from celery import current_app

    (seconds,) = [s for _n, task, s in PERIODIC_TASKS if task.endswith("welcome_requeue_lost_task")]
    assert seconds <= 2
    router = current_app.amqp.router
    for name in ("channels_app.tasks.welcome_requeue_lost_task",
                 "channels_app.tasks.welcome_send_task"):  # fmt: skip
        assert router.route({}, name)["queue"].name == "welcome"
