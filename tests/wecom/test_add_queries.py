"""The statements of one add, pinned: the inbox transaction (the add recorded, its welcome
and its follow-up queued), the welcome task (sent at once, the customer's details not fetched
first), and the follow-up on the default queue (details, then tags). Savepoints count (tests
run inside a transaction); the in-process sandbox's own statements are WeCom's side and left
out."""

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.models import Attribution, WelcomeDelivery
from channels_app.services.welcome import DETAILS_FIRST_WITHIN_SECONDS
from scrm.pipeline import after_add
from scrm.wecom.services import callback_event_process
from tests.flows import add_with_welcome_code_stored, welcome_rule_with_tag

pytestmark = pytest.mark.django_db

# Inbox transaction: lock the row, contact, staff, relation, relation event, attribution,
# first touch, timeline, the queued welcome, the row marked processed.
INBOX_STATEMENTS = 26
# Welcome task: attribution (one join), claim, add_way, rules, call log, outcome, timeline.
WELCOME_STATEMENTS = 13
# Follow-up: attribution, details (contact, relation, history, first touch), add_way, rules,
# tags (library, mirror, timeline) and the call logs.
FOLLOW_UP_STATEMENTS = 38


def _ours(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "wecom_sandbox_" not in q["sql"]]


@pytest.fixture
def one_add(corp, sandbox_corp, crypto, client, django_capture_on_commit_callbacks):
    welcome_rule_with_tag(corp)
    event, _code = add_with_welcome_code_stored(corp, sandbox_corp, crypto, client,
                                                django_capture_on_commit_callbacks)  # fmt: skip
    return event


def test_the_statements_of_one_add_are_pinned(one_add, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=False) as inbox_hooks,
        CaptureQueriesContext(connection) as inbox,
    ):
        assert callback_event_process(event_id=one_add.pk, skip_locked=True)
    delivery = WelcomeDelivery.objects.get()
    attribution_id = Attribution.objects.get().pk
    later = delivery.received_at.timestamp() + DETAILS_FIRST_WITHIN_SECONDS + 1
    with (
        time_machine.travel(later, tick=True),
        django_capture_on_commit_callbacks(execute=False) as welcome_hooks,
        CaptureQueriesContext(connection) as welcome,
    ):
        after_add(attribution_id=attribution_id,
                  welcome_code=delivery.welcome_code, received_at=delivery.received_at)  # fmt: skip
    with CaptureQueriesContext(connection) as rest:
        after_add(attribution_id=attribution_id, welcome_code="",
                  received_at=delivery.received_at)  # fmt: skip
    counts = (len(_ours(inbox)), len(_ours(welcome)), len(_ours(rest)))
    # The welcome's task and the follow-up are both queued when the add commits; the welcome
    # queues nothing more.
    queued = [h for h in inbox_hooks if "_after_add_queue" in getattr(h, "__qualname__", "")]
    assert len(queued) == 2
    assert not [h for h in welcome_hooks if "_after_add_queue" in getattr(h, "__qualname__", "")]
    assert counts == (INBOX_STATEMENTS, WELCOME_STATEMENTS, FOLLOW_UP_STATEMENTS)
