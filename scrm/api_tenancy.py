"""Tenancy in the REST API: the DRF side of scrm.wecom.tenancy, in one place.

Every API view uses these three pieces, so all of them answer alike:
- `CorpRolePermission`: a signed-in user with a role somewhere. A safe method (GET, HEAD,
  OPTIONS) needs READ in at least one corp, any other method WRITE (a view's `tenancy_actions`
  may ask more of an action, e.g. CREDENTIALS); on an object, that action in the object's own
  corp. A manager (read-only) is refused every write with a 403.
- `CorpScopedMixin`: the view's rows narrowed to the corps the user may READ, in
  `filter_queryset` (which DRF's list and `get_object` both go through), so another corp's row
  is a 404, not a 403 that would tell it exists.
- `CorpField`, `ScopedPrimaryKeyRelatedField`, `writable_corps`: what a write may name (a corp,
  a channel, a live code) resolves only within the corps where the user may WRITE; another
  corp's reads as "does not exist" (a 400), so no write ever links across corps.
API tokens act as their user (TokenAuthentication): the same checks apply.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from scrm.wecom import tenancy
from scrm.wecom.models import Corp


def request_action(request: Request, view: APIView) -> str:
    """The tenancy action a request needs: the view's `tenancy_actions` entry for its DRF
    action (or HTTP method), else READ for a safe method and WRITE for any other."""
    needs: dict[str, str] = getattr(view, "tenancy_actions", {})
    name = getattr(view, "action", None) or request.method.lower()
    if name in needs:
        return needs[name]
    return tenancy.READ if request.method in SAFE_METHODS else tenancy.WRITE


def corp_pk_of(obj: Model, path: str = "corp") -> int | None:
    """The pk of `obj`'s corp, `path` as in a queryset filter ("corp", "live_code__corp")."""
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop)
        if obj is None:
            return None
    return getattr(obj, f"{last}_id")


class CorpRolePermission(BasePermission):
    """Who may call a view (see the module docstring). The object check reads the corp at the
    view's `tenancy_field` (default "corp")."""

    message = _("Your role in this corp does not allow this.")

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return tenancy.may_anywhere(user, request_action(request, view))

    def has_object_permission(self, request: Request, view: APIView, obj: Model) -> bool:
        path = getattr(view, "tenancy_field", "corp")
        return tenancy.may(request.user, corp_pk_of(obj, path), request_action(request, view))


class CorpScopedMixin:
    """For generic views: rows of the corps the user may READ only (`tenancy_field` is the
    path to a row's corp). A row the user may read but not change answers 403 on a write
    (CorpRolePermission); a row of another corp is a 404 for any method."""

    tenancy_field = "corp"
    permission_classes = [CorpRolePermission]

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)  # type: ignore[misc]
        return tenancy.scope(queryset, self.request.user, tenancy.READ, field=self.tenancy_field)


def _user(field: serializers.Field) -> Any:
    request = field.context.get("request")
    return getattr(request, "user", None)


def writable_corps(context: dict[str, Any], action: str = tenancy.WRITE) -> QuerySet[Corp]:
    """The corps the serializer's request user may do `action` in (none without a request)."""
    request = context.get("request")
    if request is None:
        return Corp.objects.none()
    return tenancy.corps_for_user(request.user, action)


class CorpField(serializers.SlugRelatedField):
    """A corp by its corp_id, among the corps where the request's user may do `action` (WRITE
    by default; READ for a query parameter). Unknown and foreign corps get the same answer."""

    default_error_messages = {
        "does_not_exist": _("Unknown corp: {value}."),
        "invalid": _("Invalid value."),
    }

    def __init__(self, *, action: str = tenancy.WRITE, **kwargs: Any) -> None:
        self.action = action
        kwargs.setdefault("queryset", Corp.objects.all())
        super().__init__(slug_field="corp_id", **kwargs)

    def get_queryset(self) -> QuerySet[Corp]:
        user = _user(self)
        if user is None:
            return Corp.objects.none()
        return tenancy.corps_for_user(user, self.action)


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A row by its id, among the rows of the corps where the request's user may do `action`
    (`corp_field` is the path to the row's corp). Another corp's row "does not exist"."""

    def __init__(
        self, *, action: str = tenancy.WRITE, corp_field: str = "corp", **kwargs: Any
    ) -> None:
        self.action = action
        self.corp_field = corp_field
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        user = _user(self)
        if user is None:
            return queryset.none()
        return tenancy.scope(queryset, user, self.action, field=self.corp_field)


class PersonalFieldsMixin:
    """A serializer whose `personal_fields` (free text that often holds a phone number or an
    address, ids that follow a person across apps) are left out for a user who may only read
    the row's corp: a manager gets what reports need, as in the admin (CorpScopedAdmin's
    personal_fields)."""

    personal_fields: tuple[str, ...] = ()

    def hides_personal_data(self, instance: Model) -> bool:
        request = self.context.get("request")  # type: ignore[attr-defined]
        return request is not None and not tenancy.may(
            request.user, corp_pk_of(instance), tenancy.WRITE
        )

    def to_representation(self, instance: Model) -> dict:
        data = super().to_representation(instance)  # type: ignore[misc]
        if self.personal_fields and self.hides_personal_data(instance):
            for name in self.personal_fields:
                data.pop(name, None)
        return data
