"""The welcome goes first and knows its deadline: a welcome picked up behind a burst is sent at
once with the name's fallback (details and tags follow on the default queue); one past its
code is recorded expired without calling WeCom; a task delivered twice sends once."""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from channels_app.models import Attribution, WelcomeDelivery
from channels_app.services.welcome import DETAILS_FIRST_WITHIN_SECONDS, SEND_BY_SECONDS
from contacts.models import CustomerTag, ExternalContact, TimelineEvent
from scrm.pipeline import after_add
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxWelcomeCode
from scrm.wecom.services import callback_event_process
from tests.flows import add_with_welcome_code_stored, welcome_rule_with_tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued_welcome(corp, sandbox_corp, crypto, client, django_capture_on_commit_callbacks):
    """An add processed, its welcome task not run yet (waiting in the welcome queue); a rule
    with a welcome text and a tag."""
    welcome_rule_with_tag(corp)
    event, _code = add_with_welcome_code_stored(corp, sandbox_corp, crypto, client,
                                                django_capture_on_commit_callbacks)  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as inbox_hooks:
        assert callback_event_process(event_id=event.pk)
    delivery = WelcomeDelivery.objects.get()
    delivery.inbox_hooks = inbox_hooks  # what the add queued when it committed, not run yet
    return delivery


def _run_welcome_task(delivery, *, age: float, capture) -> list:
    """The welcome task, taken from the queue `age` seconds after the callback's receipt; the
    tasks it queued on commit are returned unrun."""
    with (
        time_machine.travel(delivery.received_at + dt.timedelta(seconds=age), tick=True),
        capture(execute=False) as queued,
    ):
        after_add(attribution_id=Attribution.objects.get().pk,
                  welcome_code=delivery.welcome_code, received_at=delivery.received_at)  # fmt: skip
    return queued


def _follow_up(delivery) -> None:
    """The add's follow-up (details, tags), queued on the default queue with the add."""
    after_add(attribution_id=Attribution.objects.get().pk, welcome_code="",
              received_at=delivery.received_at)  # fmt: skip


def _welcome_calls() -> int:
    return ApiCall.objects.filter(endpoint="externalcontact/send_welcome_msg").count()


def test_a_welcome_past_its_code_is_recorded_expired_without_calling_wecom(
    queued_welcome, django_capture_on_commit_callbacks
):
    queued = _run_welcome_task(queued_welcome, age=SEND_BY_SECONDS + 1,
                               capture=django_capture_on_commit_callbacks)  # fmt: skip
    queued_welcome.refresh_from_db()
    assert queued_welcome.outcome == WelcomeDelivery.Outcome.EXPIRED
    assert _welcome_calls() == 0
    assert SandboxWelcomeCode.objects.get().used_at is None
    assert TimelineEvent.objects.filter(kind="welcome_failed").count() == 1
    # The customer is still detailed and tagged: by the follow-up on the default queue.
    assert ExternalContact.objects.get().details_fetched_at is None
    assert not queued  # queued with the add, not by the welcome
    _follow_up(queued_welcome)
    assert ExternalContact.objects.get().details_fetched_at is not None
    assert CustomerTag.objects.count() == 1


def test_a_welcome_behind_a_burst_goes_out_at_once_with_the_name_fallback(
    queued_welcome, settings, django_capture_on_commit_callbacks
):
    settings.WELCOME_NAME_FALLBACK = "亲"
    queued = _run_welcome_task(queued_welcome, age=DETAILS_FIRST_WITHIN_SECONDS + 5,
                               capture=django_capture_on_commit_callbacks)  # fmt: skip
    queued_welcome.refresh_from_db()
    assert queued_welcome.outcome == WelcomeDelivery.Outcome.SENT
    assert SandboxWelcomeCode.objects.get().message["text"]["content"] == "您好 亲"
    # Sent before the details were fetched, and before the tags.
    assert ExternalContact.objects.get().details_fetched_at is None
    assert CustomerTag.objects.count() == 0
    assert not queued
    _follow_up(queued_welcome)
    assert ExternalContact.objects.get().name
    assert CustomerTag.objects.count() == 1
    assert _welcome_calls() == 1


def test_a_welcome_picked_up_at_once_greets_the_customer_by_name(
    queued_welcome, django_capture_on_commit_callbacks
):
    queued = _run_welcome_task(queued_welcome, age=0.5,
                               capture=django_capture_on_commit_callbacks)  # fmt: skip
    name = ExternalContact.objects.get().name
    assert name
    assert SandboxWelcomeCode.objects.get().message["text"]["content"] == f"您好 {name}"
    assert not queued
    _follow_up(queued_welcome)  # tags only: the welcome fetched the details
    assert CustomerTag.objects.count() == 1
    assert ApiCall.objects.filter(endpoint="externalcontact/get").count() == 1


def test_the_same_welcome_task_delivered_twice_sends_one_welcome(
    queued_welcome, django_capture_on_commit_callbacks
):
    for _ in range(2):  # the broker redelivers a message whose ack was lost
        for task in _run_welcome_task(queued_welcome, age=1,
                                      capture=django_capture_on_commit_callbacks):  # fmt: skip
            task()
    _follow_up(queued_welcome)
    queued_welcome.refresh_from_db()
    assert queued_welcome.outcome == WelcomeDelivery.Outcome.SENT
    assert _welcome_calls() == 1
    assert SandboxWelcomeCode.objects.filter(used_at__isnull=False).count() == 1
    assert TimelineEvent.objects.filter(kind="welcome_sent").count() == 1
    assert CustomerTag.objects.count() == 1
    assert timezone.now() - queued_welcome.sent_at < dt.timedelta(minutes=1)


def test_a_welcome_the_sweep_gave_up_on_still_leaves_the_customer_detailed_and_tagged(
    queued_welcome, django_capture_on_commit_callbacks
):
    """The follow-up is queued with the add, not by the welcome's task: a welcome the sweep
    sent or recorded expired first (its task then returns at once) loses nothing."""
    from channels_app.services.welcome import GIVE_UP_SECONDS, welcomes_recover

    welcomes_recover(now=queued_welcome.received_at + dt.timedelta(seconds=GIVE_UP_SECONDS + 1))
    queued_welcome.refresh_from_db()
    assert queued_welcome.outcome == WelcomeDelivery.Outcome.EXPIRED
    assert not _run_welcome_task(queued_welcome, age=GIVE_UP_SECONDS + 2,
                                 capture=django_capture_on_commit_callbacks)  # fmt: skip
    assert ExternalContact.objects.get().details_fetched_at is None
    for hook in queued_welcome.inbox_hooks:  # the add's tasks (Celery eager): welcome, follow-up
        hook()
    assert ExternalContact.objects.get().details_fetched_at is not None
    assert CustomerTag.objects.count() == 1
    assert _welcome_calls() == 0
