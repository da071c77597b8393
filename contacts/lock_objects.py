"""Row locks of the customer domain, in one place (select_for_update is a no-op on SQLite)."""

from contacts.models import FollowRelation


def follow_relation_lock(pk: int) -> FollowRelation:
    return FollowRelation.objects.select_for_update().get(pk=pk)
