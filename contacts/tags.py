"""Corp tags: the library mirrored from WeCom, and tags on customers (mark_tag + local mirror).

WeCom owns the tags: every change is written there first, then mirrored here. Applying tags is
idempotent: a tag already on the relation is never sent again, so a replayed event or a rule
evaluated twice tags once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.models import CustomerTag, FollowRelation, Tag, TagGroup, TimelineEvent
from contacts.timeline import timeline_record
from scrm.wecom.client import WeComClient, WeComError, WeComTransientError
from scrm.wecom.models import Corp

logger = logging.getLogger("contacts.tags")


@transaction.atomic
def tag_library_store(*, corp: Corp, tag_groups: list[dict]) -> tuple[int, int]:
    """Mirror get_corp_tag_list's answer; tags and groups not in it are marked deleted.
    Returns (groups, tags) seen.

    An empty answer while we hold live tags is not trusted: an app that lost the 客户联系
    permission gets errcode 0 and no groups, and marking every tag deleted would silently stop
    every auto-tag rule. The mirror is kept and the answer logged; deleting the last tag group
    in WeCom is rare enough to be confirmed by a non-empty sync later.
    """
    if not tag_groups and Tag.objects.filter(corp=corp, deleted=False).exists():
        logger.warning(
            "get_corp_tag_list answered no tag groups for corp %s; the local tag library "
            "was kept (check the app's 客户联系 permission)",
            corp.corp_id,
        )
        return 0, 0
    seen_groups, seen_tags = [], []
    for item in tag_groups:
        group, _ = TagGroup.objects.update_or_create(
            corp=corp, group_id=item["group_id"],
            defaults={"name": item.get("group_name", "")[:30], "order": item.get("order") or 0,
                      "deleted": bool(item.get("deleted"))},
        )  # fmt: skip
        seen_groups.append(group.pk)
        for tag in item.get("tag") or []:
            row, _ = Tag.objects.update_or_create(
                corp=corp, tag_id=tag["id"],
                defaults={"group": group, "name": tag.get("name", "")[:30],
                          "order": tag.get("order") or 0, "deleted": bool(tag.get("deleted"))},
            )  # fmt: skip
            seen_tags.append(row.pk)
    TagGroup.objects.filter(corp=corp).exclude(pk__in=seen_groups).update(deleted=True)
    Tag.objects.filter(corp=corp).exclude(pk__in=seen_tags).update(deleted=True)
    return len(seen_groups), len(seen_tags)


def tag_library_sync(*, corp: Corp) -> tuple[int, int]:
    return tag_library_store(corp=corp, tag_groups=WeComClient(corp).corp_tag_list())


def _mark_tag(relation: FollowRelation, *, add: list[Tag], remove: list[Tag]) -> FollowRelation:
    """mark_tag in WeCom for the relation's staff member and customer; returns the relation
    with corp, staff and customer loaded for the mirror and timeline writes that follow."""
    relation = FollowRelation.objects.select_related("corp", "staff", "external_contact").get(
        pk=relation.pk
    )
    WeComClient(relation.corp).mark_tag(
        userid=relation.staff.userid,
        external_userid=relation.external_contact.external_userid,
        add=[t.tag_id for t in add],
        remove=[t.tag_id for t in remove],
    )
    return relation


def tags_apply(
    *, relation: FollowRelation, tag_ids: list[str], source: CustomerTag.Source
) -> list[Tag]:
    """Put tags on a customer (for the relation's staff member): mark_tag in WeCom for the
    ones not there yet, then the local mirror and the timeline. Returns the tags added."""
    tags = list(
        Tag.objects.filter(corp_id=relation.corp_id, tag_id__in=tag_ids, deleted=False)
        .exclude(customer_tags__follow_relation=relation)
        .order_by("pk")
    )
    if not tags:
        return []
    relation = _mark_tag(relation, add=tags, remove=[])
    with transaction.atomic():
        CustomerTag.objects.bulk_create(
            [CustomerTag(corp_id=relation.corp_id, follow_relation=relation, tag=t, source=source)
             for t in tags],
            ignore_conflicts=True,
        )  # fmt: skip
        timeline_record(
            contact=relation.external_contact,
            kind=TimelineEvent.Kind.TAGGED,
            occurred_at=timezone.now(),
            dedup_key=f"tag:{relation.pk}:" + ",".join(t.tag_id for t in tags)[:100],
            staff=relation.staff,
            summary="、".join(t.name for t in tags),
            data={"tags": [t.tag_id for t in tags], "source": source},
        )
    return tags


# -- the tag library, edited from here: WeCom first, then the mirror ----------------------------

# add_corp_tag / edit_corp_tag take names of at most 30 characters (40072 beyond).
TAG_NAME_MAX_LENGTH = 30
# A shuffle or a bulk edit in WeCom sends one change_external_tag event per tag: one resync.
TAG_SYNC_DEBOUNCE_SECONDS = 5

TAG_ERRORS = {
    40068: gettext_lazy(
        "WeCom does not know this tag or tag group (was it deleted in WeCom?). "
        "Sync the tag library from WeCom and try again."
    ),
    40071: gettext_lazy("WeCom already has a tag or tag group with this name."),
    40072: gettext_lazy("The name is empty or too long: WeCom allows at most 30 characters."),
    40126: gettext_lazy(
        "The corp has reached WeCom's limit of 3000 tags. Delete unused tags first."
    ),
}


class TagLibraryError(Exception):
    """WeCom refused a change to the tag library, or could not be reached; nothing was changed
    here. `message` is for the operator, in the active language."""

    def __init__(self, message: str, errcode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errcode = errcode


@contextmanager
def _wecom_refusal() -> Iterator[None]:
    try:
        yield
    except WeComTransientError as exc:
        message = _("WeCom is busy or cannot be reached (%(error)s). Try again in a minute.")
        raise TagLibraryError(message % {"error": exc.errmsg}, exc.errcode) from exc
    except WeComError as exc:
        if exc.errcode in TAG_ERRORS:
            raise TagLibraryError(str(TAG_ERRORS[exc.errcode]), exc.errcode) from exc
        message = _("WeCom refused the change: %(errmsg)s (errcode %(errcode)s).")
        params = {"errmsg": exc.errmsg, "errcode": exc.errcode}
        raise TagLibraryError(message % params, exc.errcode) from exc


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > TAG_NAME_MAX_LENGTH:
        raise TagLibraryError(str(TAG_ERRORS[40072]), 40072)
    return name


@transaction.atomic
def _tag_group_mirror(*, corp: Corp, item: dict) -> TagGroup:
    """Mirror one tag_group of add_corp_tag's answer (the group and the tags it lists)."""
    group, _created = TagGroup.objects.update_or_create(
        corp=corp, group_id=item["group_id"],
        defaults={"name": item.get("group_name", "")[:30], "order": item.get("order") or 0,
                  "deleted": False},
    )  # fmt: skip
    for tag in item.get("tag") or []:
        Tag.objects.update_or_create(
            corp=corp, tag_id=tag["id"],
            defaults={"group": group, "name": tag.get("name", "")[:30],
                      "order": tag.get("order") or 0, "deleted": False},
        )  # fmt: skip
    return group


def tag_group_create(
    *, corp: Corp, name: str, tag_names: Sequence[str], order: int = 0
) -> TagGroup:
    """Create a tag group with its first tags in WeCom (which keeps no empty group), then
    mirror it. WeCom reuses a group, or a tag in it, of the same name: repeating is harmless.
    Raises TagLibraryError."""
    name = _checked_name(name)
    names = list(dict.fromkeys(_checked_name(n) for n in tag_names))
    if not names:
        raise TagLibraryError(_("A tag group needs at least one tag: WeCom keeps no empty groups."))
    body = {"group_name": name, "order": order, "tag": [{"name": n} for n in names]}
    with _wecom_refusal():
        data = WeComClient(corp).post("externalcontact/add_corp_tag", body)
    return _tag_group_mirror(corp=corp, item=data["tag_group"])


def tag_create(*, group: TagGroup, name: str, order: int = 0) -> Tag:
    """Add a tag to an existing group in WeCom, then mirror it. Raises TagLibraryError."""
    body = {"group_id": group.group_id, "tag": [{"name": _checked_name(name), "order": order}]}
    with _wecom_refusal():
        data = WeComClient(group.corp).post("externalcontact/add_corp_tag", body)
    item = data["tag_group"]
    _tag_group_mirror(corp=group.corp, item=item)
    return Tag.objects.get(corp=group.corp, tag_id=item["tag"][0]["id"])


def tag_ensure(*, corp: Corp, group_name: str, name: str) -> Tag:
    """The corp's tag `name` in the group `group_name`, created in WeCom (then mirrored) when
    the library has no such tag: the tags the system applies by itself (高潜力, 紧急跟进) exist
    before they are used. Raises TagLibraryError when WeCom refuses."""
    existing = (
        Tag.objects.filter(corp=corp, name=name, deleted=False, group__name=group_name,
                           group__deleted=False)
        .order_by("pk")
        .first()
    )  # fmt: skip
    if existing is not None:
        return existing
    group = TagGroup.objects.filter(corp=corp, name=group_name, deleted=False).first()
    if group is not None:
        return tag_create(group=group, name=name)
    group = tag_group_create(corp=corp, name=group_name, tag_names=[name])
    return Tag.objects.get(corp=corp, group=group, name=name, deleted=False)


def tag_rename(*, target: Tag | TagGroup, name: str, order: int | None = None) -> None:
    """Rename (and reorder) a tag or a tag group in WeCom (edit_corp_tag), then the mirror.
    Nothing is sent when nothing changes. Raises TagLibraryError."""
    name = _checked_name(name)
    current = type(target).objects.select_related("corp").get(pk=target.pk)
    fields = {"name": name, **({"order": order} if order is not None else {})}
    if all(getattr(current, field) == value for field, value in fields.items()):
        return
    wecom_id = current.tag_id if isinstance(current, Tag) else current.group_id
    with _wecom_refusal():
        WeComClient(current.corp).post("externalcontact/edit_corp_tag", {"id": wecom_id, **fields})
    type(target).objects.filter(pk=target.pk).update(**fields)
    for field, value in fields.items():
        setattr(target, field, value)


def tags_delete(
    *, corp: Corp, tags: Sequence[Tag] = (), groups: Sequence[TagGroup] = ()
) -> tuple[int, int]:
    """Delete tags and whole groups of one corp in WeCom (one del_corp_tag), then mark them
    deleted here, with every group WeCom drops because its last tag went. WeCom takes the tags
    off every customer; the CustomerTag rows stay as history (deleted tags are not shown).
    Returns (groups, tags) marked deleted. Raises TagLibraryError."""
    tag_ids = [t.tag_id for t in tags if not t.deleted and t.corp_id == corp.pk]
    group_ids = [g.group_id for g in groups if not g.deleted and g.corp_id == corp.pk]
    if not tag_ids and not group_ids:
        return 0, 0
    with _wecom_refusal():
        WeComClient(corp).post(
            "externalcontact/del_corp_tag", {"tag_id": tag_ids, "group_id": group_ids}
        )
    with transaction.atomic():
        gone = Tag.objects.filter(corp=corp, deleted=False).filter(
            Q(tag_id__in=tag_ids) | Q(group__group_id__in=group_ids)
        )
        touched = set(gone.values_list("group_id", flat=True))
        tag_count = gone.update(deleted=True)
        emptied = TagGroup.objects.filter(corp=corp, deleted=False).filter(
            Q(group_id__in=group_ids) | (Q(pk__in=touched) & ~Q(tags__deleted=False))
        )
        return emptied.update(deleted=True), tag_count


def tag_library_mark_deleted(*, corp_id: int, tag_type: str, wecom_id: str) -> int:
    """A change_external_tag delete names what went: mark it deleted at once (a group takes
    its tags along), so the resync's empty answer after the last tag is gone needs no trust."""
    if not wecom_id:
        return 0
    if tag_type == "tag_group":
        Tag.objects.filter(corp_id=corp_id, group__group_id=wecom_id).update(deleted=True)
        return TagGroup.objects.filter(corp_id=corp_id, group_id=wecom_id).update(deleted=True)
    return Tag.objects.filter(corp_id=corp_id, tag_id=wecom_id).update(deleted=True)


def tag_library_request_sync(*, corp_id: int) -> None:
    """Queue a resync of the corp's tag library after commit, debounced: a burst of
    change_external_tag events costs one get_corp_tag_list. Never calls WeCom itself."""
    key = f"tag-library-sync:{corp_id}"
    if not cache.add(key, 1, TAG_SYNC_DEBOUNCE_SECONDS):
        return
    from contacts.tasks import tag_library_sync_task

    def queue() -> None:
        try:
            tag_library_sync_task.apply_async((corp_id,), countdown=TAG_SYNC_DEBOUNCE_SECONDS)
        except Exception:  # broker down: the next tag event (or the admin's sync page) resyncs
            cache.delete(key)
            logger.warning("could not queue the tag library sync of corp %s", corp_id)

    transaction.on_commit(queue)


def tag_library_resync(*, corp_id: int) -> tuple[int, int] | None:
    """The queued resync; None when the corp is gone. Events arriving from now on must queue
    another sync, as this one may not see their changes: the debounce key goes first."""
    cache.delete(f"tag-library-sync:{corp_id}")
    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return None
    return tag_library_sync(corp=corp)


def customer_tags_remove(*, relation: FollowRelation, tag_ids: Sequence[str]) -> list[Tag]:
    """Take tags off a customer (for the relation's staff member): mark_tag remove_tag in
    WeCom for those on the relation here, then the mirror and the timeline. Returns the tags
    removed; a repeat finds none and calls nothing. Raises WeComError like tags_apply."""
    tags = list(
        Tag.objects.filter(
            corp_id=relation.corp_id,
            tag_id__in=list(tag_ids),
            deleted=False,
            customer_tags__follow_relation=relation,
        ).order_by("pk")
    )
    if not tags:
        return []
    relation = _mark_tag(relation, add=[], remove=tags)
    now = timezone.now()
    with transaction.atomic():
        CustomerTag.objects.filter(follow_relation=relation, tag__in=tags).delete()
        # The time is part of the key: a tag put back and removed again is a second line.
        timeline_record(
            contact=relation.external_contact,
            kind=TimelineEvent.Kind.UNTAGGED,
            occurred_at=now,
            dedup_key=f"untag:{relation.pk}:{now.timestamp():.6f}:"
            + ",".join(t.tag_id for t in tags),
            staff=relation.staff,
            summary="、".join(t.name for t in tags),
            data={"tags": [t.tag_id for t in tags]},
        )
    return tags
