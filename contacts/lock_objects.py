"""Row locks of the customer domain, in one place (select_for_update is a no-op on SQLite)."""

from contacts.models import ExternalContact, FollowRelation


def external_contact_lock(pk: int) -> ExternalContact:
    return ExternalContact.objects.select_for_update().get(pk=pk)


def follow_relation_lock(pk: int) -> FollowRelation:
    return FollowRelation.objects.select_for_update().get(pk=pk)
