"""The admin's tenancy, case by case: an operator of corp A cannot reach corp B's live codes,
costs, customers or pages; a manager changes nothing; choices and autocomplete offer only the
user's corps; memberships are managed by each corp's admins within their corps."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from channels_app.models import Channel, ChannelCost, LiveCode
from contacts.models import ConversionEvent, ExternalContact
from scrm.wecom.models import Corp, CorpMembership, Role
from tests.test_access_matrix_admin import corp_rows, make_user

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


def test_personal_data_page_finds_only_customers_of_the_users_corps(operator_a, corps):
    url = reverse("admin:contacts_auditlog_pipl")
    customer_b = corps["b"][ExternalContact]
    form = {"corp": corps["corp_b"].pk, "external_userid": customer_b.external_userid}
    response = operator_a.post(url, {**form, "action": "export"})
    assert response.status_code == 200
    assert "corp" in response.context["form"].errors
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


# -- custom pages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("channels_app_livecode_import_csv", "post"),
        ("channels_app_livecode_import_wecom", "post"),
        ("contacts_taggroup_sync", "post"),
        ("contacts_calibrationrun_add", "post"),
        ("channels_app_referralcode_leaderboard", "get"),
    ],
)
def test_custom_pages_offer_only_the_users_corps(operator_a, corps, name, method):
    url = reverse(f"admin:{name}")
    response = operator_a.get(url)
    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.fields["corp"].queryset) == [corps["corp_a"]]
    response = getattr(operator_a, method)(url, {"corp": corps["corp_b"].pk})
    assert response.status_code == 200
    assert "corp" in response.context["form"].errors


@pytest.mark.parametrize(
    "name",
    [
        "channels_app_livecode_import_csv",
        "channels_app_livecode_import_wecom",
        "channels_app_channel_import_costs",
        "contacts_taggroup_sync",
        "contacts_calibrationrun_add",
        "contacts_conversionevent_import",
        "contacts_auditlog_pipl",
    ],
)
def test_a_manager_gets_no_writing_page(manager_a, name):
    assert manager_a.get(reverse(f"admin:{name}")).status_code == 403


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


@pytest.mark.parametrize(
    ("model", "field", "target"),
    [
        ("livecode", "channel", Channel),
        ("referralcode", "live_code", LiveCode),
        ("referralcode", "referrer", ExternalContact),
        ("channelcost", "channel", Channel),
    ],
)
def test_autocomplete_offers_nothing_of_corp_b(operator_a, corps, model, field, target):
    response = operator_a.get(
        reverse("admin:autocomplete"),
        {"app_label": "channels_app", "model_name": model, "field_name": field, "term": ""},
    )
    assert response.status_code == 200
    ids = {int(result["id"]) for result in response.json()["results"]}
    assert ids == {corps["a"][target].pk}


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
