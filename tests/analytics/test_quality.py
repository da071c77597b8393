"""The channel quality score: its math (normalisation, weights, ties, missing parts), the hourly
ranking stored as history, and its actions: the top channels' customers tagged once each in
WeCom (the sandbox's mark_tag calls counted), their live codes listed first in the pickers;
each action off when switched off; one corp's ranking never another's."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from analytics import quality_tags
from analytics.models import DecisionSettings, QualityScore
from analytics.quality import normalise, quality_scores_compute, weighted_score
from analytics.reply_times import weighted_median
from analytics.rollups import rollups_rebuild
from analytics.tasks import quality_scores_compute_task
from channels_app.models import Channel, LiveCode, Scan
from channels_app.state import encode_state
from contacts.models import CustomerTag, ExternalContact, Staff, TimelineEvent
from scrm import days
from scrm.pipeline import add_record
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxFollow
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db

D = Decimal


# -- the math, without a database ----------------------------------------------------------------


def test_min_max_normalisation_with_missing_values_and_reversal():
    values = {1: D(10), 2: D(30), 3: D(20), 4: None}
    assert normalise(values) == {1: D(0), 2: D(1), 3: D("0.5"), 4: D(0)}
    # Lower is better (reply time): the fastest gets 1, the slowest 0, no data still 0.
    assert normalise(values, lower_is_better=True) == {1: D(1), 2: D(0), 3: D("0.5"), 4: D(0)}


def test_ties_give_every_channel_with_a_value_one_and_no_values_give_zero():
    assert normalise({1: D(5), 2: D(5), 3: None}) == {1: D(1), 2: D(1), 3: D(0)}
    assert normalise({1: D(7)}) == {1: D(1)}  # a single channel with a value
    assert normalise({1: None, 2: None}) == {1: D(0), 2: D(0)}


def test_the_score_is_the_weighted_mean_of_the_parts_out_of_100():
    parts = {"a": D(1), "b": D("0.5"), "c": D(0)}
    assert weighted_score(parts, [("a", 20), ("b", 20), ("c", 0)]) == D("75.00")
    assert weighted_score(parts, [("a", 1), ("b", 1), ("c", 2)]) == D("37.50")
    assert weighted_score(parts, [("a", 0)]) == D(0)


def test_the_median_of_grouped_counts():
    # 3 customers at 10 min, 1 at 100: the median customer waited 10 minutes.
    assert weighted_median([(D(100), 1), (D(10), 3)]) == D(10)
    assert weighted_median([(D(10), 1), (D(20), 1)]) == D(15)  # even: the middle two's mean
    assert weighted_median([(D(10), 2), (D(30), 2)]) == D(20)
    assert weighted_median([(D(10), 0)]) is None
    assert weighted_median([]) is None


# -- a corp with channels, customers in the sandbox, rollups -------------------------------------


def _channel(corp, key: str, mode: str = LiveCode.Mode.NATIVE) -> LiveCode:
    channel = Channel.objects.create(corp=corp, name=key, code=key)
    code = LiveCode.objects.create(corp=corp, channel=channel, name=f"{key} code", slug=key,
                                   mode=mode)  # fmt: skip
    code.state = encode_state("native", code.pk)
    code.save(update_fields=["state"])
    return code


def _customers(corp, sandbox_corp, code: LiveCode, count: int, *, userid: str = "staff01",
               at: dt.datetime | None = None, seed: int = 0) -> list[ExternalContact]:  # fmt: skip
    """`count` customers who added `userid` through `code`, in WeCom (the sandbox) and here."""
    rng = random.Random(seed)
    contacts = []
    for _index in range(count):
        customer, _follow, _code = sandbox_customer_add(
            corp=sandbox_corp, userid=userid, rng=rng, state=code.state
        )
        add_record(corp=corp, userid=userid, external_userid=customer.external_userid,
                   state=code.state, added_at=at or timezone.now())  # fmt: skip
        contacts.append(ExternalContact.objects.get(external_userid=customer.external_userid))
    return contacts


def _rebuild(corp) -> None:
    today = days.today(corp)
    rollups_rebuild(corp=corp, first=today - dt.timedelta(days=40), last=today)


def _mark_tag_calls() -> int:
    return ApiCall.objects.filter(endpoint="externalcontact/mark_tag").count()


@pytest.fixture
def ranked(corp, sandbox_corp):
    """Three channels: "many" (4 customers, fast staff), "few" (1 customer, slow staff) and
    "none" (nothing). Top N is 1."""
    Staff.objects.filter(corp=corp).delete()
    codes = {key: _channel(corp, key) for key in ("many", "few", "none")}
    _customers(corp, sandbox_corp, codes["many"], 4, userid="staff01", seed=1)
    _customers(corp, sandbox_corp, codes["few"], 1, userid="staff02", seed=2)
    Staff.objects.filter(corp=corp, userid="staff01").update(avg_reply_minutes=5)
    Staff.objects.filter(corp=corp, userid="staff02").update(avg_reply_minutes=300)
    DecisionSettings.objects.create(corp=corp, quality_top_n=1)
    _rebuild(corp)
    return codes


def test_the_ranking_scores_each_part_and_ranks_channels(corp, ranked):
    rows = {row.channel.code: row for row in quality_scores_compute(corp=corp)}
    many, few, none = rows["many"], rows["few"], rows["none"]
    assert (many.rank, few.rank, none.rank) == (1, 2, 3)
    assert (many.new_customers, few.new_customers, none.new_customers) == (4, 1, 0)
    assert (many.reply_minutes, few.reply_minutes, none.reply_minutes) == (D(5), D(300), None)
    # Native codes have no scans: no scan volume, no scan-to-add for anyone.
    assert D(many.normalised["scans"]) == 0
    assert many.scan_to_add is None
    assert D(many.normalised["reply_speed"]) == 1
    assert D(few.normalised["reply_speed"]) == 0
    # Both consult rates are 0 (a tie among channels with a value): 1 each; "none" has none.
    assert D(many.normalised["consult_72h_rate"]) == D(few.normalised["consult_72h_rate"]) == 1
    assert D(none.normalised["consult_72h_rate"]) == 0
    assert none.score == D(0)
    assert many.score > few.score > none.score


def test_the_same_hour_computed_again_replaces_it_and_hours_are_kept(corp, ranked):
    now = timezone.now()
    quality_scores_compute(corp=corp, now=now)
    quality_scores_compute(corp=corp, now=now)
    assert QualityScore.objects.filter(corp=corp).count() == 3
    quality_scores_compute(corp=corp, now=now + dt.timedelta(hours=1))
    assert QualityScore.objects.filter(corp=corp).values("computed_at").distinct().count() == 2


def test_the_hourly_job_tags_the_top_channels_customers_once_each(corp, sandbox_corp, ranked):
    """Done when: the hourly ranking tags the top channels' customers 高潜力 once each."""
    before = _mark_tag_calls()
    quality_scores_compute_task.delay(corp.pk)
    quality_scores_compute_task.delay(corp.pk)  # the next hour: "many" is still on top
    assert _mark_tag_calls() - before == 4  # one per customer of "many", across both runs
    tagged = CustomerTag.objects.filter(corp=corp, tag__name="高潜力", source="quality")
    assert tagged.count() == 4
    customers = set(tagged.values_list("follow_relation__external_contact", flat=True))
    assert len(customers) == 4
    states = SandboxFollow.objects.filter(customer__corp=sandbox_corp, state=ranked["many"].state)
    assert all(follow.tag_ids for follow in states)  # WeCom (the sandbox) has the tag too
    other = SandboxFollow.objects.filter(customer__corp=sandbox_corp, state=ranked["few"].state)
    assert not any(follow.tag_ids for follow in other)
    lines = TimelineEvent.objects.filter(corp=corp, kind=TimelineEvent.Kind.TAGGED)
    assert lines.count() == 4
    assert all(line.data["source"] == "quality" for line in lines)


def test_a_customer_already_tagged_on_another_relation_is_not_tagged_again(
    corp, sandbox_corp, ranked
):
    quality_scores_compute_task.delay(corp.pk)
    customer = CustomerTag.objects.filter(tag__name="高潜力").first().follow_relation
    contact = customer.external_contact
    # The customer also adds staff03 later: a second live relation, not the first touch.
    follow = SandboxFollow.objects.get(customer__external_userid=contact.external_userid)
    SandboxFollow.objects.create(
        customer=follow.customer, userid="staff03", createtime=follow.createtime + 60, state=""
    )
    add_record(corp=corp, userid="staff03", external_userid=contact.external_userid, state="",
               added_at=timezone.now())  # fmt: skip
    before = _mark_tag_calls()
    quality_scores_compute_task.delay(corp.pk)
    assert _mark_tag_calls() == before


def test_switched_off_nothing_is_tagged(corp, ranked):
    DecisionSettings.objects.filter(corp=corp).update(quality_tag_customers=False)
    before = _mark_tag_calls()
    quality_scores_compute_task.delay(corp.pk)
    assert _mark_tag_calls() == before
    assert not CustomerTag.objects.filter(corp=corp).exists()
    assert QualityScore.objects.filter(corp=corp).exists()  # the ranking itself is kept


def test_scans_count_for_landing_channels_only(corp, sandbox_corp):
    code = _channel(corp, "xhs", mode=LiveCode.Mode.LANDING)
    _channel(corp, "pyq")
    for index in range(3):
        Scan.objects.create(corp=corp, live_code=code, device_key=f"d{index}")
    _rebuild(corp)
    rows = {row.channel.code: row for row in quality_scores_compute(corp=corp)}
    assert (rows["xhs"].scans, D(rows["xhs"].normalised["scans"])) == (3, 1)
    assert (rows["pyq"].scans, D(rows["pyq"].normalised["scans"])) == (0, 0)
    assert rows["xhs"].rank == 1


# -- the page and the API ------------------------------------------------------------------------


def test_the_api_gives_the_latest_ranking_and_the_hours_before(admin_user, corp, ranked):
    now = timezone.now()
    quality_scores_compute(corp=corp, now=now - dt.timedelta(hours=1))
    quality_scores_compute(corp=corp, now=now)
    api = APIClient()
    api.force_authenticate(admin_user)
    response = api.get("/api/v1/reports/quality/", {"corp": corp.corp_id})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [row["name"] for row in body["rows"]] == ["many", "few", "none"]
    assert [row["top"] for row in body["rows"]] == [True, False, False]  # top N is 1
    assert body["top_n"] == 1
    assert body["weights"]["consult_72h_rate"] == 20
    parts = {part["name"]: part for part in body["rows"][0]["parts"]}
    assert list(parts) == [name for name, _w in DecisionSettings().quality_weights()]
    assert (parts["reply_speed"]["value"], parts["reply_speed"]["normalised"]) == (5.0, 1.0)
    assert len(body["history"]) == 6  # two hours of three channels
    assert {item["rank"] for item in body["history"]} == {1, 2, 3}
    for bad in ({"days": 1000}, {"moon": 1}, {"corp": "ww-nobody"}):
        query = {"corp": corp.corp_id, **bad}
        assert api.get("/api/v1/reports/quality/", query).status_code == 400


def test_the_page_shows_the_ranking_its_parts_and_definitions(admin_client, corp, ranked):
    assert admin_client.get("/reports/quality/").status_code == 200  # no ranking yet
    quality_scores_compute(corp=corp)
    response = admin_client.get("/reports/quality/", {"corp": corp.corp_id, "days": 7})
    assert response.status_code == 200
    html = response.content.decode()
    many = Channel.objects.get(corp=corp, code="many")
    assert f'data-channel="{many.pk}" data-rank="1" class="quality-top"' in html
    assert 'data-part="reply_speed" data-normalised="1.0000"' in html
    assert 'id="quality-rank-data"' in html
    assert 'id="quality-parts-data"' in html
    assert 'id="quality-weights"' in html
    assert admin_client.get("/reports/quality/", {"days": "x"}).status_code == 400


# -- the live-code pickers ---------------------------------------------------------------------


def _picked(admin_client) -> list[str]:
    """The live codes the referral form's picker offers (the admin's autocomplete), in order."""
    response = admin_client.get("/admin/autocomplete/", {
        "app_label": "channels_app", "model_name": "referralcode", "field_name": "live_code",
    })  # fmt: skip
    assert response.status_code == 200, response.content
    return [item["text"] for item in response.json()["results"]]


def test_the_pickers_list_the_top_channels_codes_first(admin_client, corp, ranked):
    assert _picked(admin_client) == ["none code", "few code", "many code"]  # newest first
    quality_scores_compute(corp=corp)
    assert _picked(admin_client) == ["many code", "none code", "few code"]  # the top 1 first
    DecisionSettings.objects.filter(corp=corp).update(quality_top_n=2)
    assert _picked(admin_client) == ["many code", "few code", "none code"]
    DecisionSettings.objects.filter(corp=corp).update(quality_order_pickers=False)
    assert _picked(admin_client) == ["none code", "few code", "many code"]


def test_another_corps_ranking_does_not_order_this_corps_pickers(client, corp, ranked):
    """Tenancy: an operator of another corp sees neither this corp's codes nor its order."""
    from django.contrib.auth import get_user_model

    from scrm.wecom.sandbox.simulate import sandbox_corp_setup
    from scrm.wecom.services import corp_create
    from tests.tenancy import member

    other_sandbox = sandbox_corp_setup(corp_id="wwtest0000000002", name="别的企业", members=1)
    other = corp_create(corp_id=other_sandbox.corp_id, name=other_sandbox.name,
                        secret=other_sandbox.secret, callback_token=other_sandbox.callback_token,
                        encoding_aes_key=other_sandbox.encoding_aes_key)  # fmt: skip
    _channel(other, "theirs-old")
    _channel(other, "theirs-new")
    quality_scores_compute(corp=corp)
    quality_scores_compute(corp=other)
    assert QualityScore.objects.filter(corp=other).count() == 2
    user = get_user_model().objects.create_user("op", password="x", is_staff=True)
    client.force_login(member(user, other, role="operator"))
    # Its own top 5 (a tie at 0: the older channel first), none of the first corp's codes.
    assert _picked(client) == ["theirs-old code", "theirs-new code"]
    response = client.get("/api/v1/reports/quality/", {"corp": corp.corp_id})
    assert response.status_code in (400, 403)


def test_the_tags_go_out_in_chunks_each_customer_once(corp, ranked, monkeypatch):
    monkeypatch.setattr(quality_tags, "CHUNK_SIZE", 3)  # 4 customers: two chunks
    quality_scores_compute(corp=corp)
    before = _mark_tag_calls()
    first = quality_tags.quality_tags_apply(corp=corp)
    assert (first.tagged, first.next_run is not None) == (3, True)
    rest = quality_tags.quality_tags_apply(corp=corp, run=first.next_run,
                                           after=first.last_customer)  # fmt: skip
    assert (rest.tagged, rest.next_run) == (1, None)
    assert _mark_tag_calls() - before == 4


def test_a_run_in_progress_keeps_the_next_one_out(corp, ranked):
    quality_scores_compute(corp=corp)
    cache.add(quality_tags._lock_key(corp.pk), "another-run", 60)
    before = _mark_tag_calls()
    assert quality_tags.quality_tags_apply(corp=corp).tagged == 0
    assert _mark_tag_calls() == before
