"""Calibration: customers no callback announced are backfilled from batch/get_by_user, and our
daily new-customer counts per staff member are held against WeCom's statistics."""

from __future__ import annotations

import datetime as dt
import io
import random
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from contacts.calibration import CalibrationAlreadyRunning, calibrate
from contacts.compliance import contact_erase
from contacts.models import (
    CalibrationRun,
    ExternalContact,
    FirstSource,
    FollowRelation,
    TimelineEvent,
)
from contacts.tasks import calibrate_all_task
from scrm.wecom.client import WeComRateLimited
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxCustomer, SandboxFault, SandboxFollow
from scrm.wecom.sandbox.simulate import sandbox_customer_add, simulate_adds

CST = ZoneInfo("Asia/Shanghai")


def _noon(days_ago: int, hour: int = 12) -> dt.datetime:
    day = timezone.localdate(timezone=CST) - dt.timedelta(days=days_ago)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=CST)


def _sandbox_add(sandbox_corp, userid="staff01", *, days_ago=1, seed=1, state="pyq_0012", **kw):
    stamp = int(_noon(days_ago).timestamp()) + seed
    customer, follow, _code = sandbox_customer_add(
        corp=sandbox_corp, userid=userid, rng=random.Random(seed), state=state,
        create_time=stamp, **kw,
    )  # fmt: skip
    return customer, follow


def _deliver(post_event, customer, follow):
    response = post_event("add_external_contact", follow.createtime, UserID=follow.userid,
                          ExternalUserID=customer.external_userid, State=follow.state)  # fmt: skip
    assert response.status_code == 200


def _relations():
    return set(FollowRelation.objects.values_list("external_contact__external_userid",
                                                  "staff__userid"))  # fmt: skip


def _sandbox_follows():
    return set(SandboxFollow.objects.values_list("customer__external_userid", "userid"))


# -- the test: callbacks lost on the way, found again --------------------------------


@pytest.mark.django_db(transaction=True)
def test_dropped_callbacks_are_backfilled_until_our_counts_equal_wecoms(corp, live_server):
    # Two days ago, so the adds fall inside the compared days (up to yesterday).
    with time_machine.travel(_noon(2), tick=True):
        report = simulate_adds(corp_id=corp.corp_id, adds=40, drop=0.1, url=live_server.url,
                               states=["pyq_0012", "xhs_618"], seed=5)  # fmt: skip
    assert report.dropped >= 2
    assert report.failed == 0
    assert ExternalContact.objects.count() == 40 - report.dropped

    # Before backfilling, WeCom counts customers we never heard of.
    check = calibrate(corp=corp, backfill=False)
    assert check.status == CalibrationRun.Status.DONE
    assert check.deviations > 0
    assert check.relations_backfilled == 0
    assert sum(row.wecom - row.ours for row in check.rows.all()) == report.dropped
    assert ExternalContact.objects.count() == 40 - report.dropped

    run = calibrate(corp=corp, triggered_by="pytest")
    assert (run.status, run.error, run.triggered_by) == (CalibrationRun.Status.DONE, "", "pytest")
    assert ExternalContact.objects.count() == SandboxCustomer.objects.count() == 40
    assert _relations() == _sandbox_follows()
    assert run.relations_backfilled == report.dropped
    assert run.first_sources_backfilled == report.dropped
    assert FollowRelation.objects.filter(backfilled=True).count() == report.dropped
    assert FirstSource.objects.filter(backfilled=True).count() == report.dropped
    assert (run.staff_count, run.contacts_seen, run.deviations) == (3, 40, 0)
    # Backfilled first sources carry WeCom's state and add_way, like announced ones.
    assert set(
        FirstSource.objects.values_list(
            "external_contact__external_userid", "staff__userid", "state", "add_way"
        )
    ) == {
        (f.customer.external_userid, f.userid, f.state, f.add_way)
        for f in SandboxFollow.objects.select_related("customer")
    }
    backfilled = TimelineEvent.objects.filter(kind=TimelineEvent.Kind.BACKFILLED)
    assert backfilled.count() == report.dropped
    assert ExternalContact.objects.filter(details_fetched_at__isnull=True).count() == 0

    again = calibrate(corp=corp)
    assert (again.relations_backfilled, again.first_sources_backfilled) == (0, 0)
    assert again.deviations == 0
    assert not again.rows.exists()
    assert backfilled.count() == report.dropped


# -- backfill --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_more_customers_than_one_page_are_all_fetched(corp, sandbox_corp):
    for seed in range(130):
        _sandbox_add(sandbox_corp, "staff02", seed=seed)
    run = calibrate(corp=corp)
    pages = ApiCall.objects.filter(endpoint="externalcontact/batch/get_by_user", errcode=0)
    assert pages.count() == 2  # 100 contacts a page, then the rest by cursor
    assert list(pages.order_by("pk").values_list("items_returned", flat=True)) == [100, 30]
    assert run.relations_backfilled == run.first_sources_backfilled == run.contacts_seen == 130
    assert FollowRelation.objects.filter(staff__userid="staff02", backfilled=True).count() == 130
    assert run.deviations == 0


@pytest.mark.django_db
def test_a_second_relation_is_backfilled_without_touching_the_first_source(
    corp, sandbox_corp, post_event
):
    customer, follow = _sandbox_add(sandbox_corp, "staff01", days_ago=3)
    _deliver(post_event, customer, follow)
    SandboxFollow.objects.create(customer=customer, userid="staff02", state="xhs_618",
                                 createtime=follow.createtime + 3600, add_way=1)  # fmt: skip
    run = calibrate(corp=corp)
    assert (run.relations_backfilled, run.first_sources_backfilled) == (1, 0)
    relation = FollowRelation.objects.get(staff__userid="staff02")
    assert (relation.backfilled, relation.state) == (True, "xhs_618")
    first = FirstSource.objects.get()
    assert (first.staff.userid, first.state, first.backfilled) == ("staff01", "pyq_0012", False)
    line = TimelineEvent.objects.get(kind=TimelineEvent.Kind.BACKFILLED)
    assert (line.dedup_key, line.staff, line.summary) == (
        f"add:staff02:{follow.createtime + 3600}", relation.staff, "xhs_618",
    )  # fmt: skip
    assert line.occurred_at == relation.created_at


@pytest.mark.django_db
def test_an_earlier_add_found_by_calibration_becomes_the_first_source(
    corp, sandbox_corp, post_event
):
    customer, first_add = _sandbox_add(sandbox_corp, "staff01", days_ago=3, state="pyq_0012")
    later = SandboxFollow.objects.create(customer=customer, userid="staff02", state="xhs_618",
                                         createtime=first_add.createtime + 86400)  # fmt: skip
    # The first add's callback was lost, and the details fetch after the later one failed
    # (it would have found the first add too).
    SandboxFault.objects.create(endpoint="externalcontact/get", errcode=48002)
    _deliver(post_event, customer, later)
    assert FirstSource.objects.get().state == "xhs_618"
    assert ExternalContact.objects.get().details_fetched_at is None
    run = calibrate(corp=corp)
    assert (run.relations_backfilled, run.first_sources_backfilled) == (1, 1)
    first = FirstSource.objects.get()
    assert (first.staff.userid, first.state, first.backfilled) == ("staff01", "pyq_0012", True)
    assert ExternalContact.objects.get().name == customer.name  # the details came along


@pytest.mark.django_db
def test_an_erased_customer_still_in_wecom_is_not_recreated(corp, sandbox_corp, post_event):
    customer, follow = _sandbox_add(sandbox_corp, "staff01", days_ago=2)
    _deliver(post_event, customer, follow)
    contact_erase(contact=ExternalContact.objects.get(), actor=None)
    run = calibrate(corp=corp)
    assert (run.contacts_seen, run.relations_backfilled, run.deviations) == (1, 0, 0)
    erased = ExternalContact.objects.get()  # no second customer with the original id
    assert erased.erased_at is not None
    assert (erased.name, erased.external_userid.startswith("erased-")) == ("", True)
    assert not TimelineEvent.objects.filter(kind=TimelineEvent.Kind.BACKFILLED).exists()


@pytest.mark.django_db
def test_missing_staff_are_created_from_the_member_list(corp, sandbox_corp):
    run = calibrate(corp=corp)
    assert run.staff_count == 3
    assert sorted(corp.staff.values_list("userid", flat=True)) == ["staff01", "staff02", "staff03"]


# -- comparison with WeCom's statistics ------------------------------------------------------


@pytest.mark.django_db
def test_a_customer_wecom_counts_but_we_cannot_find_is_a_deviation(corp, sandbox_corp):
    _customer, follow = _sandbox_add(sandbox_corp, "staff03", days_ago=4)
    # Deleted before calibration: batch/get_by_user no longer lists it; the statistics do.
    SandboxFollow.objects.filter(pk=follow.pk).update(deleted=True)
    run = calibrate(corp=corp)
    assert run.relations_backfilled == 0
    row = run.rows.get()
    assert (row.staff.userid, row.day, row.ours, row.wecom, row.delta) == (
        "staff03", _noon(4).date(), 0, 1, -1,
    )  # fmt: skip
    assert run.deviations == 1


@pytest.mark.django_db
def test_todays_adds_are_not_compared(corp, sandbox_corp):
    _sandbox_add(sandbox_corp, "staff01", days_ago=0)
    run = calibrate(corp=corp, backfill=False)
    assert run.deviations == 0


@pytest.mark.django_db
def test_a_corp_outside_china_is_compared_by_wecoms_days(corp, sandbox_corp, post_event):
    # 2026-12-06 09:00 UTC: 17:00 in Shanghai, 01:00 in Los Angeles (PST), both on Dec 6.
    corp.time_zone = "America/Los_Angeles"
    corp.save(update_fields=["time_zone"])
    with time_machine.travel(dt.datetime(2026, 12, 6, 9, tzinfo=dt.UTC), tick=False):
        # Dec 3, 00:30 in Shanghai is Dec 2, 08:30 in Los Angeles: the days differ.
        stamp = int(dt.datetime(2026, 12, 3, 0, 30, tzinfo=CST).timestamp())
        customer, follow, _code = sandbox_customer_add(
            corp=sandbox_corp, userid="staff01", rng=random.Random(1), state="pyq_0012",
            create_time=stamp,
        )  # fmt: skip
        _deliver(post_event, customer, follow)
        run = calibrate(corp=corp, backfill=False)
    # Counted by Los Angeles days ours would be on Dec 2 and WeCom's on Dec 3: two deviations.
    assert (run.status, run.since, run.deviations) == (
        CalibrationRun.Status.DONE, dt.date(2026, 11, 29), 0,
    )  # fmt: skip


@pytest.mark.django_db
def test_long_ranges_are_asked_in_windows_of_at_most_30_days(corp, sandbox_corp):
    _sandbox_add(sandbox_corp, "staff01", days_ago=40)
    run = calibrate(corp=corp, since=_noon(45).date(), backfill=False)
    calls = ApiCall.objects.filter(endpoint="externalcontact/get_user_behavior_data")
    assert calls.filter(errcode=0).count() == calls.count() == 3 * 2  # staff x windows
    assert [(r.day, r.ours, r.wecom) for r in run.rows.all()] == [(_noon(40).date(), 0, 1)]


@pytest.mark.django_db
def test_since_is_kept_within_wecoms_180_days(corp, sandbox_corp):
    run = calibrate(corp=corp, since=_noon(400).date(), backfill=False)
    assert run.since == timezone.localdate(timezone=CST) - dt.timedelta(days=179)
    assert run.status == CalibrationRun.Status.DONE


# -- failures and concurrency ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_wecom_error_ends_the_run_as_failed_with_its_text(corp, sandbox_corp):
    SandboxFault.objects.create(endpoint="externalcontact/batch/get_by_user", errcode=48002,
                                errmsg="api forbidden")  # fmt: skip
    run = calibrate(corp=corp)
    assert run.status == CalibrationRun.Status.FAILED
    assert "48002" in run.error
    assert run.finished_at is not None


@pytest.mark.django_db
def test_a_rate_limit_fails_the_run_and_is_raised_for_a_retry(corp, sandbox_corp):
    SandboxFault.objects.create(endpoint="externalcontact/get_follow_user_list", errcode=45009,
                                remaining=10)  # fmt: skip
    with pytest.raises(WeComRateLimited):
        calibrate(corp=corp)
    run = CalibrationRun.objects.get()
    assert run.status == CalibrationRun.Status.FAILED
    assert "45009" in run.error


@pytest.mark.django_db
def test_one_run_at_a_time_per_corp_and_a_dead_run_does_not_block(corp, sandbox_corp):
    stuck = CalibrationRun.objects.create(corp=corp, since=_noon(7).date())
    with pytest.raises(CalibrationAlreadyRunning):
        calibrate(corp=corp)
    CalibrationRun.objects.filter(pk=stuck.pk).update(
        started_at=timezone.now() - dt.timedelta(hours=7)
    )
    assert calibrate(corp=corp).status == CalibrationRun.Status.DONE
    stuck.refresh_from_db()
    assert (stuck.status, stuck.error) == (CalibrationRun.Status.FAILED, "interrupted")


@pytest.mark.django_db
def test_progress_is_reported_up_to_the_total(corp, sandbox_corp):
    for seed in range(3):
        _sandbox_add(sandbox_corp, "staff01", seed=seed)
    seen: list[tuple[int, int]] = []
    calibrate(corp=corp, progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] == 0
    assert seen[-1] == (3 + 3, 3 + 3)  # 3 follow infos, then one statistics call per staff
    assert all(done <= total for done, total in seen)


# -- command, beat, admin --------------------------------------------------------------------


@pytest.mark.django_db
def test_command_shows_progress_and_a_summary(corp, sandbox_corp):
    _sandbox_add(sandbox_corp, "staff01", days_ago=2)
    out = io.StringIO()
    call_command("wecom_calibrate", "--corp", corp.corp_id, "--since",
                 _noon(3).date().isoformat(), stdout=out)  # fmt: skip
    text = out.getvalue()
    assert "\r[" in text
    assert "100% (4/4)" in text
    assert (
        "3 staff, 1 relations seen, 1 relations and 1 first sources backfilled, "
        f"0 staff-days differing from WeCom since {_noon(3).date():%Y-%m-%d}." in text
    )
    assert CalibrationRun.objects.get().triggered_by == "manage.py wecom_calibrate"


@pytest.mark.django_db
def test_command_compare_only_lists_the_deviating_days(corp, sandbox_corp):
    _sandbox_add(sandbox_corp, "staff02", days_ago=2)
    out = io.StringIO()
    call_command("wecom_calibrate", "--corp", str(corp.pk), "--compare-only", stdout=out)
    assert f"{_noon(2).date():%Y-%m-%d} staff02: ours 0, WeCom 1" in out.getvalue()
    assert not FollowRelation.objects.exists()


@pytest.mark.django_db
def test_command_errors(corp, sandbox_corp):
    with pytest.raises(CommandError, match="No corp"):
        call_command("wecom_calibrate", "--corp", "wwnobody", stdout=io.StringIO())
    SandboxFault.objects.create(endpoint="externalcontact/get_follow_user_list", errcode=48002)
    with pytest.raises(CommandError, match="48002"):
        call_command("wecom_calibrate", "--corp", corp.corp_id, stdout=io.StringIO())


@pytest.mark.django_db
def test_beat_calibrates_each_corp_at_three_at_night_its_time(corp, sandbox_corp):
    with time_machine.travel(_noon(0, hour=10), tick=False):
        assert calibrate_all_task() == 0
    with time_machine.travel(_noon(0, hour=3) + dt.timedelta(minutes=20), tick=False):
        assert calibrate_all_task() == 1
    run = CalibrationRun.objects.get()
    assert (run.triggered_by, run.status) == ("beat", CalibrationRun.Status.DONE)


@pytest.mark.django_db
def test_admin_starts_a_calibration_and_shows_its_deviations(admin_client, corp, sandbox_corp):
    _sandbox_add(sandbox_corp, "staff01", days_ago=2)
    SandboxFollow.objects.update(deleted=True)
    add_url = reverse("admin:contacts_calibrationrun_add")
    page = admin_client.get(add_url)
    assert page.status_code == 200
    assert 'name="corp"' in page.content.decode()
    response = admin_client.post(add_url, {"corp": corp.pk, "since": ""})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:contacts_calibrationrun_changelist")
    run = CalibrationRun.objects.get()  # eager: done already
    assert (run.triggered_by, run.deviations) == ("admin", 1)
    change = admin_client.get(reverse("admin:contacts_calibrationrun_change", args=[run.pk]))
    assert change.status_code == 200
    assert "staff01" in change.content.decode()
    listing = admin_client.get(reverse("admin:contacts_calibrationrun_changelist"))
    assert listing.status_code == 200


@pytest.mark.django_db
def test_admin_refuses_a_day_from_today_on(admin_client, corp, sandbox_corp):
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    response = admin_client.post(
        reverse("admin:contacts_calibrationrun_add"), {"corp": corp.pk, "since": tomorrow}
    )
    assert response.status_code == 200
    assert not CalibrationRun.objects.exists()
