"""The admin's tenancy: every ModelAdmin and inline of our apps is built on these bases, so what
a user sees and may do in the admin follows scrm/wecom/tenancy.py.

The rule (one, for every model):
- Superusers (the deployment's operators) keep Django's behaviour: every corp, every right.
- Everyone else acts through their corp memberships only. The role in a row's corp grants the
  rights; Django's per-model permissions are neither needed nor enough (a staff account with
  model permissions and no membership sees nothing), so there is one place to grant access.
  Logging into the admin still needs `is_staff` (Django's site check).
- A model admin names the action needed to read its rows (`read_action`, READ by default: every
  role) and to write them (`write_action`, WRITE by default: admins and operators; CREDENTIALS
  for a corp's credentials and memberships: admins only).
- Rows of other corps are not there: querysets are scoped, so their change, delete and history
  pages are a 404, never a 403 (their existence is not disclosed). A readable row that may not
  be written is shown read-only, and a write to it is a 403.
- Choices (foreign keys, many-to-many, autocomplete) offer only rows of corps where the user
  may write; a saved object must belong to such a corp. Actions act only on selected rows the
  user may write (a "view" action: may read), whatever the request selected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.contrib.admin.options import TO_FIELD_VAR
from django.contrib.admin.utils import get_fields_from_path, unquote
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from scrm import days
from scrm.wecom import tenancy
from scrm.wecom.models import Corp
from scrm.wecom.tenancy import CREDENTIALS, READ, WRITE

__all__ = [
    "CREDENTIALS",
    "READ",
    "WRITE",
    "CorpScopedAdmin",
    "CorpScopedInline",
    "SuperuserOnlyAdmin",
    "corp_path_for",
    "corp_pk_of",
]


def is_superuser(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_superuser)


def corp_path_for(model: type[Model]) -> str | None:
    """The lookup path from `model` to its corp ("pk" for Corp itself), None when it has none."""
    if issubclass(model, Corp):
        return "pk"
    model_admin = admin.site._registry.get(model)
    if isinstance(model_admin, CorpScopedAdmin):
        return model_admin.corp_field
    try:
        field = model._meta.get_field("corp")
    except FieldDoesNotExist:
        return None
    return "corp" if field.is_relation and field.related_model is Corp else None


def corp_pk_of(obj: Model, path: str | None = None) -> int | None:
    """The pk of `obj`'s corp, following `path` (default: the model's own) by attributes, so an
    unsaved object's corp is found too. None when it is not (yet) known."""
    path = path or corp_path_for(type(obj))
    if path is None:
        return None
    if path == "pk":
        return obj.pk
    *through, last = path.split("__")
    target: Any = obj
    for name in through:
        target = getattr(target, name, None)
        if target is None:
            return None
    return getattr(target, f"{last}_id", None)


_PSEUDONYMOUS: ContextVar[bool] = ContextVar("scrm_admin_pseudonymous", default=False)


class _Pseudonymous:
    """A row shown by its id where its name would show a customer's personal data."""

    def __init__(self, obj: Model) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)

    def __str__(self) -> str:
        return f"{self._obj._meta.verbose_name} #{self._obj.pk}"


def _scoped_choices(queryset: QuerySet, request: HttpRequest, action: str) -> QuerySet:
    """`queryset` (of any model) narrowed to rows of corps where the user may do `action`."""
    path = corp_path_for(queryset.model)
    if path is None:
        return queryset
    return tenancy.scope(queryset, request.user, action, field=path)


class CorpScopedChoices:
    """Foreign-key and many-to-many choices of the forms: rows of corps where the user may write;
    the corp itself preselected when there is only one."""

    write_action: str = WRITE

    def _limit(self, db_field: Any, request: HttpRequest, kwargs: dict[str, Any]) -> None:
        queryset = kwargs.get("queryset")
        if queryset is None:
            queryset = self.get_field_queryset(kwargs.get("using"), db_field, request)  # type: ignore[attr-defined]
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.all()
        queryset = _scoped_choices(queryset, request, self.write_action)
        kwargs["queryset"] = queryset
        if db_field.remote_field.model is Corp and not db_field.many_to_many:
            corps = list(queryset.values_list("pk", flat=True)[:2])
            if len(corps) == 1:
                kwargs.setdefault("initial", corps[0])

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        self._limit(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        self._limit(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class CorpScopedAdmin(CorpScopedChoices, admin.ModelAdmin):
    """A ModelAdmin of a corp's rows (see the module's docstring for the rule)."""

    corp_field: str = "corp"  # the path to the row's corp, e.g. "live_code__corp"
    read_action: str = READ
    write_action: str = WRITE
    # A customer's personal data (names, unionids, remarks; "__str__" when the row's name
    # shows one, and relations to customers): only for those who may write in the row's corp.
    # Managers read figures and pseudonymous ids (external_userid), as the reports do.
    personal_fields: tuple[str, ...] = ()

    # -- who may do what -----------------------------------------------------------------------

    def corp_pk(self, obj: Model) -> int | None:
        return corp_pk_of(obj, self.corp_field)

    def may(self, request: HttpRequest, action: str, obj: Model | None = None) -> bool:
        """Whether the user may do `action` on `obj` (None: in at least one corp)."""
        if obj is None:
            return tenancy.may_anywhere(request.user, action)
        return tenancy.may(request.user, self.corp_pk(obj), action)

    def has_module_permission(self, request: HttpRequest) -> bool:
        if is_superuser(request):
            return super().has_module_permission(request)
        return self.may(request, self.read_action)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_superuser(request):
            return super().has_view_permission(request, obj)
        return self.may(request, self.read_action, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        if is_superuser(request):
            return super().has_add_permission(request)
        return self.may(request, self.write_action)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_superuser(request):
            return super().has_change_permission(request, obj)
        return self.may(request, self.write_action, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_superuser(request):
            return super().has_delete_permission(request, obj)
        return self.may(request, self.write_action, obj)

    def may_write_anywhere(self, request: HttpRequest) -> bool:
        """For custom pages and actions that write (imports, syncs, retries)."""
        return self.may(request, self.write_action)

    # -- personal data -------------------------------------------------------------------------

    def hides_personal_data(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Whether personal fields are hidden from this user (on `obj`, or on the list: hidden
        when any corp of the list is read-only to the user)."""
        if not self.personal_fields or is_superuser(request):
            return False
        if obj is not None:
            return not tenancy.may(request.user, self.corp_pk(obj), WRITE)
        readable = tenancy.corp_ids_for_user(request.user, self.read_action) or set()
        writable = tenancy.corp_ids_for_user(request.user, WRITE) or set()
        return not readable <= writable

    def _personal(self, name: Any) -> bool:
        name = getattr(name, "__name__", name)
        if not isinstance(name, str):
            return False
        parts = name.split("__")
        return name in self.personal_fields or any(part in self.personal_fields for part in parts)

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        if self.hides_personal_data(request):
            columns = [name for name in columns if not self._personal(name)]
        return columns

    def get_search_fields(self, request: HttpRequest) -> Any:
        fields = super().get_search_fields(request)
        if self.hides_personal_data(request):  # a search by name is a way to read names
            fields = [name for name in fields if not self._personal(name.lstrip("^=@"))]
        return fields

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.visible_fields(request, obj, super().get_fields(request, obj))

    def visible_fields(self, request: HttpRequest, obj: Model | None, fields: Any) -> list:
        """`fields` less the personal ones this user may not see (for get_fields overrides)."""
        if self.hides_personal_data(request, obj):
            return [name for name in fields if not self._personal(name)]
        return list(fields)

    def get_inlines(self, request: HttpRequest, obj: Model | None) -> Any:
        inlines = super().get_inlines(request, obj)
        if self.hides_personal_data(request, obj):
            inlines = [inline for inline in inlines if not getattr(inline, "personal", False)]
        return inlines

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        zone = self._users_time_zone(request)
        if zone is None:
            return self._changelist_view(request, extra_context)
        # The user's corps keep one zone: the date hierarchy and date filters count its days.
        with timezone.override(zone):
            response = self._changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()
        return response

    def _users_time_zone(self, request: HttpRequest) -> tzinfo | None:
        """The time zone of every corp the user may read, when they keep one (None: several)."""
        corps = tenancy.corps_for_user(request.user, READ)
        zones = list(corps.order_by().values_list("time_zone", flat=True).distinct()[:2])
        return ZoneInfo(zones[0]) if len(zones) == 1 else None

    def _changelist_view(self, request: HttpRequest, extra_context: dict | None) -> Any:
        if not self.hides_personal_data(request):
            return super().changelist_view(request, extra_context)
        # The row checkboxes are labelled with each row's name: rendered here, pseudonymous.
        token = _PSEUDONYMOUS.set(True)
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            _PSEUDONYMOUS.reset(token)

    def action_checkbox(self, obj: Model) -> str:
        if _PSEUDONYMOUS.get():
            obj = _Pseudonymous(obj)
        return super().action_checkbox(obj)

    def _pseudonymous_context(self, request: HttpRequest, object_id: str | None) -> dict:
        """The page's title and breadcrumbs name the row by its id when its name is personal."""
        if object_id is None or "__str__" not in self.personal_fields:
            return {}
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.hides_personal_data(request, obj):
            return {}
        return {"original": _Pseudonymous(obj), "object": _Pseudonymous(obj),
                "subtitle": str(_Pseudonymous(obj))}  # fmt: skip

    # -- what is there -------------------------------------------------------------------------

    def scoped(
        self, request: HttpRequest, queryset: QuerySet, action: str | None = None
    ) -> QuerySet:
        """`queryset` narrowed to the rows of corps where the user may do `action` (default:
        read). Admins that build their queryset without super().get_queryset() call this."""
        field = self.corp_field
        return tenancy.scope(queryset, request.user, action or self.read_action, field=field)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scoped(request, super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> Any:
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "autocomplete":
            # Autocomplete feeds a form that writes: offer what may be chosen.
            queryset = self.scoped(request, queryset, WRITE)
        return queryset, may_have_duplicates

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str):
        # Django redirects to the index with "doesn't exist"; another corp's row is a plain 404.
        raise Http404

    def _404_unless_here(self, request: HttpRequest, object_id: str | None) -> None:
        """Another corp's row is a 404 before any permission check (Django checks the change
        and delete rights first, without the row). A user who may not see this model at all
        gets Django's 403 for any id, existing or not."""
        if object_id is None or not self.has_view_or_change_permission(request):
            return
        to_field = request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR))
        if self.get_object(request, unquote(object_id), to_field) is None:
            raise Http404

    def _corp_time_zone(self, request: HttpRequest, object_id: str | None) -> tzinfo | None:
        """The time zone of the row's corp (None: no row, or a row without a corp)."""
        if object_id is None or not self.has_view_or_change_permission(request):
            return None
        to_field = request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR))
        obj = self.get_object(request, unquote(object_id), to_field)
        corp_pk = corp_pk_of(obj, self.corp_field) if obj is not None else None
        return days.corp_zone(corp_pk) if corp_pk is not None else None

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> Any:
        self._404_unless_here(request, object_id)
        extra_context = {**(extra_context or {}), **self._pseudonymous_context(request, object_id)}
        if object_id is None:  # a new row: the zone of the user's corps, when they keep one
            zone = self._users_time_zone(request)
        else:
            zone = self._corp_time_zone(request, object_id)
        if zone is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        # A row's times (read-only fields, inlines, date inputs both ways) are its corp's local
        # times, the zone named once above the form; not settings.TIME_ZONE.
        extra_context["corp_time_zone"] = str(zone)
        with timezone.override(zone):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()
        return response

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> Any:
        self._404_unless_here(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> Any:
        if not self.has_view_or_change_permission(request):  # as the change page: 403 first
            raise PermissionDenied
        pseudonymous = self._pseudonymous_context(request, object_id)
        if pseudonymous:
            title = _("Change history: %s") % pseudonymous["object"]
            pseudonymous = {"object": pseudonymous["object"], "title": title}
        extra_context = {**(extra_context or {}), **pseudonymous}
        zone = self._corp_time_zone(request, object_id)
        if zone is None:
            return super().history_view(request, object_id, extra_context)
        extra_context["corp_time_zone"] = str(zone)
        with timezone.override(zone):
            response = super().history_view(request, object_id, extra_context)
            if hasattr(response, "render"):
                response.render()
        return response

    def get_list_filter(self, request: HttpRequest) -> list:
        """Related-field filters offer only the values present in the user's rows (Django's
        plain filter would list every corp's channels, codes and staff by name)."""
        filters = []
        for spec in super().get_list_filter(request):
            if isinstance(spec, str) and self._is_relation(spec):
                spec = (spec, admin.RelatedOnlyFieldListFilter)
            filters.append(spec)
        return filters

    def _is_relation(self, path: str) -> bool:
        try:
            return bool(get_fields_from_path(self.model, path)[-1].is_relation)
        except (FieldDoesNotExist, Exception):  # a bad path fails Django's own checks
            return False

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        if changelist.list_editable and not is_superuser(request):
            readable = tenancy.corp_ids_for_user(request.user, self.read_action)
            writable = tenancy.corp_ids_for_user(request.user, self.write_action)
            if readable != writable:  # the list shows rows this user may only read
                changelist.list_editable = ()
        return changelist

    # -- writes --------------------------------------------------------------------------------

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        obj = super().save_form(request, form, change)
        corp_pk = self.corp_pk(obj)
        if (
            not is_superuser(request)
            and corp_pk is not None
            and not tenancy.may(request.user, corp_pk, self.write_action)
        ):
            raise PermissionDenied
        return obj

    # -- actions -------------------------------------------------------------------------------

    def get_action(self, action: Any) -> tuple[Callable, str, str] | None:
        found = super().get_action(action)
        if found is None:
            return None
        func, name, description = found
        return self._scoped_action(func), name, description

    def _scoped_action(self, func: Callable) -> Callable:
        """The action, given only the selected rows the user may act on."""
        view_only = set(getattr(func, "allowed_permissions", ()) or ()) == {"view"}

        @functools.wraps(func)
        def scoped_action(modeladmin: CorpScopedAdmin, request: HttpRequest, queryset: QuerySet):
            action = modeladmin.read_action if view_only else modeladmin.write_action
            return func(modeladmin, request, modeladmin.scoped(request, queryset, action))

        return scoped_action


class CorpScopedInline(CorpScopedChoices):
    """An inline of a corp's row: the role in the parent's corp decides, as for the parent."""

    read_action: str = READ
    write_action: str = WRITE

    def _may(self, request: HttpRequest, action: str, parent: Model | None) -> bool:
        if parent is None:
            return tenancy.may_anywhere(request.user, action)
        return tenancy.may(request.user, corp_pk_of(parent), action)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_superuser(request):
            return super().has_view_permission(request, obj)  # type: ignore[misc]
        return self._may(request, self.read_action, obj)

    def has_add_permission(self, request: HttpRequest, obj: Model | None) -> bool:
        if is_superuser(request):
            return super().has_add_permission(request, obj)  # type: ignore[misc]
        return self._may(request, self.write_action, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_superuser(request):
            return super().has_change_permission(request, obj)  # type: ignore[misc]
        return self._may(request, self.write_action, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_superuser(request):
            return super().has_delete_permission(request, obj)  # type: ignore[misc]
        return self._may(request, self.write_action, obj)


class SuperuserOnlyAdmin:
    """For Django's own models (users, groups, tokens, periodic tasks): they reach across corps
    or grant rights, so only superusers see them, whatever model permissions a user holds."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_superuser(request) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_superuser(request) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_superuser(request) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_superuser(request) and super().has_delete_permission(request, obj)  # type: ignore[misc]


def superuser_only(model: type[Model]) -> None:
    """Re-register `model`'s existing admin as superuser-only."""
    current = admin.site._registry[model]
    admin_class = type(current)
    if issubclass(admin_class, SuperuserOnlyAdmin):
        return
    restricted = type(f"SuperuserOnly{admin_class.__name__}", (SuperuserOnlyAdmin, admin_class), {})
    admin.site.unregister(model)
    admin.site.register(model, restricted)
