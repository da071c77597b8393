"""Who may see and do what in which corp: the one place that answers it.

A user belongs to corps through CorpMembership, with a role in each:
- admin: everything in that corp, credentials and its users included;
- operator: channels, live codes, customers, tags, imports; no credentials, no users;
- manager: read-only (customers, reports, exports).
Django superusers are the deployment's operators: every corp, every right.

Everything a user can reach (admin, API, report pages, exports, jobs) is filtered with
`corps_for_user` / `corp_ids_for_user` and checked with `may`; another corp's object is a 404,
never a 403, so its existence is not disclosed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from scrm.wecom.models import Corp, CorpMembership, Role

READ = "read"
WRITE = "write"  # channels, codes, customers, tags, imports, costs, conversions
CREDENTIALS = "credentials"  # a corp's secrets and keys, its users and memberships

# The roles allowed each kind of action.
ROLES_FOR: dict[str, frozenset[str]] = {
    READ: frozenset({Role.ADMIN, Role.OPERATOR, Role.MANAGER}),
    WRITE: frozenset({Role.ADMIN, Role.OPERATOR}),
    CREDENTIALS: frozenset({Role.ADMIN}),
}

_CACHE_ATTR = "_scrm_corp_roles"


def _is_superuser(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def corp_roles(user: Any) -> dict[int, str]:
    """{corp pk: role} of an active user's memberships (cached on the user object: one query
    per request). Empty for anonymous and inactive users."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return {}
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is None:
        cached = dict(
            CorpMembership.objects.filter(user=user, corp__is_active=True).values_list(
                "corp_id", "role"
            )
        )
        setattr(user, _CACHE_ATTR, cached)
    return cached


def forget(user: Any) -> None:
    """Drop the cached memberships (after changing them on this user object)."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def corp_ids_for_user(user: Any, action: str = READ) -> set[int] | None:
    """The pks of the corps where `user` may do `action`; None means every corp (superuser)."""
    if _is_superuser(user):
        return None
    allowed = ROLES_FOR[action]
    return {corp_id for corp_id, role in corp_roles(user).items() if role in allowed}


def corps_for_user(user: Any, action: str = READ) -> QuerySet[Corp]:
    """The corps where `user` may do `action`, oldest first (the default corp first)."""
    corps = Corp.objects.order_by("pk")
    ids = corp_ids_for_user(user, action)
    return corps if ids is None else corps.filter(pk__in=ids)


def scope(queryset: QuerySet, user: Any, action: str = READ, *, field: str = "corp") -> QuerySet:
    """`queryset` narrowed to the rows of the corps where `user` may do `action` (`field` is
    the path to the row's corp, e.g. "live_code__corp" for a row without its own)."""
    ids = corp_ids_for_user(user, action)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{field}__in": ids})


def may(user: Any, corp: Corp | int | None, action: str = READ) -> bool:
    """Whether `user` may do `action` in `corp` (a Corp or its pk)."""
    if _is_superuser(user):
        return True
    if corp is None:
        return False
    corp_pk = corp.pk if isinstance(corp, Corp) else corp
    return corp_roles(user).get(corp_pk) in ROLES_FOR[action]


def may_anywhere(user: Any, action: str = READ) -> bool:
    """Whether `user` may do `action` in at least one corp (to show a page or a button)."""
    ids = corp_ids_for_user(user, action)
    return ids is None or bool(ids)


def roles_of(user: Any) -> Iterable[str]:
    return set(corp_roles(user).values())
