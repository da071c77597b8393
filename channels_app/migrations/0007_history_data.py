"""Relation history from what the current-state tables remember, and corps on every row.

- Pool members, shifts, special dates, stores and calibration deviations take their corp.
- Every add the database knows becomes an `added` history row: each Attribution's add time,
  each relation's latest add (FollowRelation.created_at) and each first source's add (a re-add
  had moved the relation's add time on, so the first add survived only there). A relation that
  is deleted or transferred gets that event at the time it changed.
- Attributions are linked to their add; adds that were never attributed (details refreshes and
  calibration backfills bypassed attribution) are attributed from their state here.
- First sources point at the customer's earliest add, and is_first_touch is projected from it,
  as channels_app.services.attribution.first_touch_project does from now on.

The state resolution below is a frozen copy of state_resolve's lookups on the historical models
(a migration must not import models that later change); parse_state is a pure function.
"""

from datetime import timedelta

from django.db import migrations
from django.db.models import OuterRef, Subquery

from channels_app.state import parse_state

SCAN_CLOCK_SKEW = timedelta(minutes=2)
BATCH = 500


def _corps_from_live_code(apps):
    LiveCode = apps.get_model("channels_app", "LiveCode")
    corp_of_code = Subquery(LiveCode.objects.filter(pk=OuterRef("live_code_id")).values("corp_id")[:1])
    for name in ("PoolMember", "ScheduleRule", "ScheduleOverride", "Store"):
        apps.get_model("channels_app", name).objects.filter(corp__isnull=True).update(
            corp_id=corp_of_code
        )
    CalibrationRun = apps.get_model("contacts", "CalibrationRun")
    CalibrationDeviation = apps.get_model("contacts", "CalibrationDeviation")
    corp_of_run = Subquery(CalibrationRun.objects.filter(pk=OuterRef("run_id")).values("corp_id")[:1])
    CalibrationDeviation.objects.filter(corp__isnull=True).update(corp_id=corp_of_run)


def _history(apps):
    FollowRelation = apps.get_model("contacts", "FollowRelation")
    FirstSource = apps.get_model("contacts", "FirstSource")
    RelationEvent = apps.get_model("contacts", "RelationEvent")
    Attribution = apps.get_model("channels_app", "Attribution")
    first_sources = {
        (fs.external_contact_id, fs.staff_id): fs for fs in FirstSource.objects.all().iterator()
    }
    events = []
    for relation in FollowRelation.objects.order_by("pk").iterator(chunk_size=BATCH):
        adds = {}  # add time -> (state, add_way, backfilled)
        for added_at, state in Attribution.objects.filter(follow_relation=relation).values_list(
            "added_at", "state"
        ):
            adds[added_at] = (state, None, False)
        fs = first_sources.get((relation.external_contact_id, relation.staff_id))
        if fs is not None:
            known = adds.get(fs.added_at)
            adds[fs.added_at] = (known[0] if known else fs.state, fs.add_way, fs.backfilled)
        if relation.created_at is not None:
            known = adds.get(relation.created_at)
            adds[relation.created_at] = (
                known[0] if known else relation.state,
                relation.add_way,
                relation.backfilled if not known else known[2],
            )
        common = {
            "corp_id": relation.corp_id,
            "follow_relation_id": relation.pk,
            "external_contact_id": relation.external_contact_id,
            "staff_id": relation.staff_id,
        }
        for added_at, (state, add_way, backfilled) in adds.items():
            events.append(RelationEvent(**common, kind="added", occurred_at=added_at,
                                        state=state[:64], add_way=add_way, backfilled=backfilled))
        if relation.status != "active":
            at = relation.status_changed_at or relation.deleted_at or relation.updated_at
            events.append(RelationEvent(**common, kind=relation.status, occurred_at=at,
                                        fail_reason=relation.transfer_fail_reason))
        if len(events) >= BATCH:
            RelationEvent.objects.bulk_create(events, ignore_conflicts=True)
            events = []
    RelationEvent.objects.bulk_create(events, ignore_conflicts=True)


def _resolve(apps, corp_id, state, added_at):
    """(state_kind, live_code, scan, referral) of one state, as state_resolve resolves it."""
    LiveCode = apps.get_model("channels_app", "LiveCode")
    LandingSlot = apps.get_model("channels_app", "LandingSlot")
    Scan = apps.get_model("channels_app", "Scan")
    ReferralCode = apps.get_model("channels_app", "ReferralCode")
    parsed = parse_state(state)
    codes = LiveCode.objects.filter(corp_id=corp_id)
    if parsed.kind == "native":
        return parsed.kind, codes.filter(pk=parsed.object_id).first(), None, None
    if parsed.kind == "landing":
        scan = None
        slot = LandingSlot.objects.filter(
            pk=parsed.second_id, live_code_id=parsed.object_id, corp_id=corp_id
        ).first()
        if slot is not None:
            scan = (
                Scan.objects.filter(slot=slot, created_at__lte=added_at + SCAN_CLOCK_SKEW)
                .order_by("-created_at")
                .first()
            )
        referral = ReferralCode.objects.filter(pk=scan.referral_id).first() if scan else None
        return parsed.kind, codes.filter(pk=parsed.object_id).first(), scan, referral
    if parsed.kind == "referral":
        referral = ReferralCode.objects.filter(pk=parsed.object_id, corp_id=corp_id).first()
        code = codes.filter(pk=referral.live_code_id).first() if referral else None
        return parsed.kind, code, None, referral
    if parsed.kind == "foreign":
        return parsed.kind, codes.filter(state=parsed.raw).first(), None, None
    return parsed.kind, None, None, None


def _attributions(apps):
    RelationEvent = apps.get_model("contacts", "RelationEvent")
    Attribution = apps.get_model("channels_app", "Attribution")
    adds = RelationEvent.objects.filter(kind="added")
    for event in adds.iterator(chunk_size=BATCH):
        linked = Attribution.objects.filter(
            follow_relation_id=event.follow_relation_id, added_at=event.occurred_at
        ).update(add_event=event)
        if linked:
            continue
        kind, code, scan, referral = _resolve(apps, event.corp_id, event.state, event.occurred_at)
        Attribution.objects.create(
            corp_id=event.corp_id,
            add_event=event,
            external_contact_id=event.external_contact_id,
            follow_relation_id=event.follow_relation_id,
            staff_id=event.staff_id,
            live_code=code,
            channel_id=code.channel_id if code else None,
            scan=scan,
            referrer_id=referral.referrer_id if referral else None,
            store_id=scan.store_id if scan else None,
            state=event.state,
            state_kind=kind,
            added_at=event.occurred_at,
        )
    # An attribution whose add time matched no relation's (cannot happen with the data above;
    # kept from being left without its add).
    Attribution.objects.filter(add_event__isnull=True).delete()


def _first_touch(apps):
    ExternalContact = apps.get_model("contacts", "ExternalContact")
    FirstSource = apps.get_model("contacts", "FirstSource")
    RelationEvent = apps.get_model("contacts", "RelationEvent")
    Attribution = apps.get_model("channels_app", "Attribution")
    contacts = ExternalContact.objects.filter(relation_history__kind="added").distinct()
    for contact in contacts.iterator(chunk_size=BATCH):
        first = (
            RelationEvent.objects.filter(external_contact=contact, kind="added")
            .order_by("occurred_at", "staff__userid", "pk")
            .first()
        )
        FirstSource.objects.update_or_create(
            corp_id=contact.corp_id,
            external_contact=contact,
            defaults={
                "add_event": first,
                "staff_id": first.staff_id,
                "added_at": first.occurred_at,
                "add_way": first.add_way,
                "state": first.state,
                "backfilled": first.backfilled,
            },
        )
        Attribution.objects.filter(external_contact=contact).exclude(add_event=first).update(
            is_first_touch=False
        )
        Attribution.objects.filter(add_event=first).update(is_first_touch=True)
    FirstSource.objects.filter(add_event__isnull=True).delete()


def forwards(apps, schema_editor):
    _corps_from_live_code(apps)
    _history(apps)
    _attributions(apps)
    _first_touch(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0006_history_tenancy"),
        ("contacts", "0007_history_tenancy"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
