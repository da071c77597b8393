"""The landing store on the database (the plain path; see landing_store for the contract): a
visit is one transaction that checks the returning device on the Scan table, claims a
DailyCounter below its cap with a conditional update (rows held by concurrent visits skipped
on a first pass), leases a LandingSlot under a row lock and inserts the Scan."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import F

from channels_app.assignment import Candidate
from channels_app.landing_store import Outcome, VisitRequest
from channels_app.lock_objects import daily_counter_claim, landing_slot_lease_lock
from channels_app.models import LandingSlot, Scan
from channels_app.services.assignment import daily_counters_read
from scrm.db import insert_returning_pk


class DatabaseStore:
    """Stateless: one instance serves every thread."""

    def loads(self, visit: VisitRequest) -> dict[int, int]:
        """The day's DailyCounter.assigned of the visit's members (created when missing), read
        without a lock: they rank the members; the claim checks the cap on the row itself."""
        counters = daily_counters_read(live_code=visit.live_code, members=visit.members,
                                       day=visit.day)  # fmt: skip
        return {staff_id: counter.assigned for staff_id, counter in counters.items()}

    @transaction.atomic
    def attempt(
        self, visit: VisitRequest, ranked: list[Candidate], *, record_busy: bool
    ) -> Outcome:
        previous = self._returning(visit)
        if previous is not None:
            self._lease_renew(previous.slot_id, visit)
            scan = self._record(visit, previous.staff_id, previous.slot_id, reused=True)
            return Outcome("renew", staff_id=previous.staff_id, slot_id=previous.slot_id,
                           scan=scan)  # fmt: skip
        staff_id = self._claim(visit, ranked)
        if staff_id is None and not record_busy:
            return Outcome("busy", loads=self.loads(visit))
        slot = self._lease(visit, staff_id) if staff_id is not None else None
        scan = self._record(visit, staff_id, slot.pk if slot else None, reused=False)
        return Outcome("claim", staff_id=staff_id, slot_id=slot.pk if slot else None, slot=slot,
                       scan=scan)  # fmt: skip

    def free_slots(self, *, live_code_id: int, staff_id: int, now: datetime) -> int:
        return (
            LandingSlot.objects.filter(live_code_id=live_code_id, staff_id=staff_id)
            .exclude(config_id="")
            .exclude(leased_until__gt=now)
            .count()
        )

    @staticmethod
    def _returning(visit: VisitRequest) -> Scan | None:
        """The device's last scan with a slot within the return window, if its member may keep
        visitors and no later scan leased that slot. Most visitors are new: ids only."""
        previous = Scan.objects.filter(
            live_code=visit.live_code,
            device_key=visit.device_key,
            created_at__gte=visit.now - visit.return_window,
            slot__isnull=False,
        )
        if visit.store_id is not None:
            previous = previous.filter(store_id=visit.store_id)
        previous = previous.only("pk", "created_at", "staff_id", "slot_id").order_by(
            "-created_at"
        ).first()  # fmt: skip
        if previous is None or previous.staff_id not in visit.keepers:
            return None
        newer = Scan.objects.filter(slot=previous.slot_id, created_at__gt=previous.created_at)
        return None if newer.exists() else previous

    @staticmethod
    def _claim(visit: VisitRequest, ranked: list[Candidate]) -> int | None:
        """The first ranked member whose counter can be claimed below its cap: held rows are
        skipped on the first pass, so concurrent visits spread over the pool instead of
        queueing on one row; only when every candidate is held does a visit wait."""
        live_code = visit.live_code
        for wait in (False, True):
            for candidate in ranked:
                if daily_counter_claim(
                    corp_id=live_code.corp_id, live_code_id=live_code.pk,
                    staff_id=candidate.staff_id, day=visit.day, cap=candidate.cap, wait=wait,
                ):  # fmt: skip
                    return candidate.staff_id
        return None

    @staticmethod
    def _lease(visit: VisitRequest, staff_id: int) -> LandingSlot | None:
        """The member's slot whose lease ends first, never-leased first (when every slot is
        leased, the earlier visitor of the one leased longest ago loses exactness, never the
        add; the top-up adds slots)."""
        slot = landing_slot_lease_lock(live_code_id=visit.live_code.pk, staff_id=staff_id)
        if slot is None:  # every slot is being leased by a concurrent visit right now
            slot = (
                LandingSlot.objects.filter(live_code=visit.live_code, staff_id=staff_id)
                .exclude(config_id="")
                .order_by(F("leased_until").asc(nulls_first=True), "pk")
                .first()
            )
        if slot is not None:
            DatabaseStore._lease_renew(slot.pk, visit)
        return slot

    @staticmethod
    def _lease_renew(slot_id: int, visit: VisitRequest) -> None:
        LandingSlot.objects.filter(pk=slot_id).update(leased_until=visit.now + visit.lease)

    @staticmethod
    def _record(
        visit: VisitRequest, staff_id: int | None, slot_id: int | None, *, reused: bool
    ) -> Scan:
        scan = Scan(**visit.scan, created_at=visit.now, staff_id=staff_id, slot_id=slot_id,
                    reused=reused)  # fmt: skip
        insert_returning_pk(scan)  # the ORM's INSERT compiler costs more than the statement
        return scan


database_store = DatabaseStore()
