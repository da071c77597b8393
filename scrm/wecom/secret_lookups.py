"""No secret oracle: a filter or ordering that names a secret field is refused with a 400.

`?secret__startswith=a`, tried one character at a time, would read a corp's app secret off a
changelist that answers "some rows" or "none". The encrypted fields (scrm.wecom.vault) offer no
such lookup any more, and the admin and the API refuse the parameter outright, however it
reaches the field (`corp__secret__startswith` from another model's changelist,
`ordering=corp__callback_token` on the API), before any query runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.translation import gettext as _

from scrm.wecom.vault import EncryptedTextField

# Query parameters whose values name fields (DRF's OrderingFilter; the admin's `o` is indices).
ORDERING_PARAMS = ("ordering",)
GUARDED_PREFIXES = ("/admin/", "/api/")


@functools.cache
def secret_field_names() -> frozenset[str]:
    """The names of every encrypted field of every model (secret, callback_token, ...)."""
    return frozenset(
        field.name
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if isinstance(field, EncryptedTextField)
    )


def lookup_names_secret(model: type[Model], lookup: str) -> bool:
    """Whether the ORM path `lookup` (a__b__startswith) reaches an encrypted field of
    `model` or of a model it follows."""
    for part in lookup.split("__"):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False  # a lookup or transform: the path ended on an ordinary field
        if isinstance(field, EncryptedTextField):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model = field.related_model
    return False


def _named_paths(request: HttpRequest) -> Iterable[str]:
    for key, values in request.GET.lists():
        yield key
        if key in ORDERING_PARAMS:
            for value in values:
                yield from (term.strip().lstrip("-") for term in value.split(","))


def secret_parameter(request: HttpRequest) -> str | None:
    """The first query parameter naming a secret field (by any path), or None."""
    secrets = secret_field_names()
    for path in _named_paths(request):
        if secrets.intersection(path.split("__")):
            return path
    return None


class SecretLookupMiddleware:
    """Refuse admin and API requests whose query names a secret field (400, with a reason)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(GUARDED_PREFIXES) and request.GET:
            param = secret_parameter(request)
            if param is not None:
                reason = _("Filtering or ordering by a secret field is not allowed: %(param)s") % {
                    "param": param
                }
                if request.path.startswith("/api/"):
                    return JsonResponse({"detail": reason}, status=400)
                return HttpResponseBadRequest(reason, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
