"""The admin's tenancy, case by case: an operator of corp A cannot reach corp B's live codes,
costs, customers or pages; a manager changes nothing; choices and autocomplete offer only the
user's corps; memberships are managed by each corp's admins within their corps. Every custom
admin view (a ModelAdmin's get_urls()) has its line in CUSTOM_VIEWS and is asked by each role
(tests/test_access_matrix_urls.py fails for a view without one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import reverse

from channels_app.models import Channel, ChannelCost, LiveCode
from contacts.models import ConversionEvent, ExternalContact
from scrm.wecom.models import Corp, CorpMembership, Role
from tests.test_access_matrix_admin import corp_rows, corp_state, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def corps(django_user_model) -> dict:
    from tests.factories import CorpFactory

    corp_a, corp_b = CorpFactory(name="甲企业"), CorpFactory(name="乙企业")
    bystander = make_user(django_user_model, "bystander")
    return {
        "a": corp_rows(corp_a, bystander),
        "b": corp_rows(corp_b, bystander),
        "corp_a": corp_a,
        "corp_b": corp_b,
        "bystander": bystander,
    }


def login(django_user_model, name: str) -> Client:
    """A client logged in as a new staff user (the user on `client.user`)."""
    user = make_user(django_user_model, name)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def _member(client: Client, corp: Corp, role: str) -> Client:
    CorpMembership.objects.create(user=client.user, corp=corp, role=role)
    return client


@pytest.fixture
def operator_a(django_user_model, corps) -> Client:
    return _member(login(django_user_model, "op-a"), corps["corp_a"], Role.OPERATOR)


@pytest.fixture
def manager_a(django_user_model, corps) -> Client:
    return _member(login(django_user_model, "mgr-a"), corps["corp_a"], Role.MANAGER)


@pytest.fixture
def admin_a(django_user_model, corps) -> Client:
    return _member(login(django_user_model, "adm-a"), corps["corp_a"], Role.ADMIN)


def _changelist_action(client: Client, model: str, action: str, pks: list[int]):
    return client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": action, "_selected_action": pks, "post": "yes"},
    )


# -- live codes --------------------------------------------------------------------------------


def test_operator_of_a_cannot_edit_publish_or_pause_b_live_codes(operator_a, corps):
    code_b = corps["b"][LiveCode]
    LiveCode.objects.filter(pk=code_b.pk).update(status=LiveCode.Status.ACTIVE)
    change = reverse("admin:channels_app_livecode_change", args=[code_b.pk])
    assert operator_a.get(change).status_code == 404
    assert operator_a.post(change, {"name": "taken over"}).status_code == 404
    for action in ("publish", "pause", "archive"):
        _changelist_action(operator_a, "channels_app_livecode", action, [code_b.pk])
    code_b.refresh_from_db()
    assert (code_b.name, code_b.status, code_b.published_at) == (
        corps["b"][LiveCode].name,
        LiveCode.Status.ACTIVE,
        None,
    )
    for name in ("channels_app_livecode_png", "channels_app_livecode_poster"):
        assert operator_a.get(reverse(f"admin:{name}", args=[code_b.pk])).status_code == 404


def test_an_operator_of_a_and_manager_of_b_pauses_only_a_codes(operator_a, corps):
    _member(operator_a, corps["corp_b"], Role.MANAGER)
    code_a, code_b = corps["a"][LiveCode], corps["b"][LiveCode]
    LiveCode.objects.filter(pk__in=[code_a.pk, code_b.pk]).update(status=LiveCode.Status.ACTIVE)
    change_b = reverse("admin:channels_app_livecode_change", args=[code_b.pk])
    assert operator_a.get(change_b).status_code == 200  # B's code shown, read-only
    assert operator_a.post(change_b, {"name": "taken over"}).status_code == 403
    _changelist_action(operator_a, "channels_app_livecode", "pause", [code_a.pk, code_b.pk])
    statuses = dict(
        LiveCode.objects.filter(pk__in=[code_a.pk, code_b.pk]).values_list("pk", "status")
    )
    assert statuses == {code_a.pk: LiveCode.Status.PAUSED, code_b.pk: LiveCode.Status.ACTIVE}


def test_list_editable_is_off_for_a_user_who_may_only_read_some_rows(operator_a, corps):
    from channels_app.models import SourceRule

    _member(operator_a, corps["corp_b"], Role.MANAGER)
    rule_b = corps["b"][SourceRule]
    url = reverse("admin:channels_app_sourcerule_changelist")
    response = operator_a.get(url)
    assert response.context["cl"].list_editable == ()
    form = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": rule_b.pk,
            "form-0-priority": "99", "_save": "1"}  # fmt: skip
    operator_a.post(url, form)
    rule_b.refresh_from_db()
    assert rule_b.priority != 99


# -- costs -------------------------------------------------------------------------------------


def test_operator_of_a_cannot_add_costs_to_b(operator_a, corps):
    channel_b = corps["b"][Channel]
    before = ChannelCost.objects.filter(corp=corps["corp_b"]).count()
    response = operator_a.post(
        reverse("admin:channels_app_channelcost_add"),
        {"channel": channel_b.pk, "start_date": "2026-07-01", "end_date": "2026-07-31",
         "amount": "500", "currency": "CNY"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "channel" in response.context["adminform"].form.errors
    # The CSV import page offers A only and refuses B.
    page = reverse("admin:channels_app_channel_import_costs")
    response = operator_a.get(page, {"channels": str(channel_b.pk)})
    assert response.status_code == 200
    assert response.context["selected"] == []
    template = operator_a.get(page, {"channels": str(channel_b.pk), "template": "1"})
    assert template.status_code == 200
    assert channel_b.code not in template.content.decode("utf-8-sig")
    assert list(response.context["form"].fields["corp"].queryset) == [corps["corp_a"]]
    csv = f"channel_code,start_date,end_date,amount\n{channel_b.code},2026-07-01,2026-07-31,5\n"
    upload = SimpleUploadedFile("costs.csv", csv.encode(), content_type="text/csv")
    response = operator_a.post(page, {"corp": corps["corp_b"].pk, "file": upload})
    assert "corp" in response.context["form"].errors
    assert ChannelCost.objects.filter(corp=corps["corp_b"]).count() == before


def test_operator_of_a_adds_a_cost_to_a(operator_a, corps):
    channel_a = corps["a"][Channel]
    response = operator_a.post(
        reverse("admin:channels_app_channelcost_add"),
        {"channel": channel_a.pk, "start_date": "2026-07-01", "end_date": "2026-07-31",
         "amount": "500", "currency": "CNY"},
    )  # fmt: skip
    assert response.status_code == 302
    assert ChannelCost.objects.filter(channel=channel_a, amount=500).exists()


# -- customers ---------------------------------------------------------------------------------


def test_operator_of_a_cannot_see_b_customers(operator_a, corps):
    customer_a, customer_b = corps["a"][ExternalContact], corps["b"][ExternalContact]
    url = reverse("admin:contacts_externalcontact_changelist")
    response = operator_a.get(url)
    assert {c.pk for c in response.context["cl"].result_list} == {customer_a.pk}
    response = operator_a.get(url, {"q": customer_b.external_userid})
    assert list(response.context["cl"].result_list) == []
    for query in ({"corp__id__exact": corps["corp_b"].pk}, {"corp": corps["corp_b"].pk}):
        response = operator_a.get(url, query)
        assert customer_b not in response.context["cl"].result_list
    html = operator_a.get(url).content.decode()
    assert customer_b.name not in html
    assert corps["corp_b"].name not in html  # the corp filter offers only the user's corps
    assert corps["b"][Channel].name not in html  # and the first-channel filter their channels
    change = reverse("admin:contacts_externalcontact_change", args=[customer_b.pk])
    assert operator_a.get(change).status_code == 404


def test_personal_data_page_finds_only_customers_of_the_users_corps(operator_a, admin_a, corps):
    url = reverse("admin:contacts_auditlog_pipl")
    customer_b = corps["b"][ExternalContact]
    form = {"corp": corps["corp_b"].pk, "external_userid": customer_b.external_userid}
    response = operator_a.post(url, {**form, "action": "export"})
    assert response.status_code == 200
    assert "corp" in response.context["form"].errors
    # A's admin may erase, in A only: B's customer is not found, nor erased.
    for action in ("erase", "erase_confirmed"):
        response = admin_a.post(url, {**form, "action": action})
        assert response.status_code == 200
        assert "corp" in response.context["form"].errors
    assert ExternalContact.objects.get(pk=customer_b.pk).erased_at is None
    # Erasing is for the corp's admins.
    customer_a = corps["a"][ExternalContact]
    form = {"corp": corps["corp_a"].pk, "external_userid": customer_a.external_userid}
    assert operator_a.post(url, {**form, "action": "erase_confirmed"}).status_code == 403
    assert ExternalContact.objects.get(pk=customer_a.pk).erased_at is None


def test_conversion_csv_rows_of_another_corp_are_refused(operator_a, corps):
    customer_b = corps["b"][ExternalContact]
    csv = (
        "corp_id,external_id,kind,amount,currency,occurred_at,external_userid,unionid,note\n"
        f"{corps['corp_b'].corp_id},B-1,order,99,CNY,2026-06-18 20:30:00,"
        f"{customer_b.external_userid},,\n"
    )
    upload = SimpleUploadedFile("orders.csv", csv.encode(), content_type="text/csv")
    response = operator_a.post(reverse("admin:contacts_conversionevent_import"), {"file": upload})
    assert response.status_code == 200
    assert [(e["line"], e["field"]) for e in response.context["errors"]] == [(2, "corp_id")]
    assert not ConversionEvent.objects.filter(external_id="B-1").exists()


# -- custom pages: every view of a ModelAdmin's get_urls() --------------------------------------
#
# CUSTOM_VIEWS has a line for every custom admin URL (tests/test_access_matrix_urls.py fails for
# one without): the roles of corp A that may open it, how it is asked about a corp's row or
# with a corp's data, and how corp B is refused to a role of A. The matrix asks each as A's
# admin, operator and manager, a staff account without membership and a superuser.

A_ROLES = ("admin", "operator", "manager")
WRITERS = frozenset({"admin", "operator"})
READERS = frozenset(A_ROLES)
ADMINS = frozenset({"admin"})
NOBODY: frozenset[str] = frozenset()
ROW = "row"  # a page of one row (in its URL): another corp's row is a 404
FORM = "form"  # a page with a form naming the corp: another corp is a form error, 200


@dataclass(frozen=True)
class CustomView:
    kind: str  # ROW or FORM
    roles: frozenset[str]  # the roles of A that may open it (the others: `refused`)
    url: Callable[[dict, str], str]  # about corp "a" or "b" (the URL of its row, for ROW)
    method: str = "get"  # how it is opened (a FORM page: GET, then its form sent this way)
    data: Callable[[dict, str], dict] = lambda corps, corp: {}  # what is sent about the corp
    field: str = "corp"  # FORM: the field refusing another corp
    ok: frozenset[int] = frozenset({200})  # a role that may: opening it
    refused: frozenset[int] = frozenset({403})  # a role of A that may not: opening it


def _csv(text: str, name: str = "upload.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def _name(name: str) -> Callable[[dict, str], str]:
    return lambda corps, corp: reverse(f"admin:{name}")


def _code_url(name: str, *extra: str) -> Callable[[dict, str], str]:
    return lambda corps, corp: reverse(f"admin:{name}", args=[corps[corp][LiveCode].pk, *extra])


def _costs_csv(corps: dict, corp: str) -> dict:
    channel = corps[corp][Channel]
    return {"corp": corps[f"corp_{corp}"].pk,
            "file": _csv(f"channel_code,start_date,end_date,amount\n{channel.code},2026-07-01,"
                         "2026-07-31,5\n")}  # fmt: skip


def _codes_csv(corps: dict, corp: str) -> dict:
    from contacts.models import Staff

    channel, staff = corps[corp][Channel], corps[corp][Staff]
    text = f"channel_code,name,staff\n{channel.code},新活码,{staff.userid}\n"
    return {"corp": corps[f"corp_{corp}"].pk, "file": _csv(text)}


def _conversions_csv(corps: dict, corp: str) -> dict:
    customer = corps[corp][ExternalContact]
    return {"file": _csv(
        "corp_id,external_id,kind,amount,currency,occurred_at,external_userid,unionid,note\n"
        f"{corps[f'corp_{corp}'].corp_id},M-1,order,99,CNY,2026-06-18 20:30:00,"
        f"{customer.external_userid},,\n"
    )}  # fmt: skip


def _pipl(action: str) -> Callable[[dict, str], dict]:
    return lambda corps, corp: {
        "corp": corps[f"corp_{corp}"].pk,
        "external_userid": corps[corp][ExternalContact].external_userid,
        "action": action,
    }


def _new_account(corps: dict, corp: str) -> dict:
    return {"username": f"new.member.{corp}", "password1": "a-long-passphrase-2026",
            "password2": "a-long-passphrase-2026", "corp": corps[f"corp_{corp}"].pk,
            "role": Role.OPERATOR}  # fmt: skip


def _membership_password(corps: dict, corp: str) -> str:
    """A's: the membership of A's operator (a member of A only, not the asker unless the
    operator asks); B's: the fixture's member of B."""
    if corp == "a":
        membership = CorpMembership.objects.get(corp=corps["corp_a"], user__username="op-a")
    else:
        membership = corps["b"][CorpMembership]
    return reverse("admin:wecom_corpmembership_password", args=[membership.pk])


CUSTOM_VIEWS: dict[str, CustomView] = {
    "channels_app_channel_import_costs": CustomView(
        FORM, WRITERS, _name("channels_app_channel_import_costs"), "post", _costs_csv
    ),
    "channels_app_livecode_import_csv": CustomView(
        FORM, WRITERS, _name("channels_app_livecode_import_csv"), "post", _codes_csv
    ),
    "channels_app_livecode_import_wecom": CustomView(
        FORM, WRITERS, _name("channels_app_livecode_import_wecom"), "post",
        lambda corps, corp: {"corp": corps[f"corp_{corp}"].pk},
    ),
    "channels_app_livecode_png": CustomView(ROW, READERS, _code_url("channels_app_livecode_png")),
    "channels_app_livecode_poster": CustomView(
        ROW, READERS, _code_url("channels_app_livecode_poster")
    ),
    "channels_app_livecode_status": CustomView(
        ROW, WRITERS, _code_url("channels_app_livecode_status", "archive"), "post",
        ok=frozenset({302}),
    ),
    "channels_app_referralcode_leaderboard": CustomView(
        FORM, READERS, _name("channels_app_referralcode_leaderboard"), "get",
        lambda corps, corp: {"corp": corps[f"corp_{corp}"].pk, "days": "0"},
    ),
    "contacts_taggroup_sync": CustomView(
        FORM, WRITERS, _name("contacts_taggroup_sync"), "post",
        lambda corps, corp: {"corp": corps[f"corp_{corp}"].pk},
    ),
    "contacts_conversionevent_import": CustomView(
        FORM, WRITERS, _name("contacts_conversionevent_import"), "post", _conversions_csv,
        field="corp_id",
    ),
    "contacts_auditlog_pipl": CustomView(
        FORM, WRITERS, _name("contacts_auditlog_pipl"), "post", _pipl("export")
    ),
    # A corp's admins: new member accounts, and the passwords of the accounts in their care.
    "wecom_corpmembership_account_add": CustomView(
        FORM, ADMINS, _name("wecom_corpmembership_account_add"), "post", _new_account
    ),
    "wecom_corpmembership_password": CustomView(
        ROW, ADMINS, _membership_password, refused=frozenset({403, 404}),  # 404: not readable
    ),
    # Django's own (the user admin: superusers only).
    "auth_user_password_change": CustomView(
        ROW, NOBODY,
        lambda corps, corp: reverse("admin:auth_user_password_change",
                                    args=[corps["bystander"].pk]),
    ),
}  # fmt: skip


@pytest.fixture
def clients(corps, admin_a, operator_a, manager_a, admin_client, django_user_model) -> dict:
    """The admin, operator and manager of A, a staff account without membership, a superuser."""
    return {"admin": admin_a, "operator": operator_a, "manager": manager_a,
            "nomember": login(django_user_model, "nobody"), "superuser": admin_client}  # fmt: skip


def _published_landing_codes(corps: dict) -> None:
    """Each corp's code, published as a landing code: its QR and poster need no WeCom."""
    from django.utils import timezone

    LiveCode.objects.filter(pk__in=[corps["a"][LiveCode].pk, corps["b"][LiveCode].pk]).update(
        mode=LiveCode.Mode.LANDING, status=LiveCode.Status.ACTIVE, published_at=timezone.now()
    )


def _ask(client: Client, method: str, url: str, data: dict) -> Any:
    """The request, its writes rolled back: every caller meets the same rows."""
    with transaction.atomic():
        response = getattr(client, method)(url, data)
        transaction.set_rollback(True)
    return response


def _refused_in_form(response: Any, field: str) -> bool:
    context = response.context or {}
    form = context.get("form")
    if form is not None and field in form.errors:
        return True
    return any(error.get("field") == field for error in context.get("errors") or [])


@pytest.mark.parametrize("name", sorted(CUSTOM_VIEWS))
def test_custom_admin_view_matrix(clients, corps, name):
    view = CUSTOM_VIEWS[name]
    _published_landing_codes(corps)
    before_b = corp_state(corps["corp_b"])
    for role, client in clients.items():
        where = f"{name} as {role}"
        may = role == "superuser" or role in view.roles
        # Opening it about A (a FORM page: the page; a ROW page: A's row).
        if view.kind == FORM:
            response = client.get(view.url(corps, "a"))
        else:
            response = _ask(client, view.method, view.url(corps, "a"), view.data(corps, "a"))
        if may:
            assert response.status_code in view.ok, (where, response.status_code)
        elif role == "nomember" and view.kind == ROW:
            assert response.status_code in (403, 404), where  # no row of his: not there
        elif role == "nomember":
            assert response.status_code == 403, (where, response.status_code)
        else:
            assert response.status_code in view.refused, (where, response.status_code)
        if may and view.kind == FORM:
            if role != "superuser":  # the corps offered: A's only
                corp_field = response.context["form"].fields.get("corp")
                if corp_field is not None:
                    assert list(corp_field.queryset) == [corps["corp_a"]], where
            # The form sent about A is not refused (so B's refusal below is B's).
            own = _ask(client, view.method, view.url(corps, "a"), view.data(corps, "a"))
            assert own.status_code in (200, 302), (where, own.status_code)
            assert not _refused_in_form(own, view.field), where
        if role == "superuser" or not may or view.roles == NOBODY:
            continue
        # Corp B, to a role of A: its row is not there; its corp is refused in the form.
        response = _ask(client, view.method, view.url(corps, "b"), view.data(corps, "b"))
        if view.kind == ROW:
            assert response.status_code == 404, (where, response.status_code)
        else:
            assert response.status_code == 200, (where, response.status_code)
            assert _refused_in_form(response, view.field), where
            assert corps["corp_b"].name not in response.content.decode(), where
        assert corp_state(corps["corp_b"]) == before_b, where
    # A ROW page of B to a role of A that may not open it on A either: 404 before 403.
    if view.kind == ROW and view.roles != NOBODY:
        for role in set(A_ROLES) - view.roles:
            response = _ask(clients[role], view.method, view.url(corps, "b"), view.data(corps, "b"))
            assert response.status_code == 404, (name, role, response.status_code)


def test_the_calibration_page_offers_only_the_users_corps(operator_a, manager_a, corps):
    """The calibration's add page is a custom one (a corp and a date, then a background run)."""
    url = reverse("admin:contacts_calibrationrun_add")
    response = operator_a.get(url)
    assert response.status_code == 200
    assert list(response.context["form"].fields["corp"].queryset) == [corps["corp_a"]]
    response = operator_a.post(url, {"corp": corps["corp_b"].pk})
    assert response.status_code == 200
    assert "corp" in response.context["form"].errors
    assert manager_a.get(url).status_code == 403


def test_a_manager_cannot_change_anything(manager_a, corps):
    code_a, channel_a = corps["a"][LiveCode], corps["a"][Channel]
    change = reverse("admin:channels_app_livecode_change", args=[code_a.pk])
    assert manager_a.get(change).status_code == 200
    assert manager_a.post(change, {"name": "renamed"}).status_code == 403
    assert manager_a.get(reverse("admin:channels_app_channelcost_add")).status_code == 403
    response = manager_a.get(reverse("admin:channels_app_livecode_changelist"))
    actions = {value for value, _label in response.context["action_form"].fields["action"].choices}
    assert actions == {"", "download_png_zip", "download_poster_zip"}
    _changelist_action(manager_a, "channels_app_livecode", "archive", [code_a.pk])
    delete = reverse("admin:channels_app_channel_delete", args=[channel_a.pk])
    assert manager_a.post(delete, {"post": "yes"}).status_code == 403
    code_a.refresh_from_db()
    assert code_a.status == LiveCode.Status.DRAFT
    assert Channel.objects.filter(pk=channel_a.pk).exists()


# -- choices and autocomplete ---------------------------------------------------------------------


def _autocomplete_fields() -> list[tuple[str, str, str]]:
    """(app label, model name, field) of every autocomplete field of our apps' admins and
    their inlines (the source model of an inline's field is the inline's)."""
    from django.contrib import admin

    from tests.test_access_matrix_admin import OUR_APPS

    found = set()
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in OUR_APPS:
            continue
        sources = [(model, model_admin.autocomplete_fields)]
        sources += [(inline.model, inline.autocomplete_fields) for inline in model_admin.inlines]
        for source, fields in sources:
            found |= {(source._meta.app_label, source._meta.model_name, name) for name in fields}
    return sorted(found)


@pytest.mark.parametrize(("app_label", "model", "field"), _autocomplete_fields())
def test_autocomplete_offers_nothing_of_corp_b(operator_a, manager_a, corps, app_label, model,
                                               field):  # fmt: skip
    from django.apps import apps

    target = apps.get_model(app_label, model)._meta.get_field(field).related_model
    query = {"app_label": app_label, "model_name": model, "field_name": field, "term": ""}
    response = operator_a.get(reverse("admin:autocomplete"), query)
    assert response.status_code == 200
    ids = {int(result["id"]) for result in response.json()["results"]}
    assert ids == {corps["a"][target].pk}
    # A manager writes nothing: nothing to choose.
    response = manager_a.get(reverse("admin:autocomplete"), query)
    assert response.status_code in (200, 403)
    assert response.status_code == 403 or response.json()["results"] == []


def test_view_on_site_shows_nothing_of_corp_b(operator_a, corps):
    """The admin site's view_on_site (/admin/r/<type>/<id>/) follows a row's
    get_absolute_url without the admin's scoping: none of our rows may have one."""
    from django.contrib.contenttypes.models import ContentType

    for model, row in corps["b"].items():
        content_type = ContentType.objects.get_for_model(model)
        url = reverse("admin:view_on_site", args=[content_type.pk, row.pk])
        assert operator_a.get(url).status_code == 404, model._meta.label


def test_a_users_only_corp_is_preselected_and_the_only_choice(operator_a, corps):
    response = operator_a.get(reverse("admin:channels_app_channel_add"))
    field = response.context["adminform"].form.fields["corp"]
    assert list(field.queryset) == [corps["corp_a"]]
    assert field.initial == corps["corp_a"].pk
    response = operator_a.post(
        reverse("admin:channels_app_channel_add"),
        {"corp": corps["corp_b"].pk, "name": "偷渡", "code": "sneak", "channel_type": "1",
         "costs-TOTAL_FORMS": "0", "costs-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "corp" in response.context["adminform"].form.errors
    assert not Channel.objects.filter(code="sneak").exists()


# -- corps and memberships ---------------------------------------------------------------------


def test_operators_see_their_corp_without_secrets(operator_a, corps):
    corp = corps["corp_a"]
    response = operator_a.get(reverse("admin:wecom_corp_change", args=[corp.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert corp.name in html
    for secret in (corp.secret, corp.callback_token, corp.encoding_aes_key):
        assert secret not in html
    assert "secret" not in response.context["adminform"].form.fields


def test_a_corp_admin_manages_memberships_of_own_corp_only(admin_a, corps, django_user_model):
    corp_a, corp_b = corps["corp_a"], corps["corp_b"]
    colleague = make_user(django_user_model, "colleague")
    CorpMembership.objects.create(user=colleague, corp=corp_a, role=Role.MANAGER)
    stranger = make_user(django_user_model, "stranger")  # no corp of the admin's
    root = django_user_model.objects.create_superuser("root", "r@example.cn", "pw")
    add = reverse("admin:wecom_corpmembership_add")
    form = admin_a.get(add).context["adminform"].form
    users = set(form.fields["user"].queryset)
    assert colleague in users
    assert corps["bystander"] in users  # a member of A (an operator) in the fixture
    assert {stranger, root, admin_a.user} & users == set()
    assert list(form.fields["corp"].queryset) == [corp_a]
    # Not in B, not for himself, not a superuser.
    for data in (
        {"user": colleague.pk, "corp": corp_b.pk, "role": Role.ADMIN},
        {"user": admin_a.user.pk, "corp": corp_b.pk, "role": Role.ADMIN},
        {"user": root.pk, "corp": corp_a.pk, "role": Role.MANAGER},
        {"user": stranger.pk, "corp": corp_a.pk, "role": Role.ADMIN},
    ):
        assert admin_a.post(add, data).status_code == 200
    assert not CorpMembership.objects.filter(corp=corp_b).exclude(user=corps["bystander"]).exists()
    assert not CorpMembership.objects.filter(user__in=[root, stranger]).exists()
    # The colleague's role changes; his own membership does not; B's are not there.
    membership = CorpMembership.objects.get(user=colleague)
    change = reverse("admin:wecom_corpmembership_change", args=[membership.pk])
    assert admin_a.post(change, {"role": Role.OPERATOR}).status_code == 302
    assert CorpMembership.objects.get(pk=membership.pk).role == Role.OPERATOR
    own = CorpMembership.objects.get(user=admin_a.user)
    own_url = reverse("admin:wecom_corpmembership_change", args=[own.pk])
    assert admin_a.post(own_url, {"role": Role.MANAGER}).status_code == 403
    b_membership = CorpMembership.objects.get(corp=corp_b, user=corps["bystander"])
    b_url = reverse("admin:wecom_corpmembership_change", args=[b_membership.pk])
    assert admin_a.get(b_url).status_code == 404


def test_a_corp_admin_sets_no_password_of_a_member_of_another_corp(admin_a, corps):
    """The fixture's bystander is an operator of A and of B: not in the care of A's admin."""
    bystander = corps["bystander"]
    membership = CorpMembership.objects.get(user=bystander, corp=corps["corp_a"])
    url = reverse("admin:wecom_corpmembership_password", args=[membership.pk])
    password = bystander.password
    assert admin_a.get(url).status_code == 403
    data = {"new_password1": "a-long-passphrase-2026", "new_password2": "a-long-passphrase-2026"}
    assert admin_a.post(url, data).status_code == 403
    bystander.refresh_from_db()
    assert bystander.password == password
    # Nor is a username of another corp's member taken over by a "new" account.
    url = reverse("admin:wecom_corpmembership_account_add")
    data = {"username": bystander.username, "password1": "a-long-passphrase-2026",
            "password2": "a-long-passphrase-2026", "corp": corps["corp_a"].pk,
            "role": Role.ADMIN}  # fmt: skip
    response = admin_a.post(url, data)
    assert response.status_code == 200
    assert response.context["form"].errors
    bystander.refresh_from_db()
    assert bystander.password == password
    assert CorpMembership.objects.get(pk=membership.pk).role == Role.OPERATOR


def test_a_corp_admin_cannot_reach_users_or_tokens(admin_a, corps):
    names = ["auth_user_changelist", "auth_group_changelist", "authtoken_tokenproxy_changelist",
             "django_celery_beat_periodictask_changelist"]  # fmt: skip
    for name in names:
        assert admin_a.get(reverse(f"admin:{name}")).status_code == 403, name
    url = reverse("admin:auth_user_change", args=[admin_a.user.pk])
    assert admin_a.post(url, {"is_superuser": "on"}).status_code == 403


def test_superusers_manage_memberships_on_the_user_page(admin_client, corps):
    bystander = corps["bystander"]
    response = admin_client.get(reverse("admin:auth_user_change", args=[bystander.pk]))
    assert response.status_code == 200
    assert any(
        formset.formset.model is CorpMembership
        for formset in response.context["inline_admin_formsets"]
    )


def test_a_corp_admin_changes_the_corp_but_adds_or_deletes_none(admin_a, corps):
    corp = corps["corp_a"]
    assert admin_a.get(reverse("admin:wecom_corp_add")).status_code == 403
    assert admin_a.get(reverse("admin:wecom_corp_delete", args=[corp.pk])).status_code == 403
    response = admin_a.get(reverse("admin:wecom_corp_change", args=[corp.pk]))
    assert "secret" in response.context["adminform"].form.fields


# -- personal data -------------------------------------------------------------------------------


def _customer_pages(corps: dict) -> list[str]:
    from channels_app.models import Attribution, ReferralCode, WelcomeDelivery

    customer = corps["a"][ExternalContact]
    pages = [reverse("admin:contacts_externalcontact_changelist"),
             reverse("admin:contacts_externalcontact_change", args=[customer.pk]),
             reverse("admin:contacts_externalcontact_history", args=[customer.pk])]  # fmt: skip
    for model in (Attribution, ReferralCode, WelcomeDelivery, ConversionEvent):
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages += [reverse(f"{name}_changelist"),
                  reverse(f"{name}_change", args=[corps["a"][model].pk])]  # fmt: skip
    return pages


def test_a_manager_reads_customers_without_their_personal_data(manager_a, corps):
    customer = corps["a"][ExternalContact]
    assert customer.name
    for url in _customer_pages(corps):
        response = manager_a.get(url)
        assert response.status_code == 200, url
        assert customer.name not in response.content.decode(), url
    response = manager_a.get(reverse("admin:contacts_externalcontact_changelist"))
    assert customer.external_userid in response.content.decode()  # pseudonymous: shown
    # Searching by name is no way to read names: the name is not searched.
    url = reverse("admin:contacts_externalcontact_changelist")
    assert list(manager_a.get(url, {"q": customer.name}).context["cl"].result_list) == []


def test_an_operator_reads_the_customers_names(operator_a, corps):
    customer = corps["a"][ExternalContact]
    url = reverse("admin:contacts_externalcontact_change", args=[customer.pk])
    assert customer.name in operator_a.get(url).content.decode()
    url = reverse("admin:contacts_externalcontact_changelist")
    found = operator_a.get(url, {"q": customer.name}).context["cl"].result_list
    assert list(found) == [customer]


def test_the_referral_leaderboard_names_no_one_to_a_manager(manager_a, operator_a, corps):
    from channels_app.models import Attribution

    referrer = corps["a"][ExternalContact]
    Attribution.objects.filter(corp=corps["corp_a"]).update(referrer=referrer, is_first_touch=True)
    url = reverse("admin:channels_app_referralcode_leaderboard")
    query = {"corp": corps["corp_a"].pk, "days": "0"}
    assert referrer.name in operator_a.get(url, query).content.decode()
    html = manager_a.get(url, query).content.decode()
    assert referrer.external_userid in html
    assert referrer.name not in html
