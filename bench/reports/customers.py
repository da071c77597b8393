"""The customer pass: per customer, the rows the product's add and delete steps leave
(scrm.pipeline.add_record, contacts.services.relation_event_record and its projections,
channels_app.services.attribution), and the customer's conversions.

- contacts_relationevent: every add and deletion, append-only, at WeCom's time (whole
  seconds); an add's state is its code's (native) or its slot's (landing), add_way as
  externalcontact/get told it; a deletion has neither.
- channels_app_attribution: one per add (live code, channel, scan of a landing add, state,
  state_kind as channels_app.state parses it); is_first_touch only on the earliest add.
- contacts_followrelation: follow_relation_project's result: created_at, state and add_way of
  the latest add, the status the events leave in time order, backfilled of the first add.
- contacts_firstsource: first_source_project's result, the earliest add.
- contacts_conversionevent: consults, orders, refunds matched at import (by external_userid,
  or by unionid when only that was sent); refunds sent negative or positive, as source
  systems do; a few rows never matched.
"""

from __future__ import annotations

import math
import random

from bench.reports.bulk import NULL, CopyBuffer
from bench.reports.catalog import CORP_PK, Catalog, hex_id
from bench.reports.clock import DAY, Clock
from bench.reports.lifecycles import (
    DELETED_BY_CUSTOMER,
    FLAG_BACKFILLED,
    FLAG_FOREIGN,
    FOREIGN_STATES,
    Lifecycles,
)
from channels_app.state import encode_state

DELETION_KINDS = {DELETED_BY_CUSTOMER: "deleted_by_customer"}
# Who initiated an add (RelationEvent.initiator): a member searching a phone number or adding
# from the phone's contacts; any other way, the customer.
INITIATORS = {2: "staff", 5: "staff"}
# Order prices in cents, and how often each sells.
PRICES = (990, 1990, 4900, 9900, 12900, 19900, 29900, 39900, 59900, 99900, 129900, 299900)
PRICE_WEIGHTS = (6, 10, 12, 16, 10, 14, 10, 7, 6, 5, 2, 2)

TABLES = {
    "contacts_externalcontact": ("id", "corp_id", "external_userid", "name", "type", "gender",
        "unionid", "avatar", "corp_name", "details_fetched_at", "details_error",
        "details_attempts", "erased_at", "created_at", "updated_at"),
    "contacts_followrelation": ("id", "corp_id", "external_contact_id", "staff_id",
        "created_at", "add_way", "state", "oper_userid", "remark", "description", "status",
        "status_changed_at", "deleted_at", "transfer_fail_reason", "backfilled", "updated_at"),
    "contacts_relationevent": ("id", "corp_id", "follow_relation_id", "external_contact_id",
        "staff_id", "kind", "occurred_at", "state", "add_way", "initiator", "fail_reason",
        "backfilled", "recorded_at"),
    "channels_app_attribution": ("id", "corp_id", "add_event_id", "external_contact_id",
        "follow_relation_id", "staff_id", "live_code_id", "channel_id", "scan_id",
        "referrer_id", "store_id", "state", "state_kind", "added_at", "is_first_touch",
        "created_at"),
    "contacts_firstsource": ("id", "corp_id", "external_contact_id", "add_event_id",
        "staff_id", "add_way", "state", "added_at", "backfilled", "recorded_at"),
    "contacts_conversionevent": ("id", "corp_id", "external_id", "kind", "custom_name",
        "amount", "currency", "occurred_at", "external_userid", "unionid",
        "external_contact_id", "matched_at", "note", "created_at"),
}  # fmt: skip


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


class CustomerWriter:
    def __init__(
        self, cursor, clock: Clock, catalog: Catalog, life: Lifecycles, rng: random.Random
    ) -> None:
        self.out = {table: CopyBuffer(cursor, table, cols) for table, cols in TABLES.items()}
        self.clock = clock
        self.catalog = catalog
        self.life = life
        self.rng = rng
        self.relation_id = 0
        self.event_id = 0
        self.conversion_id = 0
        self.counts = {"backfilled_adds": 0, "re_adds": 0, "second_relations": 0}

    def _recorded(self, at: int, backfilled: bool) -> int:
        """When the product wrote the row: seconds after the callback, or hours later for an
        add that only the nightly calibration found; never after the window's end."""
        delay = self.rng.randint(6, 20) * 3600 if backfilled else self.rng.randint(1, 4)
        return max(at, min(at + delay, self.clock.end - 1))

    def _state(self, j: int) -> tuple[str, str]:
        """(state, state_kind) of add j, as the code or slot published it."""
        life, catalog = self.life, self.catalog
        code = life.add_code[j]
        if code == 0:
            if life.add_flags[j] & FLAG_FOREIGN:
                return FOREIGN_STATES[j % len(FOREIGN_STATES)], "foreign"
            return "", ""
        if catalog.code_landing[code]:
            return encode_state("landing", code, life.add_slot[j]), "landing"
        return catalog.code_state[code], "native"

    def customer(self, i: int) -> None:
        life, text, rng = self.life, self.clock.text, self.rng
        cid = i + 1
        first, stop = life.add_offsets[i], life.add_offsets[i + 1]
        t0 = life.add_at[first]
        first_backfilled = bool(life.add_flags[first] & FLAG_BACKFILLED)
        seen = self._recorded(t0, first_backfilled)
        external_userid = "wm" + hex_id(cid, 3)[:30]
        wecom_user = rng.random() < 0.04
        unionid = "" if wecom_user or rng.random() < 0.1 else "o" + hex_id(cid, 5)[:27]
        self.out["contacts_externalcontact"].add(
            f"{cid}\t{CORP_PK}\t{external_userid}\t客户{cid}\t{2 if wecom_user else 1}\t"
            f"{rng.randint(0, 2)}\t{unionid}\t\t{'某某科技' if wecom_user else ''}\t"
            f"{text(seen + 2)}\t\t0\t{NULL}\t{text(seen)}\t{text(seen + 2)}\n"
        )
        # Relations: the first (rel 0) and perhaps a second (rel 1) with another member.
        relations = {}
        for j in range(first, stop):
            rel = life.add_rel[j]
            if rel not in relations:
                self.relation_id += 1
                relations[rel] = self.relation_id
        # The customer's history in time order: at the same second an add before a deletion.
        events = [(life.add_at[j], 0, j) for j in range(first, stop)]
        for d in range(life.del_offsets[i], life.del_offsets[i + 1]):
            events.append((life.del_at[d], 1, d))
        events.sort()
        projected = {rel: {"adds": [], "status": "active", "changed": 0, "deleted": 0,
                           "last_recorded": 0} for rel in relations}  # fmt: skip
        first_event = 0
        for at, is_deletion, index in events:
            self.event_id += 1
            if is_deletion:
                rel = life.del_rel[index]
                staff = self._relation_staff(first, stop, rel)
                kind = DELETION_KINDS.get(life.del_kind[index], "deleted_by_staff")
                recorded = self._recorded(at, False)
                self.out["contacts_relationevent"].add(
                    f"{self.event_id}\t{CORP_PK}\t{relations[rel]}\t{cid}\t{staff}\t{kind}\t"
                    f"{text(at)}\t\t{NULL}\t\t\tf\t{text(recorded)}\n"
                )
                state = projected[rel]
                state.update(status=kind, changed=at, deleted=at, last_recorded=recorded)
                continue
            j = index
            rel = life.add_rel[j]
            staff = life.add_staff[j]
            backfilled = bool(life.add_flags[j] & FLAG_BACKFILLED)
            recorded = seen if j == first else self._recorded(at, backfilled)
            add_state, state_kind = self._state(j)
            way = life.add_way[j]
            self.out["contacts_relationevent"].add(
                f"{self.event_id}\t{CORP_PK}\t{relations[rel]}\t{cid}\t{staff}\tadded\t"
                f"{text(at)}\t{add_state}\t{way}\t{INITIATORS.get(way, 'customer')}\t\t"
                f"{'t' if backfilled else 'f'}\t"
                f"{text(recorded)}\n"
            )
            code = life.add_code[j]
            channel = self.catalog.code_channel[code] if code else NULL
            scan = life.add_scan[j] or NULL
            self.out["channels_app_attribution"].add(
                f"{j + 1}\t{CORP_PK}\t{self.event_id}\t{cid}\t{relations[rel]}\t{staff}\t"
                f"{code or NULL}\t{channel}\t{scan}\t{NULL}\t{NULL}\t{add_state}\t{state_kind}\t"
                f"{text(at)}\t{'t' if j == first else 'f'}\t{text(recorded)}\n"
            )
            if j == first:
                first_event = self.event_id
                self.out["contacts_firstsource"].add(
                    f"{cid}\t{CORP_PK}\t{cid}\t{first_event}\t{staff}\t{way}\t{add_state}\t"
                    f"{text(at)}\t{'t' if backfilled else 'f'}\t{text(recorded)}\n"
                )
            elif rel == 0:
                self.counts["re_adds"] += 1
            else:
                self.counts["second_relations"] += 1
            self.counts["backfilled_adds"] += backfilled
            state = projected[rel]
            state["adds"].append((at, add_state, way, backfilled, staff))
            state.update(status="active", changed=at, deleted=0, last_recorded=recorded)
        for rel, relation_id in relations.items():
            self._relation(cid, relation_id, projected[rel], external_userid)
        self._conversions(i, cid, t0, external_userid, unionid)

    def _relation_staff(self, first: int, stop: int, rel: int) -> int:
        life = self.life
        return next(life.add_staff[j] for j in range(first, stop) if life.add_rel[j] == rel)

    def _relation(self, cid: int, relation_id: int, state: dict, external_userid: str) -> None:
        """follow_relation_project: the latest add's time, state and add_way; the status the
        events leave; backfilled as the first add was."""
        text = self.clock.text
        latest_at, add_state, way, _backfilled, staff = state["adds"][-1]
        # A customer who scanned added the member (oper_userid is the customer); otherwise
        # the member added the customer (searched a phone number, a card...).
        oper = external_userid if way in (0, 1) else self.catalog.userids[staff]
        deleted = text(state["deleted"]) if state["deleted"] else NULL
        self.out["contacts_followrelation"].add(
            f"{relation_id}\t{CORP_PK}\t{cid}\t{staff}\t{text(latest_at)}\t{way}\t{add_state}\t"
            f"{oper}\t\t\t{state['status']}\t{text(state['changed'])}\t{deleted}\t\t"
            f"{'t' if state['adds'][0][3] else 'f'}\t{text(state['last_recorded'] + 1)}\n"
        )

    def _conversions(self, i: int, cid: int, t0: int, external_userid: str, unionid: str) -> None:
        life, rng = self.life, self.rng
        end = self.clock.end
        if life.consults[i]:
            if rng.random() < 0.7:  # most ask within the first three days
                delay = min(71 * 3600, int(rng.expovariate(1 / (10 * 3600))) + 60)
            else:
                delay = rng.randint(3 * DAY, 40 * DAY)
            self._conversion(cid, "consult", None, _within(rng, t0, delay, end),
                             external_userid, unionid, t0)  # fmt: skip
        orders = []
        for _ in range(life.orders[i]):
            if rng.random() < 0.8:  # mostly within 30 days of the first add; some late
                delay = min(30 * DAY - 1, int(rng.lognormvariate(math.log(4 * DAY), 1.2)))
            else:
                delay = rng.randint(30 * DAY, 200 * DAY)
            at = _within(rng, t0, max(60, delay), end)
            cents = rng.choices(PRICES, weights=PRICE_WEIGHTS)[0]
            orders.append((at, cents))
            self._conversion(cid, "order", cents, at, external_userid, unionid, t0)
        for at, cents in rng.sample(orders, life.refunds[i]):
            sign = -1 if rng.random() < 0.5 else 1  # source systems disagree on the sign
            refunded = _within(rng, at, rng.randint(DAY, 10 * DAY), end)
            self._conversion(cid, "refund", sign * cents, refunded, external_userid, unionid, t0)

    def _conversion(
        self,
        cid: int | None,
        kind: str,
        cents: int | None,
        at: int,
        external_userid: str,
        unionid: str,
        first_at: int | None = None,
    ) -> None:
        rng, text = self.rng, self.clock.text
        if first_at is not None and at - first_at in EDGES and at + 1 < self.clock.end:
            at += 1
        self.conversion_id += 1
        roll = rng.random()
        if roll < 0.7:  # the order system's API call, seconds later
            received = at + rng.randint(5, 600)
        elif roll < 0.95:  # the next morning's CSV
            received = at + rng.randint(8 * 3600, 30 * 3600)
        else:  # late: revises earlier days' figures
            received = at + rng.randint(3 * DAY, 20 * DAY)
        received = max(at, min(received, self.clock.end - 1))
        sent_userid = external_userid
        if unionid and rng.random() < 0.15:  # only the unionid was sent
            sent_userid = ""
        amount = NULL if cents is None else _money(cents)
        contact = cid or NULL
        matched = text(received) if cid else NULL
        self.out["contacts_conversionevent"].add(
            f"{self.conversion_id}\t{CORP_PK}\t{kind[0]}{self.conversion_id:09d}\t{kind}\t\t"
            f"{amount}\tCNY\t{text(at)}\t{sent_userid}\t{unionid}\t{contact}\t{matched}\t\t"
            f"{text(received)}\n"
        )

    def unmatched(self) -> None:
        """Conversions of people who are no customer (yet): kept unmatched."""
        clock, rng = self.clock, self.rng
        for n in range(self.life.unmatched):
            at = rng.randrange(clock.start, clock.end)
            kind = "order" if rng.random() < 0.6 else "consult"
            cents = rng.choices(PRICES, weights=PRICE_WEIGHTS)[0] if kind == "order" else None
            self._conversion(None, kind, cents, at, "wmunknown" + hex_id(n, 41)[:23], "")

    def flush(self) -> dict[str, int]:
        for buffer in self.out.values():
            buffer.flush()
        return {table: buffer.rows for table, buffer in self.out.items()}


# Window edges of the report (72 hours, 7, 15 and 30 days): a conversion exactly on one
# would make the figures depend on whether an edge is inclusive, which no definition fixes.
EDGES = frozenset(hours * 3600 for hours in (72, 7 * 24, 15 * 24, 30 * 24))


def _within(rng: random.Random, at: int, delay: int, end: int) -> int:
    """`at + delay`, or a random moment between `at` and the end when that is past it;
    never `at` itself."""
    if at + delay < end:
        return at + delay
    return at + 1 + int(rng.random() * max(0, end - 2 - at))


def customers_write(
    cursor, *, clock: Clock, catalog: Catalog, life: Lifecycles, rng: random.Random, log=print
) -> dict[str, int]:
    writer = CustomerWriter(cursor, clock, catalog, life, rng)
    step = max(1, life.customers // 10)
    for i in range(life.customers):
        writer.customer(i)
        if (i + 1) % step == 0:
            log(f"    {i + 1:,} customers")
    writer.unmatched()
    rows = writer.flush()
    return {**rows, **writer.counts}
