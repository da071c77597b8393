"""End to end through the sandbox: `wecom_sandbox simulate` sends real encrypted callbacks over
HTTP to a live server; every simulated add becomes one customer with the right first source."""

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from contacts.models import ExternalContact, FirstSource
from scrm.wecom.models import ApiCall, CallbackEvent, Corp
from scrm.wecom.sandbox.models import SandboxCorp, SandboxDelivery, SandboxFollow

pytestmark = pytest.mark.django_db(transaction=True)


def _expected_first_sources():
    return {
        (f.customer.external_userid, f.userid, f.state, f.add_way)
        for f in SandboxFollow.objects.select_related("customer")
    }


def _actual_first_sources():
    return set(
        FirstSource.objects.values_list(
            "external_contact__external_userid", "staff__userid", "state", "add_way"
        )
    )


def test_simulate_command_n_adds_become_n_customers_with_right_first_sources(corp, live_server):
    out = io.StringIO()
    call_command(
        "wecom_sandbox", "simulate", "--corp", corp.corp_id, "--adds", "30",
        "--duplicates", "0.4", "--shuffle", "--url", live_server.url,
        "--state", "pyq_0012", "--state", "xhs_618", "--seed", "11", stdout=out,
    )  # fmt: skip
    assert "30 customers added" in out.getvalue()
    assert ExternalContact.objects.count() == 30
    assert ExternalContact.objects.filter(details_fetched_at__isnull=True).count() == 0
    assert _actual_first_sources() == _expected_first_sources()
    deliveries = SandboxDelivery.objects.count()
    assert deliveries > 30  # duplicates were delivered ...
    assert CallbackEvent.objects.count() == 30  # ... and stored once
    assert SandboxDelivery.objects.exclude(http_status=200).count() == 0
    assert ApiCall.objects.filter(endpoint="externalcontact/get", errcode=0).count() == 30


def test_simulate_reports_failed_deliveries(corp, live_server):
    Corp.objects.filter(pk=corp.pk).update(callback_token="another-token")
    with pytest.raises(CommandError, match="not answered with HTTP 200"):
        call_command(
            "wecom_sandbox", "simulate", "--corp", corp.corp_id, "--adds", "2",
            "--url", live_server.url, stdout=io.StringIO(),
        )  # fmt: skip
    assert CallbackEvent.objects.count() == 0
    # WeCom retries an unanswered callback three more times.
    assert SandboxDelivery.objects.filter(http_status=403).count() == 8


def test_simulate_needs_a_sandbox_corp(db):
    with pytest.raises(CommandError, match="wecom_sandbox setup"):
        call_command("wecom_sandbox", "simulate", "--corp", "nope", "--adds", "1")


def test_simulated_scans_and_adds_through_a_landing_code_join_exactly(corp, live_server):
    from channels_app.models import Attribution, Channel, LiveCode, Scan
    from channels_app.services.live_codes import live_code_create
    from channels_app.services.publishing import live_code_publish
    from contacts.services import staff_get_or_create

    channel = Channel.objects.create(corp=corp, name="小红书", code="xhs_618")
    pool = [{"staff": staff_get_or_create(corp=corp, userid=f"staff0{n}")} for n in (1, 2, 3)]
    code = live_code_create(corp=corp, channel=channel, name="618", slug="xhs618",
                            mode=LiveCode.Mode.LANDING, pool=pool)  # fmt: skip
    live_code_publish(live_code=code)
    out = io.StringIO()
    call_command(
        "wecom_sandbox", "simulate", "--corp", corp.corp_id, "--code", "xhs618",
        "--scans", "24", "--no-add", "0.25", "--url", live_server.url, "--seed", "4", stdout=out,
    )  # fmt: skip
    assert Scan.objects.count() == 24
    added = ExternalContact.objects.count()
    assert 0 < added < 24  # some scanned and never added
    assert Attribution.objects.filter(scan__isnull=False).count() == added
    # Each add joined the very scan that showed its QR: scan staff == add staff, one add a scan.
    for attribution in Attribution.objects.select_related("scan"):
        assert attribution.scan.staff_id == attribution.staff_id
        assert attribution.live_code_id == code.pk
    assert len(set(Attribution.objects.values_list("scan_id", flat=True))) == added


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_simulate_without_a_server_says_so_and_fails(corp):
    url = f"http://127.0.0.1:{_free_port()}"
    out = io.StringIO()
    with pytest.raises(CommandError, match=rf"could not connect to {url}: is the app running"):
        call_command("wecom_sandbox", "simulate", "--adds", "2", "--url", url, stdout=out)
    assert f"Delivering to {url}/wecom/callback/{corp.corp_id}/" in out.getvalue()
    out = io.StringIO()
    with pytest.raises(CommandError, match="could not connect"):
        call_command("wecom_sandbox", "simulate", "--code", "xhs618", "--adds", "2",
                     "--url", url, stdout=out)  # fmt: skip
    # No page at all is not a page without a code.
    assert "2 found no page (no answer from the app); 0 scans" in out.getvalue()
    assert "0 showed no code" in out.getvalue()
    assert ExternalContact.objects.count() == 0


def test_simulate_through_an_unknown_code_says_the_page_answered_404(corp, live_server):
    with pytest.raises(CommandError, match=r"answered 3 x HTTP 404 \(no live code with this slug"):
        call_command("wecom_sandbox", "simulate", "--code", "nope", "--adds", "3",
                     "--url", live_server.url, stdout=io.StringIO())  # fmt: skip


def test_simulate_finds_the_only_sandbox_corp_and_its_saved_address(corp, live_server):
    SandboxCorp.objects.filter(corp_id=corp.corp_id).update(
        callback_url=f"{live_server.url}/wecom/callback/{corp.corp_id}/"
    )
    out = io.StringIO()
    call_command("wecom_sandbox", "simulate", "--adds", "2", stdout=out)  # no --corp, no --url
    assert f"Delivering to {live_server.url}/wecom/callback/" in out.getvalue()
    assert ExternalContact.objects.count() == 2


def test_simulate_help_gives_every_default_and_examples():
    result = subprocess.run(
        [sys.executable, "manage.py", "wecom_sandbox", "simulate", "--help"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    text = " ".join(result.stdout.split())
    assert "examples (beside the demo's `make run`" in text
    assert 'make manage ARGS="wecom_sandbox simulate --code xhs-618 --adds 20"' in text
    for option in ("--adds", "--rate", "--duplicates", "--drop", "--no-add"):
        assert option in text
    assert text.count("(default:") >= 9


def test_simulate_on_a_database_never_migrated_says_what_to_run(tmp_path):
    # A newcomer's first command before `make run`: a sentence, not a traceback.
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "wecom_sandbox", "simulate", "--adds", "1"],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert result.returncode != 0
    assert "The database is not set up" in result.stderr
    assert "run `make run` first" in result.stderr
    assert "Traceback" not in result.stderr
