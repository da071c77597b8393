"""The API's pagination: DRF's limit/offset with a ceiling on `limit`, and `page_size` as its
other name.

Without a ceiling, `?limit=99999999999999999999` reaches the database as a LIMIT it cannot hold
(SQLite: datatype mismatch, a 500); a client asking for more than MAX_LIMIT rows gets MAX_LIMIT
and the `next` link for the rest. `page_size` is what many clients send (DRF's page-number
style): it means `limit`, with the same ceiling; the `next`/`previous` links carry `limit`.
A value that is not a number (or a negative one) is a 400 with a reason, where DRF would
silently use the default.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination, _positive_int, remove_query_param
from rest_framework.request import Request

MAX_LIMIT = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT
    page_size_query_param = "page_size"

    def get_limit(self, request: Request) -> int | None:
        given = [
            name
            for name in (self.limit_query_param, self.page_size_query_param)
            if name in request.query_params
        ]
        if not given:
            return self.default_limit
        if len(given) > 1:
            raise ValidationError(
                {self.page_size_query_param: [_("Give limit or page_size, not both.")]}
            )
        (name,) = given
        try:
            return _positive_int(request.query_params[name], strict=True, cutoff=self.max_limit)
        except ValueError as exc:
            message = _("Use a whole number, 1 or more (at most %(max)d rows are answered).")
            raise ValidationError({name: [message % {"max": self.max_limit}]}) from exc

    def get_offset(self, request: Request) -> int:
        if self.offset_query_param not in request.query_params:
            return 0
        try:
            return _positive_int(request.query_params[self.offset_query_param])
        except ValueError as exc:
            message = _("Use a whole number, 0 or more.")
            raise ValidationError({self.offset_query_param: [message]}) from exc

    def get_next_link(self) -> str | None:
        return self._without_page_size(super().get_next_link())

    def get_previous_link(self) -> str | None:
        return self._without_page_size(super().get_previous_link())

    def _without_page_size(self, url: str | None) -> str | None:
        # The link carries `limit`: both in one query would be refused.
        return None if url is None else remove_query_param(url, self.page_size_query_param)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["description"] = (
                    f"Number of results to return per page, at most {self.max_limit} "
                    f"(more is answered with {self.max_limit} and a `next` link). "
                    f"每页条数，至多 {self.max_limit}。"
                )
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_limit}
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 0}
        parameters.append(
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": (
                    f"Another name for `limit` (give one of them): results per page, at most "
                    f"{self.max_limit}. `limit` 的别名（二选一）：每页条数，至多 {self.max_limit}。"
                ),
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            }
        )
        return parameters
