"""Writes of live codes and their staff pools, for every interface: the admin, the API, the CSV
import and the adoption of WeCom's contact ways all go through these functions, so a rule holds
whichever way an operator edits a code.

- Editing saves the edited fields only and never republishes: publishing is an explicit action
  (services.publishing), and a publish finishing meanwhile keeps its config_id and QR.
- A pool is set as a whole, one row per staff member, keeping the rows of staff who stay:
  their shifts, stores and special dates hang on the PoolMember row.
- When who may receive customers changes on an active published native code, WeCom's user
  list of its contact way is re-synced (debounced, after commit): a change of the pool from
  any interface, or of shifts and special dates from the admin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from channels_app.models import Channel, LiveCode, PoolMember
from channels_app.selectors import landing_config_cache_clear
from channels_app.services.publishing import live_code_request_sync
from contacts.models import Staff
from scrm.wecom.models import Corp

# What WeCom holds for a code: written by publishing (and adoption) only, never validated as
# an operator's input.
WECOM_OWNED = ("config_id", "qr_code", "state", "published_users", "published_skip_verify",
               "published_at", "sync_error", "imported")  # fmt: skip
POOL_FIELDS = ("weight", "daily_cap", "is_backup", "is_enabled")


class PoolRow(TypedDict, total=False):
    """One member of a pool as every interface hands it over; a field left out keeps the
    row's value (a new row takes the model's default)."""

    staff: Required[Staff]
    weight: int
    daily_cap: int | None
    is_backup: bool
    is_enabled: bool


@dataclass
class PoolChange:
    created: list[PoolMember] = field(default_factory=list)
    updated: list[tuple[PoolMember, list[str]]] = field(default_factory=list)  # fields changed
    deleted: list[PoolMember] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


@transaction.atomic
def live_code_create(
    *,
    corp: Corp,
    channel: Channel,
    name: str,
    slug: str,
    pool: Sequence[PoolRow] = (),
    **fields: Any,
) -> LiveCode:
    """A new code (a draft unless `fields` say otherwise) with its pool. `fields` are other
    LiveCode fields (mode, strategy, welcome_text, ...). Raises ValidationError, nothing
    written. A new code is not in WeCom yet: nothing is synced."""
    live_code = LiveCode(corp=corp, channel=channel, name=name, slug=slug, **fields)
    live_code.full_clean(exclude=WECOM_OWNED)
    live_code.save()
    _pool_write(live_code, pool, existing={})
    return live_code


@transaction.atomic
def live_code_update(
    *, live_code: LiveCode, changes: Mapping[str, Any], pool: Sequence[PoolRow] | None = None
) -> LiveCode:
    """Save the fields in `changes` only (and updated_at), then, given `pool`, set the pool as
    live_code_pool_set does, its WeCom resync included. Never republishes; a published code
    keeps its mode. Raises ValidationError, nothing written."""
    owned = sorted(set(changes) & {*WECOM_OWNED, "status"})
    if owned:
        raise ValueError(f"written by publishing only: {', '.join(owned)}")
    moved = "mode" in changes and changes["mode"] != live_code.mode
    if moved and live_code.published_at is not None:
        raise ValidationError({"mode": _("A published code keeps its mode.")})
    for name, value in changes.items():
        setattr(live_code, name, value)
    live_code.full_clean(exclude=WECOM_OWNED)
    live_code.save(update_fields=[*changes, "updated_at"])
    if pool is not None:
        live_code_pool_set(live_code=live_code, rows=pool)
    return live_code


@transaction.atomic
def live_code_pool_set(*, live_code: LiveCode, rows: Sequence[PoolRow]) -> PoolChange:
    """Make the code's pool exactly `rows`: staff not listed leave it, new staff join it, and
    the rows of staff who stay keep their shifts, stores and special dates, with a field left
    out keeping its value. If anything changed, an active published native code has its
    WeCom user list re-synced (live_code_staffing_changed). Raises ValidationError (nothing
    written) for a member of another corp, a member listed twice or a value out of range."""
    members = PoolMember.objects.filter(live_code=live_code).select_related("staff")
    existing = {member.staff_id: member for member in members}
    change = _pool_write(live_code, rows, existing)
    if change.changed:
        live_code_staffing_changed(live_code=live_code)
    return change


def live_code_staffing_changed(*, live_code: LiveCode) -> bool:
    """Who may receive customers through the code may have changed (its pool, shifts or
    special dates). An active published native code has WeCom's user list of its contact way
    re-synced: debounced (a pool and its shifts saved together sync once) and queued after
    commit, so the sync reads what was saved. True when a resync was requested."""
    landing_config_cache_clear()
    transaction.on_commit(landing_config_cache_clear)  # and again once others can read it
    if (
        live_code.mode != LiveCode.Mode.NATIVE
        or live_code.status != LiveCode.Status.ACTIVE
        or not live_code.config_id
    ):
        return False
    live_code_request_sync(live_code_id=live_code.pk)
    return True


def _pool_check(live_code: LiveCode, rows: Sequence[PoolRow]) -> None:
    problems = []
    seen: set[int] = set()
    twice = []
    for row in rows:
        staff = row["staff"]
        unknown = set(row) - {"staff", *POOL_FIELDS}
        if unknown:
            raise ValueError(f"not fields of a pool member: {', '.join(sorted(unknown))}")
        if staff.corp_id != live_code.corp_id:
            problems.append(f"{staff}: {_('This member belongs to another corp.')}")
        if staff.pk in seen:
            twice.append(staff.userid)
        seen.add(staff.pk)
    if twice:
        problems.append(_("Listed twice: %(ids)s") % {"ids": ", ".join(twice)})
    if problems:
        raise ValidationError({"pool": problems})


def _pool_clean(member: PoolMember) -> None:
    # The live code and staff are given as objects and checked above; one row per staff is
    # how the pool is keyed (a concurrent writer meets the unique constraint instead).
    try:
        member.full_clean(exclude=["live_code", "staff"], validate_unique=False,
                          validate_constraints=False)  # fmt: skip
    except ValidationError as exc:
        messages = [f"{member.staff}: {m}" for ms in exc.message_dict.values() for m in ms]
        raise ValidationError({"pool": messages}) from exc


def _pool_write(
    live_code: LiveCode, rows: Sequence[PoolRow], existing: dict[int, PoolMember]
) -> PoolChange:
    """The one place pool rows are written: a delete, an insert and an update at most."""
    _pool_check(live_code, rows)
    change = PoolChange()
    for row in rows:
        values = {name: row[name] for name in POOL_FIELDS if name in row}
        member = existing.pop(row["staff"].pk, None)
        if member is None:
            member = PoolMember(
                corp_id=live_code.corp_id, live_code=live_code, staff=row["staff"], **values
            )
            _pool_clean(member)
            change.created.append(member)
            continue
        edited = [name for name, value in values.items() if getattr(member, name) != value]
        if edited:
            for name in edited:
                setattr(member, name, values[name])
            _pool_clean(member)
            change.updated.append((member, edited))
    change.deleted = list(existing.values())
    if change.deleted:
        PoolMember.objects.filter(pk__in=[member.pk for member in change.deleted]).delete()
    if change.created:
        PoolMember.objects.bulk_create(change.created)
    if change.updated:
        edited_fields = sorted({name for _member, names in change.updated for name in names})
        PoolMember.objects.bulk_update([member for member, _names in change.updated],
                                       edited_fields)  # fmt: skip
    return change
