"""The small tables: the corp, its staff, channels with their costs, live codes with their
pools, and the landing slots published with them. Written first; kept in memory as the
lookups the big tables are generated from.

Rows are what the product writes: a native code carries its own state (`encode_state
("native", id)`, what `live_code_publish` stores) and its WeCom config_id; a landing code has
neither, its slots do (`encode_state("landing", code, slot)`, three per pool member at
publication, more when all are leased: `landing_slots_top_up`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from itertools import accumulate

from bench.reports.bulk import CopyBuffer, row
from bench.reports.clock import DAY, Clock
from channels_app.state import encode_state

CORP_PK = 1
CORP_ID = "wwbenchreports0001"
SLOTS_PER_STAFF = 3  # channels_app.services.publishing: free slots kept per member
SLOTS_MAX_PER_STAFF = 30

# (channel_type, share of channels, share of landing codes, [(code prefix, group, utm_medium)])
CHANNEL_KINDS = (
    (2, 0.40, 0.80, (("pyq", "朋友圈广告", "cpc"), ("dy", "抖音信息流", "cpc"),
                     ("xhs", "小红书", "social"), ("sph", "视频号", "video"),
                     ("zb", "直播", "live"))),
    (1, 0.25, 0.15, (("md", "门店", "offline"),)),
    (0, 0.15, 0.50, (("dt", "地推", "offline"), ("dthb", "电梯海报", "offline"),
                     ("gzh", "公众号", "owned"))),
    (3, 0.10, 0.40, (("ldx", "老带新", "referral"),)),
    (4, 0.10, 0.30, (("sq", "社群", "community"),)),
)  # fmt: skip
DEPARTMENTS = ("华东销售部", "华南销售部", "华北销售部", "客服中心", "门店运营部", "私域运营部")


def hex_id(number: int, salt: int = 0) -> str:
    """32 hex digits, distinct for distinct numbers (an odd multiplier is a bijection mod
    2**128): WeCom-looking ids and hashes without hashlib's cost."""
    return f"{((number + salt) * 0x9E3779B97F4A7C15F39CC0605CEDC835) & ((1 << 128) - 1):032x}"


@dataclass
class Catalog:
    staff_ids: list[int]
    userids: dict[int, str]
    channel_type: list[int]  # by channel id (index 0 unused)
    channel_utm: list[tuple[str, str, str]]
    channel_codes: list[list[int]]
    code_channel: list[int]  # by code id
    code_landing: list[bool]
    code_pool: list[tuple[int, ...]]
    code_state: list[str]  # native codes only
    code_ids: list[int]
    code_cum: list[float]  # cumulative popularity, for first adds
    landing_ids: list[int]
    landing_cum: list[float]
    # (code id, staff id) -> [[slot id, leased until (epoch s, 0 never), created at], ...]
    slots: dict[tuple[int, int], list[list[int]]] = field(default_factory=dict)
    next_slot_id: int = 1

    @property
    def codes(self) -> int:
        return len(self.code_ids)


def catalog_write(
    cursor,
    *,
    clock: Clock,
    rng: random.Random,
    staff: int,
    channels: int,
    codes: int,
    customers_per_day: float,
) -> Catalog:
    """Write corp, staff, channels, costs, live codes and pools; return the lookups."""
    created = clock.start - 90 * DAY
    corp = CopyBuffer(cursor, "wecom_corp", ("id", "corp_id", "name", "secret", "agent_id",
                      "callback_token", "encoding_aes_key", "time_zone", "currency",
                      "is_active", "created_at", "language"))  # fmt: skip
    aes_key = ("bench" + hex_id(2, 7))[:43]
    # Secrets are stored encrypted (scrm.wecom.vault); COPY bypasses the model's field.
    from scrm.wecom.vault import seal

    corp.add(row(CORP_PK, CORP_ID, "渠道报表压测企业", seal(hex_id(1, 7)), "1000002",
                 seal("benchtoken"), seal(aes_key), clock.tz_name, "CNY", True,
                 clock.text(created), "zh-hans"))  # fmt: skip
    corp.flush()

    staff_ids = list(range(1, staff + 1))
    userids = {n: f"bench{n:04d}" for n in staff_ids}
    buffer = CopyBuffer(cursor, "contacts_staff", ("id", "corp_id", "userid", "name",
                        "department", "status", "left_at", "avg_reply_minutes",
                        "created_at"))  # fmt: skip
    for n in staff_ids:
        buffer.add(row(n, CORP_PK, userids[n], f"顾问{n:03d}", rng.choice(DEPARTMENTS), "active",
                       None, round(rng.uniform(0.5, 30), 1), clock.text(created + n)))  # fmt: skip
    buffer.flush()

    kinds = _channel_kinds(channels, rng)
    # Zipf-like popularity over the channels in random order: a few carry most customers.
    ranks = list(range(1, channels + 1))
    rng.shuffle(ranks)
    channel_weight = [0.0] + [1 / rank**0.9 for rank in ranks]
    buffer = CopyBuffer(cursor, "channels_app_channel", ("id", "corp_id", "name", "code",
                        "channel_type", "category", "utm_source", "utm_medium", "utm_campaign",
                        "utm_content", "is_active", "notes", "welcome_text",
                        "welcome_attachments", "created_at"))  # fmt: skip
    channel_type, channel_utm, landing_share = [0], [("", "", "")], [0.0]
    for cid, (ctype, share, (prefix, group, medium)) in enumerate(kinds, start=1):
        campaign = f"{prefix}{cid:03d}"
        buffer.add(row(cid, CORP_PK, f"{group}{cid:03d}", f"{prefix}_{cid:04d}", ctype, group,
                       prefix, medium, campaign, "", True, "", "", "[]",
                       clock.text(created + DAY + cid)))  # fmt: skip
        channel_type.append(ctype)
        channel_utm.append((prefix, medium, campaign))
        landing_share.append(share)
    buffer.flush()
    _costs_write(cursor, clock, rng, channel_type, channel_weight, customers_per_day)

    catalog = Catalog(
        staff_ids=staff_ids, userids=userids, channel_type=channel_type,
        channel_utm=channel_utm, channel_codes=[[] for _ in range(channels + 1)],
        code_channel=[0], code_landing=[False], code_pool=[()], code_state=[""],
        code_ids=[], code_cum=[], landing_ids=[], landing_cum=[],
    )  # fmt: skip
    # Every channel has a code; the rest go to channels at random.
    owners = list(range(1, channels + 1)) + rng.choices(range(1, channels + 1), k=codes - channels)
    owners.sort()
    weights = []
    for code_id, cid in enumerate(owners, start=1):
        catalog.code_channel.append(cid)
        catalog.code_landing.append(rng.random() < landing_share[cid])
        catalog.code_pool.append(tuple(sorted(rng.sample(staff_ids, rng.randint(3, 8)))))
        catalog.code_state.append(
            "" if catalog.code_landing[code_id] else encode_state("native", code_id)
        )
        catalog.channel_codes[cid].append(code_id)
        catalog.code_ids.append(code_id)
        weights.append(rng.lognormvariate(0, 0.8))
    _shares_per_channel(catalog, weights, channel_weight)
    catalog.code_cum = list(accumulate(weights))
    landing = [(c, w) for c, w in zip(catalog.code_ids, weights, strict=True)
               if catalog.code_landing[c]]  # fmt: skip
    catalog.landing_ids = [c for c, _ in landing]
    catalog.landing_cum = list(accumulate(w for _, w in landing))
    _codes_write(cursor, clock, rng, catalog, created)
    return catalog


def _channel_kinds(channels: int, rng: random.Random) -> list[tuple[int, float, tuple]]:
    kinds = []
    for ctype, share, landing, prefixes in CHANNEL_KINDS:
        kinds += [(ctype, landing, rng.choice(prefixes))] * max(1, round(channels * share))
    rng.shuffle(kinds)
    return (kinds * 2)[:channels]


def _shares_per_channel(
    catalog: Catalog, weights: list[float], channel_weight: list[float]
) -> None:
    """A code's weight: its channel's popularity times its share of the channel (a channel
    with many codes is not more popular for having them)."""
    totals: dict[int, float] = {}
    for code_id, w in zip(catalog.code_ids, weights, strict=True):
        cid = catalog.code_channel[code_id]
        totals[cid] = totals.get(cid, 0.0) + w
    for i, code_id in enumerate(catalog.code_ids):
        cid = catalog.code_channel[code_id]
        weights[i] = channel_weight[cid] * weights[i] / totals[cid]


def _codes_write(cursor, clock: Clock, rng: random.Random, catalog: Catalog, created: int) -> None:
    codes = CopyBuffer(cursor, "channels_app_livecode", ("id", "corp_id", "channel_id", "name",
                       "slug", "mode", "status", "strategy", "penalize_slow_reply",
                       "skip_verify", "auto_accept_from", "auto_accept_to", "is_exclusive",
                       "tag_ids", "welcome_text", "welcome_attachments", "daily_target",
                       "total_target", "config_id", "qr_code", "state", "published_users",
                       "published_skip_verify", "published_at", "sync_error", "imported",
                       "created_at", "updated_at", "public_title", "language"))  # fmt: skip
    pool = CopyBuffer(cursor, "channels_app_poolmember", ("id", "corp_id", "live_code_id",
                      "staff_id", "weight", "daily_cap", "is_backup", "is_enabled"))  # fmt: skip
    member_id = 0
    for code_id in catalog.code_ids:
        at = created + 2 * DAY + code_id * 60
        landing = catalog.code_landing[code_id]
        members = catalog.code_pool[code_id]
        strategy = rng.choice(("least_loaded", "least_loaded", "round_robin", "weighted"))
        config_id = "" if landing else hex_id(code_id, 11)
        codes.add(row(
            code_id, CORP_PK, catalog.code_channel[code_id], f"活码{code_id:04d}",
            f"rep-{code_id:05d}", "landing" if landing else "native", "active", strategy,
            False, True, None, None, False, "[]", "", "[]", None, None, config_id,
            "" if landing else f"https://wework.qpic.cn/wwpic/bench/{config_id}/0",
            catalog.code_state[code_id],
            "[]" if landing else json.dumps([catalog.userids[s] for s in members]),
            None if landing else True, clock.text(at + 60), "", False, clock.text(at),
            clock.text(at + 60), "", "",
        ))  # fmt: skip
        for staff_id in members:
            member_id += 1
            weight = rng.randint(1, 5) if strategy == "weighted" else 1
            pool.add(row(member_id, CORP_PK, code_id, staff_id, weight, None, False, True))
            if landing:
                catalog.slots[(code_id, staff_id)] = [
                    [slot_new(catalog), 0, at + 60] for _ in range(SLOTS_PER_STAFF)
                ]
    codes.flush()
    pool.flush()


def slot_new(catalog: Catalog) -> int:
    slot_id = catalog.next_slot_id
    catalog.next_slot_id += 1
    return slot_id


def slots_write(cursor, clock: Clock, catalog: Catalog) -> int:
    """The landing slots as the scans left them (leased_until of each slot's last lease)."""
    buffer = CopyBuffer(cursor, "channels_app_landingslot", ("id", "corp_id", "live_code_id",
                        "staff_id", "config_id", "qr_code", "state", "leased_until",
                        "created_at"))  # fmt: skip
    for (code_id, staff_id), slots in catalog.slots.items():
        for slot_id, leased_until, created_at in slots:
            config_id = hex_id(slot_id, 13)
            buffer.add(row(
                slot_id, CORP_PK, code_id, staff_id, config_id,
                f"https://wework.qpic.cn/wwpic/bench/{config_id}/0",
                encode_state("landing", code_id, slot_id),
                clock.text(leased_until) if leased_until else None, clock.text(created_at),
            ))  # fmt: skip
    buffer.flush()
    return buffer.rows


def _costs_write(
    cursor,
    clock: Clock,
    rng: random.Random,
    channel_type: list[int],
    weight: list[float],
    customers_per_day: float,
) -> None:
    """A few costs per channel over date ranges: ad flights of 3 to 9 weeks back to back
    (gaps between some), monthly store and referral-reward costs, none for community groups.
    Ranges may start before the data's first day, as real flights do."""
    from datetime import timedelta

    buffer = CopyBuffer(cursor, "channels_app_channelcost", ("id", "corp_id", "channel_id",
                        "start_date", "end_date", "amount", "currency", "note",
                        "created_at", "updated_at"))  # fmt: skip
    total_weight = sum(weight)
    cost_id = 0
    for cid in range(1, len(channel_type)):
        ctype = channel_type[cid]
        if ctype == 4 or (ctype == 0 and rng.random() < 0.5):
            continue
        # Yuan per day: about 40 yuan per expected new customer for ads, less offline.
        per_day = customers_per_day * weight[cid] / total_weight * rng.uniform(15, 90)
        per_day *= 1.0 if ctype == 2 else 0.4
        day = clock.first - timedelta(days=rng.randint(0, 40))
        while day <= clock.last:
            length = rng.randint(21, 63) if ctype == 2 else 30
            end = day + timedelta(days=length - 1)
            if rng.random() < 0.85:
                cost_id += 1
                entered = clock.start + (day - clock.first).days * DAY
                cents = max(100, int(per_day * length * rng.uniform(0.7, 1.3) * 100))
                buffer.add(row(cost_id, CORP_PK, cid, day.isoformat(), end.isoformat(),
                               f"{cents // 100}.{cents % 100:02d}", "CNY", "",
                               clock.text(entered), clock.text(entered)))  # fmt: skip
            day = end + timedelta(days=1 + (rng.randint(0, 14) if ctype == 2 else 0))
    buffer.flush()
