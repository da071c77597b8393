"""Query parameters of the API: a parameter the endpoint does not know is a 400, not ignored.

django-filter ignores a query parameter it has no filter for, so `?chanel=pyq_1` (a typo) or
`?first_channel=3` on an endpoint without that filter answered every row, as if filtered. Every
list endpoint goes through `StrictFilterBackend` (settings: DEFAULT_FILTER_BACKENDS), and the
endpoints that validate their query with a serializer (reports, the leaderboard) through
`StrictQuerySerializerMixin`: an unknown parameter is answered

    400 {"detail": "...", "unknown_parameters": [...], "valid_parameters": [...]}

The valid ones are read from the view itself, never listed by hand: the FilterSet's filters,
the paginator's parameters (limit, offset, page_size), the other filter backends' (search,
ordering) and `format` (DRF's URL_FORMAT_OVERRIDE).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

# What other filter backends read from the query (SearchFilter, OrderingFilter).
_BACKEND_PARAMETERS = ("search_param", "ordering_param")


def refuse_unknown_parameters(given: Iterable[str], valid: Iterable[str]) -> None:
    """Raise a 400 naming the parameters of `given` that are not `valid`, and the valid ones."""
    valid = sorted(set(valid))
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValidationError(
            {
                "detail": _("Unknown query parameter: %(unknown)s. Valid parameters: %(valid)s.")
                % {"unknown": ", ".join(unknown), "valid": ", ".join(valid)},
                "unknown_parameters": unknown,
                "valid_parameters": valid,
            }
        )


def format_parameters() -> set[str]:
    """`format`, when DRF reads it from the query to pick a renderer."""
    name = api_settings.URL_FORMAT_OVERRIDE
    return {name} if name else set()


def pagination_parameters(view: APIView) -> set[str]:
    """The query parameters of the view's paginator (limit, offset, page_size; none if the
    view is not paginated)."""
    paginator = getattr(view, "paginator", None)
    if paginator is None:
        return set()
    names = (getattr(paginator, name) for name in dir(paginator) if name.endswith("_query_param"))
    return {name for name in names if isinstance(name, str) and name}


def _is_list(request: Request, view: APIView) -> bool:
    action = getattr(view, "action", None)  # a viewset's
    if action is not None:
        return action == "list"
    return request.method in ("GET", "HEAD") and isinstance(view, ListModelMixin)


class StrictFilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend whose lists refuse an unknown query parameter (400). One row or a
    write (get_object also filters) is left alone: its query carries no filter."""

    def valid_parameters(self, request: Request, queryset: QuerySet, view: APIView) -> set[str]:
        names = pagination_parameters(view) | format_parameters()
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            names |= set(filterset_class.base_filters)
        for backend in getattr(view, "filter_backends", ()):
            names |= {
                getattr(backend, attr) for attr in _BACKEND_PARAMETERS if hasattr(backend, attr)
            }
        return names

    def filter_queryset(self, request: Request, queryset: QuerySet, view: APIView) -> QuerySet:
        if _is_list(request, view):
            refuse_unknown_parameters(
                request.query_params, self.valid_parameters(request, queryset, view)
            )
        return super().filter_queryset(request, queryset, view)


class StrictQuerySerializerMixin:
    """For a serializer that validates a view's query string: a parameter that is not one of
    its fields (or `format`) is a 400 listing the valid ones."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            refuse_unknown_parameters(data.keys(), set(self.fields) | format_parameters())  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictQuerySerializer(StrictQuerySerializerMixin, serializers.Serializer):
    pass
