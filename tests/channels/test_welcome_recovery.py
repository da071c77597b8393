"""A welcome survives the worker that took it: the add writes its welcome as QUEUED, a worker
claims it before calling WeCom, and the sweep (beat, every 2 s, on a queue of its own) sends
the welcomes that a dead worker held, while their 20-second code lives. WeCom takes a code
once: however many attempts, one welcome per add. (The same with real workers killed by SIGKILL:
tests/integration/test_welcome_worker_kill.py.)"""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from channels_app.models import Attribution, SourceRule, WelcomeDelivery
from channels_app.services.welcome import (
    CLAIM_LEASE_SECONDS,
    UNCLAIMED_AFTER_SECONDS,
    welcome_claim,
    welcome_resend,
    welcome_send,
    welcomes_recover,
)
from contacts.models import ExternalContact, TimelineEvent
from scrm.management.commands.setup_periodic_tasks import PERIODIC_TASKS
from scrm.pipeline import after_add
from scrm.wecom.sandbox.models import SandboxWelcomeCode
from scrm.wecom.services import callback_event_process
from tests.flows import add_with_welcome_code_stored

pytestmark = pytest.mark.django_db


@pytest.fixture
def lost_welcome(corp, sandbox_corp, crypto, client, django_capture_on_commit_callbacks):
    """An add processed, whose after-add task (and so its welcome) died with its worker."""
    SourceRule.objects.create(corp=corp, name="全部", welcome_text="您好 {customer_name}")
    # The queued processing is lost...
    event, code = add_with_welcome_code_stored(
        corp, sandbox_corp, crypto, client, django_capture_on_commit_callbacks, seed=5
    )
    with django_capture_on_commit_callbacks(execute=False):  # and so is its after-add task
        assert callback_event_process(event_id=event.pk)
    delivery = WelcomeDelivery.objects.get()
    assert delivery.outcome == WelcomeDelivery.Outcome.QUEUED
    assert delivery.welcome_code == code
    return delivery


def _later(seconds: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=seconds)


def _codes_used() -> int:
    return SandboxWelcomeCode.objects.filter(used_at__isnull=False).count()


def test_a_welcome_no_worker_started_is_sent_by_the_sweep_once(lost_welcome):
    assert welcomes_recover() == 0  # just queued: its task may still be on its way
    assert welcomes_recover(now=_later(UNCLAIMED_AFTER_SECONDS + 0.5)) == 1
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.SENT
    assert lost_welcome.source == "rule"
    assert _codes_used() == 1
    # Nobody had fetched the customer's details: the sweep did, and greets them by name.
    name = ExternalContact.objects.get().name
    assert name
    assert SandboxWelcomeCode.objects.get().message["text"]["content"] == f"您好 {name}"
    assert TimelineEvent.objects.filter(kind="welcome_sent").count() == 1
    # The dead worker's message, back after the broker's visibility timeout, and more sweeps:
    after_add(attribution_id=Attribution.objects.get().pk, welcome_code=lost_welcome.welcome_code,
              received_at=lost_welcome.received_at)  # fmt: skip
    assert welcome_resend(delivery_id=lost_welcome.pk) is None
    assert welcomes_recover(now=_later(UNCLAIMED_AFTER_SECONDS * 3)) == 0
    assert _codes_used() == 1
    assert WelcomeDelivery.objects.count() == 1


def test_a_welcome_whose_worker_died_is_taken_over_once_its_claim_is_stale(lost_welcome):
    claimed = timezone.now() - dt.timedelta(seconds=1)
    WelcomeDelivery.objects.filter(pk=lost_welcome.pk).update(claimed_at=claimed,
                                                               queued_at=claimed)  # fmt: skip
    # A live worker's claim is left alone.
    assert welcomes_recover(now=_later(UNCLAIMED_AFTER_SECONDS)) == 0
    assert welcome_resend(delivery_id=lost_welcome.pk) is None
    assert _codes_used() == 0
    # Past the lease, the worker is taken for dead.
    stale = timezone.now() - dt.timedelta(seconds=CLAIM_LEASE_SECONDS + 1)
    WelcomeDelivery.objects.filter(pk=lost_welcome.pk).update(claimed_at=stale, queued_at=stale)
    assert welcomes_recover() == 1
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
    assert welcomes_recover() == 1
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.ALREADY_CHATTING  # WeCom refused
    assert SandboxWelcomeCode.objects.get().message == first  # the one welcome, not replaced


def test_welcomes_past_their_code_are_not_queued_again_and_are_finally_expired(lost_welcome):
    assert welcomes_recover(now=_later(21)) == 0  # the code is dead: no attempt
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.QUEUED
    assert welcomes_recover(now=_later(61)) == 0
    lost_welcome.refresh_from_db()
    assert lost_welcome.outcome == WelcomeDelivery.Outcome.EXPIRED
    assert _codes_used() == 0


def test_a_worker_whose_claim_lapsed_does_not_send_after_the_takeover(lost_welcome):
    """The slow worker (details took longer than the lease) comes back after the sweep sent
    the welcome: its renewal fails, it sends nothing."""
    attribution = Attribution.objects.select_related(
        "corp", "follow_relation__staff", "follow_relation__external_contact"
    ).get()
    claim = welcome_claim(attribution=attribution, welcome_code=lost_welcome.welcome_code,
                          received_at=lost_welcome.received_at)  # fmt: skip
    assert claim is not None
    with time_machine.travel(_later(CLAIM_LEASE_SECONDS + 1), tick=True):
        assert welcomes_recover() == 1  # taken for dead, and sent
    assert welcome_send(attribution=attribution, welcome_code=lost_welcome.welcome_code,
                        chosen=("rule", "hi", []), claim=claim) is None  # fmt: skip
    assert _codes_used() == 1
    assert WelcomeDelivery.objects.get().outcome == WelcomeDelivery.Outcome.SENT


def test_the_sweep_runs_every_two_seconds_beside_the_welcome_queue():
    """On a queue of its own, which the welcome workers take in turn with their welcomes: it
    never waits behind a burst."""
    from celery import current_app

    (seconds,) = [s for _n, task, s in PERIODIC_TASKS if task.endswith("welcome_sweep_task")]
    assert seconds <= 2
    router = current_app.amqp.router
    sweep_queue = router.route({}, "channels_app.tasks.welcome_sweep_task")["queue"].name
    assert sweep_queue == "welcome_sweep"
    assert router.route({}, "scrm.tasks.after_add_task", args=(1, "c", 0.0))["queue"].name == (
        "default"  # routed by the pipeline per call: "welcome" when a code is attached
    )
