"""Publishing live codes to WeCom: contact ways for native codes, landing slots for landing
codes, keeping the printed QR (config_id) stable across edits, and adopting codes made
elsewhere. WeCom calls happen outside database transactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from channels_app.models import Channel, LandingSlot, LiveCode
from channels_app.services.assignment import local_now, native_userids
from channels_app.state import encode_state
from contacts.models import Staff
from contacts.services import staff_get_or_create
from scrm.wecom.client import WeComClient, WeComError
from scrm.wecom.models import Corp

SLOTS_PER_STAFF = 3  # free single-user contact ways kept ready per staff member
SLOTS_MAX_PER_STAFF = 30
SLOT_LEASE = timedelta(minutes=30)
SYNC_DEBOUNCE_SECONDS = 10

# errcode -> what an operator can act on (WeCom's own texts are terse English).
ERRCODE_MESSAGES = {
    40003: "成员UserID无效或已删除 / invalid or deleted member UserID",
    40058: "参数不合法（如state超过30个字符） / invalid parameter",
    41041: "使用该活码的成员超过100人 / more than 100 members on one code",
    41044: "活码已在企业微信中被删除 / the contact way no longer exists in WeCom",
    41045: "API创建的「联系我」已达上限 / API contact-way limit reached",
    41054: "成员尚未激活企业微信 / member has not activated WeCom",
    45009: "接口调用频率超限，请稍后重试 / rate limited, retry later",
    48002: "应用未加入客户联系「可调用接口的应用」 / app lacks customer-contact API access",
    60011: "成员不在应用可见范围内 / member is outside the app's visible range",
    60111: "成员UserID不存在 / member does not exist",
    84074: "成员未开通客户联系功能 / member has no customer-contact permission",
}


class PublishError(Exception):
    """Publishing failed; `message` says what to fix, naming the member when one is at fault."""

    def __init__(self, message: str, *, errcode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errcode = errcode


def errcode_message(error: WeComError) -> str:
    known = ERRCODE_MESSAGES.get(error.errcode or 0)
    return f"{known} (errcode {error.errcode})" if known else f"WeCom: {error}"


def staff_problems(live_code: LiveCode, client: WeComClient | None = None) -> list[str]:
    """Why members of the pool cannot receive customers: left or disabled here, or (asked of
    WeCom) without customer contact or outside the app's visible range."""
    members = list(live_code.pool.filter(is_enabled=True).select_related("staff"))
    problems = [
        _("%(staff)s: left or disabled") % {"staff": m.staff}
        for m in members
        if m.staff.status != Staff.Status.ACTIVE
    ]
    if client is not None and members:
        enabled = set(client.follow_user_list())
        problems += [
            _("%(staff)s: customer contact not enabled, or outside the app's visible range")
            % {"staff": m.staff}
            for m in members
            if m.staff.status == Staff.Status.ACTIVE and m.staff.userid not in enabled
        ]
    return problems


def skip_verify_now(live_code: LiveCode, now: datetime | None = None) -> bool:
    """skip_verify, or only inside the auto-accept window (corp time) when one is set."""
    start, end = live_code.auto_accept_from, live_code.auto_accept_to
    if start is None or end is None:
        return live_code.skip_verify
    clock: time = local_now(live_code, now).time()
    return start <= clock < end if start < end else clock >= start or clock < end


def _contact_way_body(live_code: LiveCode, users: list[str], now: datetime | None) -> dict:
    return {
        "remark": live_code.name[:30],
        "skip_verify": skip_verify_now(live_code, now),
        "state": live_code.state,
        "user": users,
        "is_exclusive": live_code.is_exclusive,
    }


def live_code_publish(*, live_code: LiveCode, now: datetime | None = None) -> LiveCode:
    """Create or update what WeCom holds for the code and mark it active.

    Native: one multi-user contact way (type 2, so its user list can change later); an
    existing config_id is updated in place and its printed QR keeps working. Landing: a few
    single-user contact ways (slots) per pool member.
    """
    client = WeComClient(live_code.corp)
    problems = staff_problems(live_code, client)
    if problems:
        raise PublishError("; ".join(problems))
    if live_code.mode == LiveCode.Mode.LANDING:
        if not live_code.pool.filter(is_enabled=True).exists():
            raise PublishError(_("Add staff to the pool first."))
        for member in live_code.pool.filter(is_enabled=True).select_related("staff"):
            landing_slots_top_up(live_code=live_code, staff=member.staff, client=client)
        LiveCode.objects.filter(pk=live_code.pk).update(
            status=LiveCode.Status.ACTIVE, published_at=timezone.now(), sync_error=""
        )
        live_code.refresh_from_db()
        return live_code

    users = native_userids(live_code, now)
    if not users:
        raise PublishError(_("Nobody in the pool can receive customers now (caps, shifts)."))
    if not live_code.state:
        live_code.state = encode_state("native", live_code.pk)
    body = _contact_way_body(live_code, users, now)
    try:
        if live_code.config_id:
            client.contact_way_update({"config_id": live_code.config_id, **body})
        else:
            answer = client.contact_way_add({"type": 2, "scene": 2, **body})
            live_code.config_id = answer["config_id"]
            live_code.qr_code = answer.get("qr_code", "")
    except WeComError as exc:
        LiveCode.objects.filter(pk=live_code.pk).update(sync_error=errcode_message(exc)[:255])
        raise PublishError(errcode_message(exc), errcode=exc.errcode) from exc
    live_code.status = LiveCode.Status.ACTIVE
    live_code.published_users = users
    live_code.published_skip_verify = body["skip_verify"]
    live_code.published_at = timezone.now()
    live_code.sync_error = ""
    live_code.save(
        update_fields=["state", "config_id", "qr_code", "status", "published_users",
                       "published_skip_verify", "published_at", "sync_error", "updated_at"]
    )  # fmt: skip
    return live_code


def live_codes_status_set(*, live_code_ids: list[int], status: str) -> list[LiveCode]:
    """Pause or archive codes (those not already in `status`); returns the codes changed.
    Paused landing codes stop taking scans; a native code's printed QR still reaches WeCom,
    and adds through it are still attributed."""
    codes = list(
        LiveCode.objects.filter(pk__in=live_code_ids).exclude(status=status).only("pk", "name")
    )
    LiveCode.objects.filter(pk__in=[c.pk for c in codes]).update(
        status=status, updated_at=timezone.now()
    )
    return codes


def landing_slots_top_up(
    *, live_code: LiveCode, staff: Staff, client: WeComClient | None = None
) -> int:
    """Keep SLOTS_PER_STAFF free slots for a staff member of a landing code; returns how many
    were created. Each slot is a single-user contact way whose state names code and slot."""
    client = client or WeComClient(live_code.corp)
    now = timezone.now()
    slots = LandingSlot.objects.filter(live_code=live_code, staff=staff).exclude(config_id="")
    free = slots.exclude(leased_until__gt=now).count()
    room = SLOTS_MAX_PER_STAFF - slots.count()
    wanted = max(0, min(SLOTS_PER_STAFF - free, room))
    created = 0
    for _index in range(wanted):
        slot = LandingSlot.objects.create(corp=live_code.corp, live_code=live_code, staff=staff)
        slot.state = encode_state("landing", live_code.pk, slot.pk)
        try:
            answer = client.contact_way_add(
                {"type": 1, "scene": 2, "remark": live_code.name[:30], "state": slot.state,
                 "user": [staff.userid], "skip_verify": skip_verify_now(live_code),
                 "is_exclusive": live_code.is_exclusive}
            )  # fmt: skip
        except WeComError as exc:
            slot.delete()
            raise PublishError(f"{staff}: {errcode_message(exc)}", errcode=exc.errcode) from exc
        slot.config_id, slot.qr_code = answer["config_id"], answer.get("qr_code", "")
        slot.save(update_fields=["state", "config_id", "qr_code"])
        created += 1
    return created


def _sync_key(live_code_id: int) -> str:
    return f"live-code-sync:{live_code_id}"


def live_code_request_sync(*, live_code_id: int) -> None:
    """Debounced: at most one user-list sync per code every few seconds, however many adds
    reach a cap at once (WeCom rate limits, 45009)."""
    if cache.add(_sync_key(live_code_id), 1, SYNC_DEBOUNCE_SECONDS):
        from channels_app.tasks import live_code_sync_task

        def queue() -> None:
            live_code_sync_task.apply_async((live_code_id,), countdown=SYNC_DEBOUNCE_SECONDS)

        transaction.on_commit(queue)


def live_code_sync(*, live_code_id: int, now: datetime | None = None) -> bool:
    """Update a native code's user list (and skip_verify) when the eligible set changed;
    True when WeCom was updated. Unchanged sets cost no API call."""
    # Requests arriving from now on must schedule another sync: this one may not see them.
    cache.delete(_sync_key(live_code_id))
    live_code = LiveCode.objects.select_related("corp").filter(pk=live_code_id).first()
    if (
        live_code is None
        or live_code.mode != LiveCode.Mode.NATIVE
        or live_code.status != LiveCode.Status.ACTIVE
        or not live_code.config_id
    ):
        return False
    users = native_userids(live_code, now)
    if not users:
        # Everyone is capped or off shift: WeCom needs at least one user, so keep the current
        # list, less anyone who left; with nobody left at all, tell the operator.
        active = set(
            Staff.objects.filter(
                corp=live_code.corp, userid__in=live_code.published_users,
                status=Staff.Status.ACTIVE,
            ).values_list("userid", flat=True)
        )  # fmt: skip
        users = [u for u in live_code.published_users if u in active]
        if not users:
            LiveCode.objects.filter(pk=live_code.pk).update(
                sync_error=_("Nobody in the pool can receive customers (all left or disabled).")
            )
            return False
    skip_verify = skip_verify_now(live_code, now)
    same_users = set(users) == set(live_code.published_users)
    if same_users and skip_verify == live_code.published_skip_verify:
        return False
    try:
        WeComClient(live_code.corp).contact_way_update(
            {"config_id": live_code.config_id, "user": users, "skip_verify": skip_verify}
        )
    except WeComError as exc:
        LiveCode.objects.filter(pk=live_code.pk).update(sync_error=errcode_message(exc)[:255])
        raise
    LiveCode.objects.filter(pk=live_code.pk).update(
        published_users=users, published_skip_verify=skip_verify, sync_error=""
    )
    return True


@dataclass
class ImportReport:
    created: list[LiveCode] = field(default_factory=list)
    skipped: int = 0


def imported_channel(corp: Corp) -> Channel:
    channel, _created = Channel.objects.get_or_create(
        corp=corp, code="imported", defaults={"name": _("Imported from WeCom")}
    )
    return channel


def live_codes_import(*, corp: Corp, days: int = 3650, page_size: int = 1000) -> ImportReport:
    """Adopt contact ways made elsewhere (list_contact_way by cursor, then get_contact_way):
    each becomes an active native code keeping its config_id, QR and state, so adds through
    it are attributed from now on."""
    client = WeComClient(corp)
    known = set(LiveCode.objects.filter(corp=corp).values_list("config_id", flat=True))
    known |= set(LandingSlot.objects.filter(corp=corp).values_list("config_id", flat=True))
    report = ImportReport()
    now = int(timezone.now().timestamp())
    ids = client.contact_way_ids(start_time=now - days * 86400, end_time=now, limit=page_size)
    for config_id in ids:
        if config_id in known:
            report.skipped += 1
            continue
        way = client.contact_way_get(config_id)
        if way.get("is_temp"):
            report.skipped += 1
            continue
        report.created.append(_adopt(corp, way))
    return report


@transaction.atomic
def _adopt(corp: Corp, way: dict) -> LiveCode:
    """An active native code for the contact way, its pool the way's users (already WeCom's
    list: nothing to sync)."""
    import secrets

    from channels_app.services.live_codes import live_code_create  # it syncs through this module

    users = list(way.get("user") or [])
    return live_code_create(
        corp=corp,
        channel=imported_channel(corp),
        name=(way.get("remark") or way["config_id"])[:64],
        slug=f"imported-{secrets.token_hex(5)}",
        mode=LiveCode.Mode.NATIVE,
        status=LiveCode.Status.ACTIVE,
        skip_verify=bool(way.get("skip_verify", True)),
        is_exclusive=bool(way.get("is_exclusive", False)),
        config_id=way["config_id"],
        qr_code=way.get("qr_code") or "",
        state=(way.get("state") or "")[:30],
        published_users=users,
        published_skip_verify=bool(way.get("skip_verify", True)),
        published_at=timezone.now(),
        imported=True,
        pool=[{"staff": staff_get_or_create(corp=corp, userid=u)} for u in dict.fromkeys(users)],
    )
