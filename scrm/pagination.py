"""The API's pagination: DRF's limit/offset with a ceiling on `limit`.

Without one, `?limit=99999999999999999999` reaches the database as a LIMIT it cannot hold
(SQLite: datatype mismatch, a 500); a client asking for more than MAX_LIMIT rows gets MAX_LIMIT
and the `next` link for the rest.
"""

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT
