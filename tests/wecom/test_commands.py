import io

import pytest
from django.core.management import CommandError, call_command

from scrm.wecom.models import Corp

pytestmark = pytest.mark.django_db

AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"


def test_wecom_corp_add_and_list_never_shows_secrets():
    out = io.StringIO()
    call_command(
        "wecom_corp", "add", "--corp-id", "ww123", "--name", "示例", "--secret", "S3CRET-x",
        "--token", "TOKEN-y", "--aes-key", AES_KEY, stdout=out,
    )  # fmt: skip
    assert "/wecom/callback/ww123/" in out.getvalue()
    corp = Corp.objects.get(corp_id="ww123")
    assert (corp.secret, corp.callback_token, corp.encoding_aes_key) == (
        "S3CRET-x", "TOKEN-y", AES_KEY,
    )  # fmt: skip
    listing = io.StringIO()
    call_command("wecom_corp", "list", stdout=listing)
    assert "ww123" in listing.getvalue()
    for secret in ("S3CRET-x", "TOKEN-y", AES_KEY):
        assert secret not in listing.getvalue()
        assert secret not in repr(corp)


@pytest.mark.parametrize(
    ("key", "tz", "message"),
    [(AES_KEY[:42], "Asia/Shanghai", "43"), (AES_KEY, "Mars/Olympus", "time_zone")],
)
def test_wecom_corp_add_refuses_bad_input_with_a_reason(key, tz, message):
    with pytest.raises(CommandError, match=message):
        call_command(
            "wecom_corp", "add", "--corp-id", "ww1", "--name", "n", "--secret", "s",
            "--token", "t", "--aes-key", key, "--time-zone", tz,
        )  # fmt: skip
    assert not Corp.objects.exists()


def test_wecom_corp_add_refuses_a_duplicate_corp():
    args = ["wecom_corp", "add", "--corp-id", "ww1", "--name", "n", "--secret", "s",
            "--token", "t", "--aes-key", AES_KEY]  # fmt: skip
    call_command(*args, stdout=io.StringIO())
    with pytest.raises(CommandError, match="corp_id"):
        call_command(*args)


def test_setup_periodic_tasks_is_idempotent():
    from django_celery_beat.models import PeriodicTask

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    names = set(PeriodicTask.objects.values_list("task", flat=True))
    assert "scrm.wecom.tasks.callback_events_requeue_task" in names
    assert "contacts.tasks.external_contacts_refresh_pending_task" in names
