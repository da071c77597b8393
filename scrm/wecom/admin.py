from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import SetPasswordForm, SetPasswordMixin, UsernameField
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from scrm import days
from scrm.wecom import tenancy
from scrm.wecom.admin_tenancy import (
    CREDENTIALS,
    WRITE,
    CorpScopedAdmin,
    is_superuser,
    superuser_only,
)
from scrm.wecom.memberships import (
    accounts_in_care_of,
    member_account_create,
    member_password_set,
    users_manageable_by,
)
from scrm.wecom.models import ApiCall, CallbackEvent, Corp, CorpMembership, Role
from scrm.wecom.secret_lookups import lookup_names_secret
from scrm.wecom.services import callback_events_retry

SECRET_FIELDS = ("secret", "callback_token", "encoding_aes_key")


def _row_corp_zone(obj: Model) -> tzinfo:
    return days.corp_zone(obj.corp_id)


def local_time_column(
    model: type[Model],
    field: str,
    *,
    zone_of: Callable[[Model], tzinfo] = _row_corp_zone,
) -> Callable[[Model], str]:
    """A list column showing the datetime `field` (a__b follows relations) at the local time
    of the row's corp, with the zone's abbreviation, headed by the field's name and sortable
    by it. The corp's zone comes from scrm.days' table of corps, not a query per row."""
    names = field.split("__")
    target = model
    for name in names[:-1]:
        target = target._meta.get_field(name).related_model
    description = target._meta.get_field(names[-1]).verbose_name

    @admin.display(description=description, ordering=field)
    def column(obj: Model) -> str:
        value = obj
        for name in names:
            value = getattr(value, name, None)
        return days.local_display(value, zone_of(obj))

    column.__name__ = f"{field}_local"
    return column


class CorpForm(forms.ModelForm):
    """Secrets are write-only: never rendered back; left blank on edit, they stay unchanged."""

    class Meta:
        model = Corp
        fields = [
            "corp_id",
            "name",
            "secret",
            "agent_id",
            "callback_token",
            "encoding_aes_key",
            "time_zone",
            "language",
            "is_active",
        ]
        widgets = {name: forms.PasswordInput(render_value=False) for name in SECRET_FIELDS}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if "language" in self.fields:
            self.fields["language"].required = False
        if self.instance.pk:
            for name in SECRET_FIELDS:
                if name not in self.fields:  # a view-only form has none
                    continue
                self.fields[name].required = False
                self.fields[name].help_text = _("Set. Leave blank to keep the current value.")

    def clean_language(self) -> str:
        # Not posted (a script written before the field existed): the corp keeps its language.
        return self.cleaned_data.get("language") or self.instance.language or "zh-hans"

    def _post_clean(self) -> None:
        # Before the model is built from cleaned_data: blank secrets keep the stored ones.
        if self.instance.pk:
            stored = Corp.objects.get(pk=self.instance.pk)
            for name in SECRET_FIELDS:
                if not self.cleaned_data.get(name):
                    self.cleaned_data[name] = getattr(stored, name)
        super()._post_clean()


@admin.register(Corp)
class CorpAdmin(CorpScopedAdmin):
    """Members see their corps; only a corp's admins change it (its secrets are theirs only);
    adding or deleting a corp is the deployment's (superusers)."""

    corp_field = "pk"
    write_action = CREDENTIALS
    form = CorpForm
    list_display = ["corp_id", "name", "time_zone", "is_active", "callback_path",
                    local_time_column(Corp, "created_at", zone_of=days.zone)]  # fmt: skip
    search_fields = ["corp_id", "name"]
    readonly_fields = ["callback_path", "created_at"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # Never a filter on a secret: each answer would tell one more character of it. Refused
        # here too, not only by scrm.wecom.secret_lookups' middleware: Django answers 400.
        if lookup_names_secret(Corp, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_superuser(request) and super().has_delete_permission(request, obj)

    def get_fields(self, request: HttpRequest, obj: Corp | None = None) -> list:
        fields = super().get_fields(request, obj)
        if obj is not None and not self.may(request, CREDENTIALS, obj):
            fields = [name for name in fields if name not in SECRET_FIELDS]
        return fields

    @admin.display(description=_("callback URL path"))
    def callback_path(self, obj: Corp) -> str:
        return f"/wecom/callback/{obj.corp_id}/" if obj.corp_id else ""


class ReadOnlyAdmin(CorpScopedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CallbackEvent)
class CallbackEventAdmin(ReadOnlyAdmin):
    read_action = WRITE  # raw events and their errors: the operators' tools, not managers'
    list_display = [
        local_time_column(CallbackEvent, "received_at"),
        "corp",
        "change_type",
        "user_id",
        "external_user_id",
        local_time_column(CallbackEvent, "event_time"),
        "status",
        "attempts",
        "duplicates",
    ]
    list_filter = ["status", "event", "change_type", "corp"]
    search_fields = ["external_user_id", "user_id", "dedup_key"]
    list_select_related = ["corp"]
    date_hierarchy = "received_at"
    actions = ["retry"]
    fields = [
        "corp",
        "dedup_key",
        "event",
        "change_type",
        "user_id",
        "external_user_id",
        "event_time",
        "payload",
        "status",
        "attempts",
        "duplicates",
        "last_error",
        "received_at",
        "processed_at",
        "raw_body",
    ]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return self.may_write_anywhere(request)

    @admin.action(permissions=["retry"], description=_("Retry the selected events"))
    def retry(self, request: HttpRequest, queryset: QuerySet[CallbackEvent]) -> None:
        count = callback_events_retry(event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, _("%(n)d events queued again.") % {"n": count}, messages.SUCCESS)


@admin.register(ApiCall)
class ApiCallAdmin(ReadOnlyAdmin):
    read_action = WRITE
    list_display = [
        local_time_column(ApiCall, "created_at"),
        "corp",
        "method",
        "endpoint",
        "http_status",
        "errcode",
        "errmsg",
        "items_returned",
        "duration_ms",
        "attempt",
    ]
    list_filter = ["endpoint", "errcode", "http_status", "corp"]
    search_fields = ["endpoint", "errmsg"]
    list_select_related = ["corp"]
    readonly_fields = ["created_at"]
    date_hierarchy = "created_at"


# -- memberships and Django's own models -------------------------------------------------------


class MemberAccountForm(SetPasswordMixin, forms.Form):
    """A new console account, its role and its corp (one of the admin's)."""

    username = UsernameField(label=_("username"), max_length=150)
    password1, password2 = SetPasswordMixin.create_password_fields()
    corp = forms.ModelChoiceField(queryset=Corp.objects.none(), label=_("corp"))
    role = forms.ChoiceField(choices=Role.choices, label=_("role"), initial=Role.OPERATOR)

    def __init__(self, *args: Any, corps: QuerySet[Corp], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["corp"].queryset = corps
        if len(corps) == 1:
            self.fields["corp"].initial = corps[0].pk

    def clean(self) -> dict[str, Any]:
        self.validate_passwords()
        # The password validators (length, common, like the username) on the form's field.
        self.validate_password_for_user(
            get_user_model()(username=self.cleaned_data.get("username"))
        )
        return super().clean()


@admin.register(CorpMembership)
class CorpMembershipAdmin(CorpScopedAdmin):
    """A corp's admins manage the roles in their own corps, create its members' accounts and
    set the passwords of the accounts in their care (memberships.accounts_in_care_of);
    superusers manage every membership. No one but a superuser changes their own membership
    (no self-promotion, no lock-out)."""

    read_action = CREDENTIALS
    write_action = CREDENTIALS
    list_display = ["user", "corp", "role", "password_link"]
    list_filter = ["role", "corp"]
    search_fields = ["user__username", "corp__corp_id", "corp__name"]
    list_select_related = ["user", "corp"]
    fields = ["user", "corp", "role"]

    def get_readonly_fields(self, request: HttpRequest, obj: CorpMembership | None = None) -> list:
        return ["user", "corp"] if obj is not None else []

    def _own(self, request: HttpRequest, obj: CorpMembership | None) -> bool:
        return obj is not None and obj.user_id == request.user.pk and not is_superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return not self._own(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return not self._own(request, obj) and super().has_delete_permission(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user" and not is_superuser(request):
            kwargs["queryset"] = users_manageable_by(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # -- accounts: a new member, a password ---------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("new-account/", view(self.account_add_view),
                 name="wecom_corpmembership_account_add"),
            path("<int:membership_id>/password/", view(self.password_view),
                 name="wecom_corpmembership_password"),
            *super().get_urls(),
        ]  # fmt: skip

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra = {"may_add_accounts": self.may_write_anywhere(request)}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    @admin.display(description=_("password"))
    def password_link(self, obj: CorpMembership) -> str:
        url = reverse("admin:wecom_corpmembership_password", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Set the password"))

    def account_add_view(self, request: HttpRequest) -> HttpResponse:
        corps = tenancy.corps_for_user(request.user, CREDENTIALS)
        if not corps.exists():
            raise PermissionDenied
        form = MemberAccountForm(request.POST or None, corps=corps)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                user = member_account_create(
                    actor=request.user, username=data["username"], password=data["password1"],
                    corp=data["corp"], role=data["role"],
                )  # fmt: skip
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                message = _("Account %(user)s created: %(role)s of %(corp)s.") % {
                    "user": user.username,
                    "role": Role(data["role"]).label,
                    "corp": data["corp"],
                }
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:wecom_corpmembership_changelist"))
        return self._account_page(request, form, _("New member account"), _("Create"))

    def password_view(self, request: HttpRequest, membership_id: int) -> HttpResponse:
        membership = self.get_object(request, str(membership_id))  # the user's corps only
        if membership is None:
            raise Http404
        if not self.has_change_permission(request, membership):
            raise PermissionDenied  # its own, or a role that may not
        user = membership.user
        if not accounts_in_care_of(request.user).filter(pk=user.pk).exists():
            raise PermissionDenied  # also a member of a corp this admin does not administer
        form = SetPasswordForm(user, request.POST or None)
        if request.method == "POST" and form.is_valid():
            member_password_set(actor=request.user, user=user,
                                password=form.cleaned_data["new_password1"])  # fmt: skip
            self.message_user(request, _("Password of %(user)s set.") % {"user": user.username},
                              messages.SUCCESS)  # fmt: skip
            return HttpResponseRedirect(reverse("admin:wecom_corpmembership_changelist"))
        title = _("Set the password of %(user)s") % {"user": user.username}
        return self._account_page(request, form, title, _("Set the password"))

    def _account_page(self, request: HttpRequest, form: forms.Form, title: str,
                      submit_label: str) -> HttpResponse:  # fmt: skip
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title,
                   "form": form, "submit_label": submit_label}  # fmt: skip
        return TemplateResponse(request, "admin/wecom/corpmembership/account.html", context)


class CorpMembershipInline(admin.TabularInline):
    model = CorpMembership
    fields = ["corp", "role"]
    extra = 0


class MemberUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, CorpMembershipInline]


User = get_user_model()
if isinstance(admin.site._registry.get(User), UserAdmin):
    admin.site.unregister(User)
    admin.site.register(User, MemberUserAdmin)


def _django_models_superuser_only() -> None:
    """Users, groups, API tokens and periodic tasks reach across corps or grant rights: for
    superusers only, whatever model permissions a member holds."""
    import django_celery_beat.admin  # noqa: F401  (registers its models first)
    import rest_framework.authtoken.admin  # noqa: F401
    from django_celery_beat import models as beat
    from rest_framework.authtoken.models import TokenProxy

    models = [User, Group, TokenProxy, beat.PeriodicTask, beat.IntervalSchedule,
              beat.CrontabSchedule, beat.SolarSchedule, beat.ClockedSchedule]  # fmt: skip
    for model in models:
        if model in admin.site._registry:
            superuser_only(model)


_django_models_superuser_only()
