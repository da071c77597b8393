"""Who may do what in the admin: roles x corps x every registered admin model.

Roles: the admin, operator and manager of corp A, a staff account without membership (holding
every Django model permission, which must grant nothing), and a superuser. Corps: A and B, each
with a row of every model. The models are discovered from admin.site: a model registered
without a line in RIGHTS fails here, so nothing reaches the admin unscoped.

For each model and role: the changelist (B's rows never listed), the change, history and delete
pages of B's row (404: not disclosed) and of A's row (the role's rights), the add page, a
change POST, and every action of the ModelAdmin posted on B's row (B's data unchanged).

Every action of our apps' admins has a line in ACTIONS (a new action without one fails here):
the roles of A it is offered to on A's own rows, and what it changes there. Each is posted by
A's admin, operator and manager on A's row: a role it is not for is refused, nothing changed;
a role it is for runs it. The custom admin pages (get_urls) are in tests/test_admin_tenancy.py,
and tests/test_access_matrix_urls.py fails for a URL that is in no matrix."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from rest_framework.authtoken.models import Token, TokenProxy

from scrm.wecom.admin_tenancy import CorpScopedAdmin, CorpScopedInline, corp_path_for
from scrm.wecom.models import ApiCall, CallbackEvent, Corp, CorpMembership, Role
from tests.factories import (
    CorpFactory,
    ExternalContactFactory,
    FollowRelationFactory,
    StaffFactory,
)

pytestmark = pytest.mark.django_db

ROLES = ["admin", "operator", "manager", "mixed", "nomember", "superuser"]

# Rights per model and role: v(iew) a(dd) c(hange) d(elete), on corp A's rows (and for the
# superuser on every corp's). Models without a corp (Django's own) are superuser-only. "mixed"
# is an operator of A who is a manager of B: an operator's rights on A, a manager's on B.
FULL = {"admin": "vacd", "operator": "vacd", "manager": "v", "nomember": "", "superuser": "vacd"}
READ_ONLY = {"admin": "v", "operator": "v", "manager": "v", "nomember": "", "superuser": "v"}
OPS_LOG = {"admin": "v", "operator": "v", "manager": "", "nomember": "", "superuser": "v"}
VIEW_DELETE = {"admin": "vd", "operator": "vd", "manager": "v", "nomember": "", "superuser": "vd"}
SUPERUSER_ONLY = {"admin": "", "operator": "", "manager": "", "nomember": "", "superuser": "vacd"}
RIGHTS: dict[str, dict[str, str]] = {
    "wecom.Corp": {"admin": "vc", "operator": "v", "manager": "v", "nomember": "",
                   "superuser": "vacd"},
    "wecom.CorpMembership": {"admin": "vacd", "operator": "", "manager": "", "nomember": "",
                             "superuser": "vacd"},
    "wecom.CallbackEvent": OPS_LOG,
    "wecom.ApiCall": OPS_LOG,
    "contacts.AuditLog": OPS_LOG,
    "contacts.Staff": FULL,
    "contacts.ExternalContact": {"admin": "vcd", "operator": "vcd", "manager": "v",
                                 "nomember": "", "superuser": "vcd"},
    "contacts.TagGroup": FULL,
    "contacts.Tag": FULL,
    "contacts.BatchTagJob": VIEW_DELETE,
    "contacts.ConversionEvent": VIEW_DELETE,
    "contacts.CalibrationRun": {"admin": "va", "operator": "va", "manager": "v", "nomember": "",
                                "superuser": "va"},
    "channels_app.Channel": FULL,
    "channels_app.ChannelCost": FULL,
    "channels_app.LiveCode": FULL,
    "channels_app.Scan": READ_ONLY,
    "channels_app.Attribution": READ_ONLY,
    "channels_app.DailyCounter": READ_ONLY,
    "channels_app.ReferralCode": {"admin": "vad", "operator": "vad", "manager": "v",
                                  "nomember": "", "superuser": "vad"},
    "channels_app.SourceRule": FULL,
    "channels_app.WelcomeDelivery": VIEW_DELETE,
    "channels_app.GroupJoinWay": FULL,
    "channels_app.GroupMemberJoin": VIEW_DELETE,
    "analytics.DecisionSettings": FULL,
    "analytics.SurgeAlert": READ_ONLY,
    "analytics.AnomalyAck": READ_ONLY,
    "auth.User": SUPERUSER_ONLY,
    "auth.Group": SUPERUSER_ONLY,
    "authtoken.TokenProxy": SUPERUSER_ONLY,
    "django_celery_beat.PeriodicTask": SUPERUSER_ONLY,
    "django_celery_beat.IntervalSchedule": SUPERUSER_ONLY,
    "django_celery_beat.CrontabSchedule": SUPERUSER_ONLY,
    "django_celery_beat.SolarSchedule": SUPERUSER_ONLY,
    "django_celery_beat.ClockedSchedule": SUPERUSER_ONLY,
}  # fmt: skip

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)
OUR_APPS = {"wecom", "contacts", "channels_app", "analytics"}


def _url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


# -- the world: two corps with a row of every model ---------------------------------------------


def corp_rows(corp: Corp, bystander: Any) -> dict[type[Model], Model]:
    """One row of every corp model of the admin in `corp`, built directly (their flows have
    their own tests); nothing reaches WeCom."""
    from analytics.models import AnomalyAck, DecisionSettings, SurgeAlert
    from channels_app import models as ch
    from channels_app.services.live_codes import live_code_create
    from contacts import models as co

    n = corp.pk
    staff = StaffFactory(corp=corp)
    customer = ExternalContactFactory(corp=corp)
    relation = FollowRelationFactory(external_contact=customer, staff=staff)
    now = timezone.now()
    channel = ch.Channel.objects.create(corp=corp, name=f"朋友圈广告 {n}", code=f"pyq_{n}")
    code = live_code_create(corp=corp, channel=channel, name=f"618 海报 {n}", slug=f"code-{n}",
                            pool=[{"staff": staff, "daily_cap": 10}])  # fmt: skip
    scan = ch.Scan.objects.create(corp=corp, live_code=code, device="mobile", staff=staff)
    attribution = ch.Attribution.objects.get(follow_relation=relation)
    group = co.TagGroup.objects.create(corp=corp, group_id=f"etg{n}", name=f"来源 {n}")
    join_way = ch.GroupJoinWay.objects.create(corp=corp, channel=channel, name=f"福利群 {n}",
                                              chat_ids=[f"wr{n}"])  # fmt: skip
    rows: list[Model] = [
        corp,
        CorpMembership.objects.create(user=bystander, corp=corp, role=Role.OPERATOR),
        CallbackEvent.objects.create(
            corp=corp, dedup_key=f"key-{n}", event="change_external_contact",
            change_type="add_external_contact", external_user_id=customer.external_userid,
            event_time=now, status=CallbackEvent.Status.FAILED, last_error="boom",
        ),
        ApiCall.objects.create(corp=corp, endpoint="externalcontact/get", method="GET",
                               duration_ms=1),
        staff,
        customer,
        group,
        co.Tag.objects.create(corp=corp, group=group, tag_id=f"et{n}", name=f"老带新 {n}"),
        co.BatchTagJob.objects.create(corp=corp, tag_ids=[f"et{n}"], relation_ids=[relation.pk],
                                      total=1),
        co.ConversionEvent.objects.create(corp=corp, external_id=f"o{n}", kind="order",
                                          amount=199, occurred_at=now, external_contact=customer),
        co.AuditLog.objects.create(corp=corp, actor_label="matrix", action="export",
                                   target=customer.external_userid),
        co.CalibrationRun.objects.create(corp=corp, since=dt.date(2026, 6, 1), status="done"),
        channel,
        ch.ChannelCost.objects.create(corp=corp, channel=channel, start_date=dt.date(2026, 6, 1),
                                      end_date=dt.date(2026, 6, 30), amount=1000),
        code,
        scan,
        attribution,
        ch.DailyCounter.objects.create(corp=corp, live_code=code, staff=staff,
                                       day=dt.date(2026, 6, 1), assigned=1, added=1),
        ch.ReferralCode.objects.create(corp=corp, live_code=code, referrer=customer,
                                       token=f"ref{n}"),
        ch.SourceRule.objects.create(corp=corp, name=f"名片分享 {n}", add_way=3),
        ch.WelcomeDelivery.objects.create(corp=corp, follow_relation=relation,
                                          added_at=relation.created_at, outcome="sent"),
        join_way,
        ch.GroupMemberJoin.objects.create(corp=corp, chat_id=f"wr{n}", member_id=f"wm{n}",
                                          join_way=join_way, joined_at=now),
        DecisionSettings.objects.create(corp=corp),
        SurgeAlert.objects.create(corp=corp, live_code=code, metric="adds", started_at=now,
                                  scans=0, scans_usual=0, adds=25, adds_usual=2, peak_scans=0,
                                  peak_adds=25),
        AnomalyAck.objects.create(corp=corp, kind="callback_failed", key=f"failed:{n}"),
    ]  # fmt: skip
    return {type(row): row for row in rows}


def global_rows(bystander: Any) -> dict[type[Model], Model]:
    interval = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    token = Token.objects.create(user=bystander)
    rows: list[Model] = [
        bystander,
        Group.objects.create(name="运营"),
        TokenProxy.objects.get(pk=token.pk),
        interval,
        CrontabSchedule.objects.create(minute="0", hour="3"),
        SolarSchedule.objects.create(event="sunrise", latitude=31.23, longitude=121.47),
        ClockedSchedule.objects.create(clocked_time=timezone.now() + dt.timedelta(days=1)),
        PeriodicTask.objects.create(name="matrix", task="scrm.tasks.x", interval=interval),
    ]
    return {type(row): row for row in rows}


def make_user(django_user_model: Any, name: str, corp: Corp | None = None, role: str = "") -> Any:
    user = django_user_model.objects.create_user(username=name, password="pw", is_staff=True)
    if corp is not None:
        CorpMembership.objects.create(user=user, corp=corp, role=role)
    return user


@pytest.fixture
def world(django_user_model) -> dict[str, Any]:
    corp_a, corp_b = CorpFactory(name="甲企业"), CorpFactory(name="乙企业")
    bystander = make_user(django_user_model, "bystander")
    users = {
        "admin": make_user(django_user_model, "admin-a", corp_a, Role.ADMIN),
        "operator": make_user(django_user_model, "operator-a", corp_a, Role.OPERATOR),
        "manager": make_user(django_user_model, "manager-a", corp_a, Role.MANAGER),
        "mixed": make_user(django_user_model, "mixed", corp_a, Role.OPERATOR),
        "nomember": make_user(django_user_model, "nomember"),
        "superuser": django_user_model.objects.create_superuser("root", "r@example.cn", "pw"),
    }
    CorpMembership.objects.create(user=users["mixed"], corp=corp_b, role=Role.MANAGER)
    # Django's model permissions grant nothing without a membership (and are not needed).
    users["nomember"].user_permissions.set(Permission.objects.all())
    return {
        "a": corp_rows(corp_a, bystander),
        "b": corp_rows(corp_b, bystander),
        "global": global_rows(bystander),
        "users": users,
        "corp_a": corp_a,
        "corp_b": corp_b,
    }


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def corp_state(corp: Corp) -> dict[str, list]:
    """Every row of `corp`, as values: an action refused (or on another corp's rows) must leave
    them as they were."""
    from django.apps import apps

    state: dict[str, list] = {"corp": list(Corp.objects.filter(pk=corp.pk).values())}
    for model in apps.get_models():
        if model._meta.app_label in OUR_APPS and corp_path_for(model) == "corp":
            rows = model._default_manager.filter(corp=corp).order_by("pk").values()
            state[model._meta.label] = list(rows)
    return state


def assert_no_choice_of(response: Any, corp_b: Corp, where: str) -> None:
    """No choice of the page's forms (its own and its inlines') belongs to corp B."""
    from django.forms import ModelChoiceField

    adminform = response.context.get("adminform")
    forms = [adminform.form if adminform else response.context["form"]]  # or a custom page's
    for inline in response.context.get("inline_admin_formsets", []):
        forms += [*inline.formset.forms, inline.formset.empty_form]
    for form in forms:
        for name, field in form.fields.items():
            # An inline row's own id is looked up among the parent's rows, not these choices.
            if (
                not isinstance(field, ModelChoiceField)
                or name == field.queryset.model._meta.pk.name
            ):
                continue
            path = corp_path_for(field.queryset.model)
            if path is not None:
                in_b = field.queryset.filter(**{path: corp_b.pk}).exists()
                assert not in_b, (where, name)


def listed(response: Any) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


# -- the matrix ---------------------------------------------------------------------------------


def test_every_registered_model_has_its_rights_and_a_row():
    labels = {model._meta.label for model in REGISTERED}
    assert labels - set(RIGHTS) == set(), "add the new admin model's rights to RIGHTS"
    assert set(RIGHTS) - labels == set()


def test_every_admin_of_our_apps_is_corp_scoped():
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in OUR_APPS:
            continue
        assert isinstance(model_admin, CorpScopedAdmin), model._meta.label
        for inline in model_admin.inlines:
            assert issubclass(inline, CorpScopedInline), (model._meta.label, inline)


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_access_matrix(world, rf, model):
    rights_of = {**RIGHTS[model._meta.label]}
    rights_of["mixed"] = rights_of["operator"]
    model_admin = admin.site._registry[model]
    corp_model = model in world["a"]
    if corp_model:
        row_a, row_b = world["a"][model], world["b"][model]
    else:
        assert model in world["global"], f"add a {model._meta.label} row to global_rows"
        row_a, row_b = world["global"][model], None
    superuser_request = rf.get("/")
    superuser_request.user = world["users"]["superuser"]
    actions = list(model_admin.get_actions(superuser_request))

    for role in ROLES:
        rights, client = rights_of[role], client_for(world["users"][role])
        where = f"{model._meta.label} as {role}"
        changelist = client.get(_url(model, "changelist"))
        if "v" in rights:
            assert changelist.status_code == 200, where
            shown = listed(changelist)
            assert row_a.pk in shown, where
            if row_b is not None:
                sees_b = role == "superuser" or (role == "mixed" and "v" in rights_of["manager"])
                assert (row_b.pk in shown) == sees_b, where
        else:
            assert changelist.status_code == 403, where

        # A's row (the only one, for Django's own models).
        expected = 200 if "v" in rights else 403
        assert client.get(_url(model, "change", row_a.pk)).status_code == expected, where
        assert client.get(_url(model, "history", row_a.pk)).status_code == expected, where
        expected = 200 if "d" in rights else 403
        assert client.get(_url(model, "delete", row_a.pk)).status_code == expected, where
        expected = 200 if "a" in rights else 403
        added = client.get(_url(model, "add"))
        assert added.status_code == expected, where
        if "a" in rights and role != "superuser" and corp_model:
            assert_no_choice_of(added, world["corp_b"], where)
        if "c" in rights and role != "superuser" and corp_model:
            assert_no_choice_of(client.get(_url(model, "change", row_a.pk)), world["corp_b"], where)
        posted = client.post(_url(model, "change", row_a.pk), {})
        if "c" in rights:
            assert posted.status_code in (200, 302), where  # a form with errors, or saved
        else:
            assert posted.status_code == 403, where

        if row_b is None or role == "superuser":
            continue
        before = corp_state(world["corp_b"])
        if role == "mixed" and "v" in rights_of["manager"]:
            # B's row, readable only: shown, never written.
            for view in ("change", "history"):
                assert client.get(_url(model, view, row_b.pk)).status_code == 200, (where, view)
            assert client.get(_url(model, "delete", row_b.pk)).status_code == 403, where
            assert client.post(_url(model, "change", row_b.pk), {}).status_code == 403, where
            deleted = client.post(_url(model, "delete", row_b.pk), {"post": "yes"})
            assert deleted.status_code == 403, where
        else:
            # B's row: not there, a 404 (for a model the role may not see at all, Django's 403
            # comes first on some pages: the same for every id, existing or not).
            hidden = (404,) if "v" in rights else (403, 404)
            for view in ("change", "history", "delete"):
                response = client.get(_url(model, view, row_b.pk))
                assert response.status_code in hidden, (where, view)
            assert client.post(_url(model, "change", row_b.pk), {}).status_code in hidden, where
            deleted = client.post(_url(model, "delete", row_b.pk), {"post": "yes"})
            assert deleted.status_code in hidden, where
        for action in actions:
            response = client.post(
                _url(model, "changelist"),
                {"action": action, "_selected_action": [row_b.pk], "post": "yes", "apply": "1",
                 "index": "0"},
            )  # fmt: skip
            assert response.status_code in (200, 302, 403), (where, action)
            assert response.get("Content-Type", "").startswith("text/html") or (
                response.status_code == 302
            ), (where, action)
        assert corp_state(world["corp_b"]) == before, where


# -- every action, on the role's own corp's rows ------------------------------------------------

A_ROLES = ("admin", "operator", "manager")
WRITERS = frozenset({"admin", "operator"})
READERS = frozenset(A_ROLES)


@dataclass(frozen=True)
class Action:
    """What an action does for the roles of corp A on A's rows."""

    roles: frozenset[str]  # the roles of A offered the action (the others are refused)
    changes: str | None  # the model whose rows of A it changes when run; None: it answers only
    # (a page, a download, a redirect, or WeCom's refusal: no WeCom for the factory's corps)
    row: Callable[[dict], Model] | None = None  # the row to select (default: A's row of the
    # model), made or set up inside the request's rolled-back transaction
    data: Callable[[dict], dict] | None = None  # the action's own fields


def _roles_with(label: str, right: str) -> frozenset[str]:
    return frozenset(role for role in A_ROLES if right in RIGHTS[label][role])


def _spare_channel(world: dict) -> Model:
    from channels_app.models import Channel

    return Channel.objects.create(corp=world["corp_a"], name="备用渠道", code="spare_a")


def _spare_code(world: dict) -> Model:
    """A code without scans, counters or attributions (their admins are read-only: Django's
    delete would refuse a code with them, whoever asks)."""
    from channels_app.models import Channel, LiveCode
    from channels_app.services.live_codes import live_code_create

    channel = world["a"][Channel]
    assert isinstance(channel, Channel)
    code = live_code_create(corp=world["corp_a"], channel=channel, name="备用活码", slug="spare-a")
    assert isinstance(code, LiveCode)
    return code


def _published_landing_code(world: dict) -> Model:
    """A's code as a published landing code: its QR and poster are made without WeCom."""
    from channels_app.models import LiveCode

    code = world["a"][LiveCode]
    LiveCode.objects.filter(pk=code.pk).update(
        mode=LiveCode.Mode.LANDING, status=LiveCode.Status.ACTIVE, published_at=timezone.now()
    )
    return code


def _active_code(world: dict) -> Model:
    from channels_app.models import LiveCode

    code = world["a"][LiveCode]
    LiveCode.objects.filter(pk=code.pk).update(status=LiveCode.Status.ACTIVE)
    return code


def _deletes(label: str, **overrides: Any) -> Action:
    """Django's delete_selected: for the roles that may delete the model's rows."""
    return Action(**{"roles": _roles_with(label, "d"), "changes": label, **overrides})


OUR_LABELS = sorted(label for label in RIGHTS if label.split(".")[0] in OUR_APPS)
ACTIONS: dict[tuple[str, str], Action] = {
    **{(label, "delete_selected"): _deletes(label) for label in OUR_LABELS},
    # Rows with dependants of read-only admins: a spare row, deletable.
    ("channels_app.Channel", "delete_selected"): _deletes(
        "channels_app.Channel", row=_spare_channel
    ),
    ("channels_app.LiveCode", "delete_selected"): _deletes(
        "channels_app.LiveCode", row=_spare_code
    ),
    ("contacts.ExternalContact", "delete_selected"): _deletes(
        "contacts.ExternalContact",
        row=lambda world: ExternalContactFactory(corp=world["corp_a"]),
    ),
    ("contacts.Staff", "delete_selected"): _deletes(
        "contacts.Staff", row=lambda world: StaffFactory(corp=world["corp_a"])
    ),
    # WeCom first: the factory's corp is unknown to WeCom, which refuses; nothing is deleted.
    ("contacts.Tag", "delete_selected"): _deletes("contacts.Tag", changes=None),
    ("contacts.TagGroup", "delete_selected"): _deletes("contacts.TagGroup", changes=None),
    # The actions of our own.
    ("channels_app.Channel", "import_costs"): Action(WRITERS, None),  # to the import page
    ("channels_app.LiveCode", "publish"): Action(WRITERS, None),  # WeCom refuses
    ("channels_app.LiveCode", "pause"): Action(WRITERS, "channels_app.LiveCode", row=_active_code),
    ("channels_app.LiveCode", "archive"): Action(WRITERS, "channels_app.LiveCode"),
    ("channels_app.LiveCode", "download_png_zip"): Action(
        READERS, None, row=_published_landing_code
    ),
    ("channels_app.LiveCode", "download_poster_zip"): Action(
        READERS, None, row=_published_landing_code
    ),
    ("channels_app.GroupJoinWay", "publish"): Action(WRITERS, None),  # WeCom refuses
    ("contacts.ExternalContact", "batch_tag"): Action(
        WRITERS,
        "contacts.BatchTagJob",
        data=lambda world: {"apply": "1", "add": "1", "tags": [_tag_id(world)]},
    ),
    ("contacts.BatchTagJob", "resume"): Action(WRITERS, None),  # queued on commit
    ("wecom.CallbackEvent", "retry"): Action(WRITERS, "wecom.CallbackEvent"),
}


def _tag_id(world: dict) -> str:
    from contacts.models import Tag

    tag = world["a"][Tag]
    assert isinstance(tag, Tag)
    return tag.tag_id


def test_every_action_has_its_line():
    # Every action the admins declare (the site's and their own), whoever may run it.
    found = {
        (model._meta.label, name)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in OUR_APPS
        for _func, name, _description in model_admin._get_base_actions()
    }
    assert found - set(ACTIONS) == set(), "add the new admin action's line to ACTIONS"
    assert set(ACTIONS) - found == set(), "lines in ACTIONS for actions no longer there"


def _offered(client: Client, model: type[Model]) -> set[str]:
    response = client.get(_url(model, "changelist"))
    if response.status_code != 200:
        return set()
    form = response.context.get("action_form")
    choices = form.fields["action"].choices if form is not None else []
    return {value for value, _label in choices if value}


def _refusals() -> set[str]:
    """Django's "No action selected." (what a POST of an action not offered gets), in every
    language of the site."""
    texts = set()
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            texts.add(translation.gettext("No action selected."))
    return texts


def _refused(response: Any) -> bool:
    """Whether the action was refused: a 403; the plain changelist again (no action at all for
    this user); or back to the changelist with only Django's "No action selected."."""
    if response.status_code == 403:
        return True
    said = {str(message) for message in messages.get_messages(response.wsgi_request)}
    if response.status_code == 200:
        return "cl" in (response.context or {}) and not said
    return response.status_code == 302 and bool(said) and said <= _refusals()


@pytest.mark.parametrize(("label", "name"), sorted(ACTIONS), ids=lambda value: value)
def test_actions_on_own_corp_rows(world, label, name):
    """A's admin, operator and manager post the action on a row of A: offered to and run for
    the roles in its line, refused for the others with nothing changed in A."""
    from django.apps import apps

    action, model = ACTIONS[(label, name)], apps.get_model(label)
    for role in A_ROLES:
        client, where = client_for(world["users"][role]), f"{label}.{name} as {role} of A"
        assert (name in _offered(client, model)) == (role in action.roles), where
        with transaction.atomic():  # each role meets the same rows
            row = action.row(world) if action.row else world["a"][model]
            before = corp_state(world["corp_a"])
            extra = action.data(world) if action.data else {}
            response = client.post(
                _url(model, "changelist"),
                {"action": name, "_selected_action": [row.pk], "post": "yes", "index": "0",
                 **extra},
            )  # fmt: skip
            after = corp_state(world["corp_a"])
            transaction.set_rollback(True)
        if role in action.roles:
            assert not _refused(response), (where, response.status_code)
            if action.changes is not None:
                assert after[action.changes] != before[action.changes], where
        else:
            assert _refused(response), (where, response.status_code)
            assert after == before, where
