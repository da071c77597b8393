"""What a staff change in WeCom does to the live codes: members who left leave every pool."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from channels_app.models import LiveCode, PoolMember
from channels_app.services.publishing import live_code_request_sync


@transaction.atomic
def pools_remove_staff(*, staff_ids: Iterable[int]) -> set[int]:
    """Disable these staff members' pool memberships and sync the native codes that listed
    them; returns the ids of the live codes whose pool changed.

    The rows are disabled, not deleted, so weight, cap and shifts survive for the record (an
    operator re-enables a member who comes back). Idempotent: already disabled rows are not
    touched and cost no WeCom call. Landing codes need no call: assignment skips the row.
    """
    members = PoolMember.objects.filter(staff_id__in=list(staff_ids), is_enabled=True)
    code_ids = set(members.values_list("live_code_id", flat=True))
    if not code_ids:
        return set()
    members.update(is_enabled=False)
    native = LiveCode.objects.filter(
        pk__in=code_ids, mode=LiveCode.Mode.NATIVE, status=LiveCode.Status.ACTIVE
    ).exclude(config_id="")
    for live_code_id in native.order_by("pk").values_list("pk", flat=True):
        # Debounced and queued on commit: the sync reads the pool as committed here.
        live_code_request_sync(live_code_id=live_code_id)
    return code_ids
