"""Guards for URLs: the Django admin's number parameters, and NUL characters anywhere."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.translation import gettext as _

INT64_MAX = 2**63 - 1
ADMIN_PREFIX = "/admin/"
TEXT_PARAMETERS = frozenset({"q", "_changelist_filters"})  # the search box, the return filters


def _out_of_range(value: str) -> bool:
    for part in value.split(","):  # __in lookups take comma-separated numbers
        digits = part.strip().removeprefix("-")
        if len(digits) >= 19 and digits.isascii() and digits.isdigit() and int(digits) > INT64_MAX:
            return True
    return False


class AdminNumberRangeMiddleware:
    """A changelist filter such as ?corp=99999999999999999999 reaches the database as an integer
    it cannot hold (SQLite: OverflowError; PostgreSQL: bigint out of range), a 500 in stock
    Django. Such a number gets a 400 naming the parameter. Only admin GETs are looked at: the
    callback and landing paths pay one startswith."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "GET" and request.path_info.startswith(ADMIN_PREFIX):
            for name, values in request.GET.lists():
                if name not in TEXT_PARAMETERS and any(_out_of_range(v) for v in values):
                    message = _("The number in %(name)s is out of range.") % {"name": name}
                    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class UrlNulMiddleware:
    """A NUL character (%00) in the path or the query string reaches PostgreSQL, which refuses
    it in text: a 500 wherever the value is looked up or stored (the callback's corp id, a
    landing page's utm_* or store, an admin search). SQLite takes it, so tests on the embedded
    default never showed it. Such a URL gets a 400 naming the reason, before any view runs.
    (Bodies and headers are the views' business: see scrm.input_guard.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path_info or "%00" in query or "\x00" in query:
            message = _("NUL characters are not accepted in a URL.")
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
