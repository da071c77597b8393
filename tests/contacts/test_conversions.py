"""Conversions: POST /api/v1/conversions/ (all or nothing, idempotent by external_id), matching
to customers now or later by the beat task, GET with filters, and the admin's CSV import."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from contacts.conversions import conversions_match_pending
from contacts.models import AuditLog, ConversionEvent, TimelineEvent
from contacts.tasks import conversions_match_pending_task
from scrm.wecom.models import CorpMembership, Role
from tests.factories import CorpFactory, ExternalContactFactory
from tests.tenancy import member

pytestmark = pytest.mark.django_db

URL = "/api/v1/conversions/"


@pytest.fixture(autouse=True)
def _chinese_and_fast(settings) -> None:
    settings.LANGUAGE_CODE = "zh-hans"  # timeline summaries are stored in the project language
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def corp():
    return CorpFactory(corp_id="wwconv0000000001", time_zone="Asia/Shanghai")


@pytest.fixture
def sender(django_user_model, corp):
    """An operator of the corp (the role that may send conversions)."""
    return member(django_user_model.objects.create_user(username="shop-sync"), corp)


@pytest.fixture
def api(sender) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=sender).key}")
    return client


def _row(corp, n: int = 1, **fields) -> dict:
    row = {
        "corp_id": corp.corp_id,
        "external_id": f"order-{n}",
        "kind": "order",
        "amount": "199.00",
        "currency": "CNY",
        "occurred_at": "2024-06-18T20:30:00+08:00",
        "external_userid": f"wm-nobody-{n}",
    }
    row.update(fields)
    return {key: value for key, value in row.items() if value is not None}


def _post(api, rows):
    return api.post(URL, rows, format="json")


def _errors(response) -> list[tuple]:
    assert response.status_code == 400, response.content
    return [(e["row"], e["field"]) for e in response.json()["errors"]]


# -- writing -----------------------------------------------------------------------------------


def test_rows_are_stored_and_matched_by_external_userid_or_unionid(api, corp):
    by_id = ExternalContactFactory(corp=corp, external_userid="wm-alice")
    by_union = ExternalContactFactory(corp=corp, external_userid="wm-bob", unionid="union-bob")
    rows = [
        _row(corp, 1, external_userid="wm-alice"),
        _row(corp, 2, external_userid="wm-unknown", unionid="union-bob", kind="consult",
             amount=None),
        _row(corp, 3, external_userid="wm-stranger"),
    ]  # fmt: skip
    response = _post(api, rows)
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 3, "duplicates": 0, "matched": 2, "unmatched": 1}

    stored = {c.external_id: c for c in ConversionEvent.objects.all()}
    assert stored["order-1"].external_contact == by_id
    assert stored["order-1"].amount == Decimal("199.00")
    assert stored["order-1"].occurred_at == dt.datetime(2024, 6, 18, 12, 30, tzinfo=dt.UTC)
    assert stored["order-2"].external_contact == by_union
    assert stored["order-2"].amount is None
    assert stored["order-3"].external_contact is None
    assert stored["order-3"].matched_at is None

    line = TimelineEvent.objects.get(external_contact=by_id)
    assert (line.kind, line.summary) == (TimelineEvent.Kind.CONVERSION, "订单 ¥199.00")
    assert line.dedup_key == f"conversion:{stored['order-1'].pk}"
    assert TimelineEvent.objects.get(external_contact=by_union).summary == "咨询"
    audit = AuditLog.objects.get(action="conversions_import")
    assert audit.actor_label == "shop-sync"
    assert audit.detail["created"] == 3


def test_refunds_are_stored_as_given_negative_or_positive(api, corp):
    contact = ExternalContactFactory(corp=corp, external_userid="wm-alice")
    rows = [
        _row(corp, 1, kind="refund", amount="-50", external_userid="wm-alice"),
        _row(corp, 2, kind="refund", amount=50, external_userid="wm-alice"),
        _row(corp, 3, kind="custom", custom_name="试听课", amount=12999.5, currency="cny",
             external_userid="wm-alice"),
        _row(corp, 4, amount="0.100", external_userid="wm-alice"),  # trailing zeros are fine
    ]  # fmt: skip
    assert _post(api, rows).status_code == 201
    amounts = dict(ConversionEvent.objects.values_list("external_id", "amount"))
    assert amounts == {"order-1": Decimal("-50"), "order-2": Decimal("50"),
                       "order-3": Decimal("12999.50"), "order-4": Decimal("0.10")}  # fmt: skip
    assert ConversionEvent.objects.get(external_id="order-3").currency == "CNY"
    summaries = set(contact.timeline.values_list("summary", flat=True))
    assert summaries == {"退款 -¥50.00", "退款 ¥50.00", "试听课 ¥12,999.50", "订单 ¥0.10"}


def test_another_currency_than_the_corps_is_refused_with_the_reason(api, corp):
    ExternalContactFactory(corp=corp, external_userid="wm-alice")
    rows = [_row(corp, 1, external_userid="wm-alice"),
            _row(corp, 2, currency="usd", external_userid="wm-alice")]  # fmt: skip
    response = _post(api, rows)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert (error["row"], error["field"]) == (1, "currency")
    assert "CNY" in error["message"]
    assert "USD" in error["message"]
    assert not ConversionEvent.objects.exists()  # all or nothing


def test_naive_time_is_read_in_the_corps_time_zone(api, sender, corp):
    new_york = CorpFactory(corp_id="wwconv0000000002", time_zone="America/New_York")
    member(sender, new_york)
    rows = [
        _row(corp, 1, occurred_at="2024-06-18T20:30:00"),
        _row(new_york, 2, occurred_at="2024-06-18 20:30:00"),
        _row(corp, 3, occurred_at="2024-06-18T12:30:00Z"),
    ]
    assert _post(api, rows).status_code == 201
    times = dict(ConversionEvent.objects.values_list("external_id", "occurred_at"))
    assert times["order-1"] == dt.datetime(2024, 6, 18, 12, 30, tzinfo=dt.UTC)
    assert times["order-2"] == dt.datetime(2024, 6, 19, 0, 30, tzinfo=dt.UTC)  # EDT, UTC-4
    assert times["order-3"] == dt.datetime(2024, 6, 18, 12, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": None}, "kind"),
        ({"kind": "purchase"}, "kind"),
        ({"amount": "12,99"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "1.999"}, "amount"),
        ({"amount": "1000000000000"}, "amount"),
        ({"amount": None}, "amount"),  # an order needs one
        ({"kind": "refund", "amount": ""}, "amount"),
        ({"amount": "-1.00"}, "amount"),  # a negative order is a refund
        ({"currency": "RMB1"}, "currency"),
        ({"currency": "元"}, "currency"),
        ({"occurred_at": None}, "occurred_at"),
        ({"occurred_at": "18/06/2024 20:30"}, "occurred_at"),
        ({"occurred_at": 1718713800}, "occurred_at"),
        ({"external_id": None}, "external_id"),
        ({"external_id": "x" * 65}, "external_id"),
        ({"corp_id": None}, "corp_id"),
        ({"corp_id": "wwnosuchcorp"}, "corp_id"),
        ({"external_userid": None}, "external_userid"),  # neither id nor unionid
        ({"unionid": ["a", "b"]}, "unionid"),
        ({"note": "n" * 256}, "note"),
        ({"customer_name": "张三"}, "customer_name"),  # unknown field
    ],
)
def test_each_kind_of_row_error_is_reported_and_nothing_is_written(api, corp, fields, field):
    rows = [_row(corp, 1), _row(corp, 2, **fields)]
    assert (1, field) in _errors(_post(api, rows))
    assert ConversionEvent.objects.count() == 0


def test_a_mixed_batch_writes_nothing_and_lists_every_bad_row(api, corp):
    ExternalContactFactory(corp=corp, external_userid="wm-nobody-1")
    rows = [_row(corp, 1), _row(corp, 2, kind="?"), _row(corp, 3), _row(corp, 4, amount="x"), 7]
    response = _post(api, rows)
    assert _errors(response) == [(1, "kind"), (3, "amount"), (4, "non_field_errors")]
    assert all(error["message"] for error in response.json()["errors"])
    assert ConversionEvent.objects.count() == 0
    assert TimelineEvent.objects.count() == 0
    assert not AuditLog.objects.exists()


def test_1000_rows_pass_and_1001_are_refused(api, corp):
    assert _errors(_post(api, [_row(corp, n) for n in range(1001)])) == [(None, "non_field_errors")]
    assert ConversionEvent.objects.count() == 0
    response = _post(api, [_row(corp, n) for n in range(1000)])
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 1000


@pytest.mark.parametrize("body", ["{not json", '{"corp_id": "x"}', "[]", '"rows"'])
def test_a_body_that_is_not_a_list_of_rows_is_refused(api, body):
    response = api.post(URL, body, content_type="application/json")
    assert _errors(response) == [(None, "non_field_errors")]


def test_the_same_rows_sent_again_are_duplicates(api, corp):
    ExternalContactFactory(corp=corp, external_userid="wm-nobody-1")
    rows = [_row(corp, 1), _row(corp, 2)]
    assert _post(api, rows).json() == {"created": 2, "duplicates": 0, "matched": 1, "unmatched": 1}
    # Same content written differently (number vs string, other offset) is the same row.
    again = [_row(corp, 1, amount=199, occurred_at="2024-06-18T12:30:00Z"), _row(corp, 2),
             _row(corp, 3)]  # fmt: skip
    response = _post(api, again)
    assert response.json() == {"created": 1, "duplicates": 2, "matched": 0, "unmatched": 1}
    assert ConversionEvent.objects.count() == 3
    assert TimelineEvent.objects.count() == 1


def test_an_external_id_reused_with_other_data_is_a_row_error(api, corp):
    assert _post(api, [_row(corp, 1)]).status_code == 201
    response = api.post(
        URL, [_row(corp, 2), _row(corp, 1, amount="299.00")], format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert _errors(response) == [(1, "external_id")]
    assert response.json()["errors"][0]["message"] == "external_id already used with different data"
    assert ConversionEvent.objects.count() == 1


def test_repeats_within_one_request(api, corp):
    response = _post(api, [_row(corp, 1), _row(corp, 1)])
    assert response.json() == {"created": 1, "duplicates": 1, "matched": 0, "unmatched": 1}
    assert _errors(_post(api, [_row(corp, 5), _row(corp, 5, kind="refund")])) == [
        (1, "external_id")
    ]


def test_the_same_external_id_in_two_corps_is_two_conversions(api, sender, corp):
    other = CorpFactory(corp_id="wwconv0000000003")
    member(sender, other)
    assert _post(api, [_row(corp, 1), _row(other, 1)]).json()["created"] == 2


# -- authentication ----------------------------------------------------------------------------


def test_anonymous_and_tokenless_requests_are_refused(corp):
    client = APIClient()
    # 403 rather than 401: session authentication comes first in REST_FRAMEWORK's settings.
    assert client.get(URL).status_code in (401, 403)
    assert client.post(URL, [_row(corp)], format="json").status_code in (401, 403)
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.post(URL, [_row(corp)], format="json").status_code in (401, 403)
    assert ConversionEvent.objects.count() == 0


def test_sending_needs_the_add_permission_reading_a_login(django_user_model, corp):
    # A manager (read-only) may read the corp's conversions but not send any.
    reader = member(django_user_model.objects.create_user(username="manager"), corp, role="manager")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=reader).key}")
    assert client.post(URL, [_row(corp)], format="json").status_code == 403
    assert ConversionEvent.objects.count() == 0
    ConversionEvent.objects.create(corp=corp, external_id="seen", kind="consult",
                                   occurred_at=dt.datetime(2024, 6, 18, tzinfo=dt.UTC))  # fmt: skip
    response = client.get(URL)
    assert response.status_code == 200
    assert [row["external_id"] for row in response.json()["results"]] == ["seen"]


def test_session_login_can_send(sender, corp):
    client = APIClient(enforce_csrf_checks=False)
    client.force_login(sender)
    assert client.post(URL, [_row(corp)], format="json").status_code == 201
    assert ConversionEvent.objects.get().external_id == "order-1"


# -- reading -----------------------------------------------------------------------------------


def test_list_filters(api, sender, corp):
    other = CorpFactory(corp_id="wwconv0000000004")
    member(sender, other)
    ExternalContactFactory(corp=corp, external_userid="wm-alice")
    rows = [
        _row(corp, 1, external_userid="wm-alice"),
        _row(corp, 2, kind="refund", amount="-10", occurred_at="2024-07-01T10:00:00+08:00"),
        _row(other, 3, kind="consult", amount=None),
    ]
    assert _post(api, rows).status_code == 201

    def ids(**params) -> set[str]:
        response = api.get(URL, params)
        assert response.status_code == 200, response.content
        return {row["external_id"] for row in response.json()["results"]}

    assert ids() == {"order-1", "order-2", "order-3"}
    assert ids(corp=corp.corp_id) == {"order-1", "order-2"}
    assert ids(kind="refund") == {"order-2"}
    assert ids(matched="true") == {"order-1"}
    assert ids(matched="false") == {"order-2", "order-3"}
    assert ids(external_userid="wm-alice") == {"order-1"}
    assert ids(occurred_from="2024-06-19") == {"order-2"}
    assert ids(occurred_to="2024-06-18") == {"order-1", "order-3"}
    assert api.get(URL, {"kind": "purchase"}).status_code == 400

    (first,) = api.get(URL, {"external_userid": "wm-alice"}).json()["results"]
    assert first["corp"] == corp.corp_id
    assert first["amount"] == "199.00"
    assert first["matched"] is True


# -- matching later ----------------------------------------------------------------------------


def test_unmatched_rows_are_matched_by_the_beat_task_once_the_customer_exists(api, corp):
    rows = [_row(corp, 1, external_userid="wm-late"),
            _row(corp, 2, external_userid="", unionid="union-late", kind="refund", amount="-9.9"),
            _row(corp, 3, external_userid="wm-never")]  # fmt: skip
    assert _post(api, rows).json()["unmatched"] == 3
    assert conversions_match_pending() == 0

    late = ExternalContactFactory(corp=corp, external_userid="wm-late")
    by_union = ExternalContactFactory(corp=corp, external_userid="wm-other", unionid="union-late")
    assert conversions_match_pending_task.delay().get() == 2
    assert ConversionEvent.objects.get(external_id="order-1").external_contact == late
    assert ConversionEvent.objects.get(external_id="order-2").external_contact == by_union
    assert ConversionEvent.objects.get(external_id="order-3").external_contact is None
    assert list(late.timeline.values_list("summary", flat=True)) == ["订单 ¥199.00"]
    assert list(by_union.timeline.values_list("summary", flat=True)) == ["退款 -¥9.90"]

    assert conversions_match_pending() == 0
    assert TimelineEvent.objects.count() == 2


def test_matching_in_batches_and_per_corp(api, sender, corp, monkeypatch):
    monkeypatch.setattr("contacts.conversions.MATCH_BATCH", 2)
    other = CorpFactory(corp_id="wwconv0000000005")
    member(sender, other)
    rows = [_row(corp, n, external_userid="wm-late") for n in range(5)]
    rows.append(_row(other, 9, external_userid="wm-late"))
    assert _post(api, rows).json()["unmatched"] == 6
    ExternalContactFactory(corp=corp, external_userid="wm-late")
    other_contact = ExternalContactFactory(corp=other, external_userid="wm-late")
    assert conversions_match_pending(corp=corp) == 5
    assert ConversionEvent.objects.filter(external_contact__isnull=True).count() == 1
    assert conversions_match_pending() == 1
    assert ConversionEvent.objects.get(corp=other).external_contact == other_contact


def test_the_beat_schedule_has_the_matching_and_retention_tasks():
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    tasks = {t.task: t.interval.every for t in PeriodicTask.objects.select_related("interval")}
    assert tasks["contacts.tasks.conversions_match_pending_task"] == 600
    assert tasks["contacts.tasks.callback_bodies_prune_task"] == 86400


# -- CSV import in the admin -------------------------------------------------------------------

IMPORT_URL = "/admin/contacts/conversionevent/import/"
HEADER = "corp_id,external_id,kind,amount,currency,occurred_at,external_userid,unionid,note"


def _csv(corp, *lines: str) -> str:
    return "\n".join([HEADER, *(line.format(corp=corp.corp_id) for line in lines)]) + "\n"


def _upload(admin_client, text: str | bytes, encoding: str = "utf-8"):
    data = text if isinstance(text, bytes) else text.encode(encoding)
    upload = SimpleUploadedFile("orders.csv", data, content_type="text/csv")
    return admin_client.post(IMPORT_URL, {"file": upload})


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_import_in_each_encoding(admin_client, corp, encoding):
    contact = ExternalContactFactory(corp=corp, external_userid="wm-alice")
    text = _csv(
        corp,
        "{corp},A-1,order,199,CNY,2024-06-18 20:30:00,wm-alice,,首单",
        "{corp},A-2,refund,-50.00,,2024-06-19T10:00:00+08:00,,union-x,退款：质量问题",
        ",,,,,,,,",
        "",
    )
    response = _upload(admin_client, text, encoding)
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == reverse("admin:contacts_conversionevent_changelist")
    stored = {c.external_id: c for c in ConversionEvent.objects.all()}
    assert set(stored) == {"A-1", "A-2"}
    assert stored["A-1"].external_contact == contact
    assert stored["A-1"].note == "首单"
    assert stored["A-1"].occurred_at == dt.datetime(2024, 6, 18, 12, 30, tzinfo=dt.UTC)
    assert stored["A-2"].note == "退款：质量问题"
    assert stored["A-2"].currency == "CNY"
    assert AuditLog.objects.get(action="conversions_import").target == "conversions (csv)"


def test_csv_import_with_a_bad_line_imports_nothing_and_shows_the_lines(admin_client, corp):
    text = _csv(
        corp,
        "{corp},A-1,order,199,CNY,2024-06-18 20:30:00,wm-alice,,",
        "{corp},A-2,order,abc,CNY,2024-06-18 20:30:00,wm-alice,,",
        "{corp},A-3,order,199,CNY,yesterday,wm-alice,,",
    )
    response = _upload(admin_client, text)
    assert response.status_code == 200
    errors = [(e["line"], e["field"]) for e in response.context["errors"]]
    assert errors == [(3, "amount"), (4, "occurred_at")]
    assert 'id="import-errors"' in response.content.decode()
    assert ConversionEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b"\xff\xff\xfa\xfb", "non_field_errors"),  # neither UTF-8 nor GBK (nor a UTF-16 BOM)
        (b"PK\x03\x04xlsx", "non_field_errors"),  # an Excel workbook, not a CSV file
        (b"\n\n", "non_field_errors"),  # no header
        (b"corp_id,external_id,kind,occurred_at,customer\n", "customer"),
        (b"corp_id,kind,occurred_at,external_userid\n", "external_id"),
        (b"corp_id,external_id,kind,occurred_at,external_userid\nw,1,order,x,y,EXTRA\n",
         "non_field_errors"),
    ],
)  # fmt: skip
def test_csv_files_that_cannot_be_read(admin_client, text, field):
    response = _upload(admin_client, text)
    assert response.status_code == 200
    assert [(e["line"], e["field"]) for e in response.context["errors"]] == [(None, field)]
    assert ConversionEvent.objects.count() == 0


def test_an_empty_upload_is_a_form_error(admin_client):
    response = _upload(admin_client, b"")
    assert response.status_code == 200
    assert "file" in response.context["form"].errors
    assert ConversionEvent.objects.count() == 0


def test_csv_duplicates_are_skipped(admin_client, corp):
    text = _csv(corp, "{corp},A-1,consult,,,2024-06-18 20:30:00,wm-alice,,")
    assert _upload(admin_client, text).status_code == 302
    response = _upload(admin_client, text)
    assert response.status_code == 302
    assert ConversionEvent.objects.count() == 1


def test_import_page_link_and_permission(admin_client, client, django_user_model, corp):
    changelist = admin_client.get(reverse("admin:contacts_conversionevent_changelist"))
    assert IMPORT_URL in changelist.content.decode()
    assert admin_client.get(IMPORT_URL).status_code == 200
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    CorpMembership.objects.create(user=viewer, corp=corp, role=Role.MANAGER)  # reads only
    client.force_login(viewer)
    assert client.get(reverse("admin:contacts_conversionevent_changelist")).status_code == 200
    assert (
        IMPORT_URL
        not in client.get(reverse("admin:contacts_conversionevent_changelist")).content.decode()
    )
    assert client.get(IMPORT_URL).status_code == 403


def test_conversion_pages_open(admin_client, api, corp):
    assert _post(api, [_row(corp, 1)]).status_code == 201
    conversion = ConversionEvent.objects.get()
    for url in (
        reverse("admin:contacts_conversionevent_changelist") + "?matched=no",
        reverse("admin:contacts_conversionevent_change", args=[conversion.pk]),
    ):
        assert admin_client.get(url).status_code == 200
