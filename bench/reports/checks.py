"""Checks of the generated data against the product's own invariants, one query each (the
foreign keys and unique constraints, validated when they are put back, cover the rest).
Each query counts the rows that break its rule: 0 everywhere means the data is what the
product's projections would have left."""

from __future__ import annotations

CHECKS = {
    "adds without exactly one attribution": """
        SELECT count(*) FROM contacts_relationevent e
        LEFT JOIN channels_app_attribution a ON a.add_event_id = e.id
        WHERE e.kind = 'added' AND a.id IS NULL
    """,
    "attributions not matching their add (customer, staff, relation, time, state)": """
        SELECT count(*) FROM channels_app_attribution a
        JOIN contacts_relationevent e ON e.id = a.add_event_id
        WHERE e.kind <> 'added' OR e.external_contact_id <> a.external_contact_id
           OR e.staff_id <> a.staff_id OR e.follow_relation_id <> a.follow_relation_id
           OR e.occurred_at <> a.added_at OR e.state <> a.state
    """,
    "customers whose first touch is not their earliest add (first_touch_project)": """
        SELECT count(*) FROM (
            SELECT e.external_contact_id, e.id,
                   row_number() OVER (PARTITION BY e.external_contact_id
                                      ORDER BY e.occurred_at, s.userid, e.id) AS n
            FROM contacts_relationevent e JOIN contacts_staff s ON s.id = e.staff_id
            WHERE e.kind = 'added'
        ) first_adds
        JOIN contacts_firstsource fs ON fs.external_contact_id = first_adds.external_contact_id
        JOIN channels_app_attribution a ON a.add_event_id = first_adds.id
        WHERE (first_adds.n = 1) <> (fs.add_event_id = first_adds.id)
           OR (first_adds.n = 1) <> a.is_first_touch
    """,
    "first sources not copying their add (staff, time, state, add_way)": """
        SELECT count(*) FROM contacts_firstsource fs
        JOIN contacts_relationevent e ON e.id = fs.add_event_id
        WHERE e.staff_id <> fs.staff_id OR e.occurred_at <> fs.added_at OR e.state <> fs.state
           OR e.add_way IS DISTINCT FROM fs.add_way OR e.backfilled <> fs.backfilled
    """,
    "relations whose projection differs from their history (follow_relation_project)": """
        SELECT count(*) FROM contacts_followrelation r
        JOIN LATERAL (
            SELECT e.kind, e.occurred_at FROM contacts_relationevent e
            WHERE e.follow_relation_id = r.id
            ORDER BY e.occurred_at DESC, e.kind <> 'added' DESC LIMIT 1
        ) last_event ON true
        JOIN LATERAL (
            SELECT e.occurred_at, e.state, e.add_way FROM contacts_relationevent e
            WHERE e.follow_relation_id = r.id AND e.kind = 'added'
            ORDER BY e.occurred_at DESC LIMIT 1
        ) last_add ON true
        WHERE r.created_at <> last_add.occurred_at OR r.state <> last_add.state
           OR r.add_way IS DISTINCT FROM last_add.add_way
           OR r.status <> CASE last_event.kind WHEN 'added' THEN 'active'
                               ELSE last_event.kind END
           OR r.status_changed_at <> last_event.occurred_at
           OR (r.deleted_at IS NULL) <> (last_event.kind = 'added')
    """,
    "deletions of a relation not active then": """
        SELECT count(*) FROM contacts_relationevent d
        WHERE d.kind IN ('deleted_by_customer', 'deleted_by_staff') AND NOT EXISTS (
            SELECT 1 FROM contacts_relationevent a
            WHERE a.follow_relation_id = d.follow_relation_id AND a.kind = 'added'
              AND a.occurred_at < d.occurred_at
              AND NOT EXISTS (
                  SELECT 1 FROM contacts_relationevent x
                  WHERE x.follow_relation_id = d.follow_relation_id AND x.kind <> 'added'
                    AND x.occurred_at > a.occurred_at AND x.occurred_at < d.occurred_at))
    """,
    "attributions not resolving as state_resolve would (code, channel, kind)": """
        SELECT count(*) FROM channels_app_attribution a
        LEFT JOIN channels_app_livecode lc ON lc.id = a.live_code_id
        LEFT JOIN channels_app_landingslot sl ON sl.state = a.state AND a.state <> ''
        WHERE (lc.id IS NULL) <> (a.state_kind IN ('', 'foreign'))
           OR lc.channel_id IS DISTINCT FROM a.channel_id
           OR (a.state_kind = 'native' AND (lc.mode <> 'native' OR lc.state <> a.state))
           OR (a.state_kind = 'landing' AND (sl.id IS NULL OR lc.mode <> 'landing'
               OR sl.live_code_id <> lc.id
               OR sl.staff_id <> a.staff_id OR a.scan_id IS NULL))
    """,
    "landing adds whose scan is not the slot's latest before the add (landing_scan_for_slot)": """
        SELECT count(*) FROM channels_app_attribution a
        JOIN channels_app_landingslot sl ON sl.state = a.state
        WHERE a.state_kind = 'landing' AND a.scan_id IS DISTINCT FROM (
            SELECT s.id FROM channels_app_scan s
            WHERE s.slot_id = sl.id AND s.created_at <= a.added_at + interval '2 minutes'
            ORDER BY s.created_at DESC LIMIT 1)
    """,
    "events, scans or conversions at or after the data's end": """
        SELECT (SELECT count(*) FROM contacts_relationevent WHERE occurred_at >= end_at)
             + (SELECT count(*) FROM channels_app_scan WHERE created_at >= end_at)
             + (SELECT count(*) FROM contacts_conversionevent WHERE occurred_at >= end_at)
        FROM (SELECT to_timestamp(%(end)s) AS end_at) bounds
    """,
    "matched conversions before their customer's first add": """
        SELECT count(*) FROM contacts_conversionevent c
        JOIN contacts_firstsource fs ON fs.external_contact_id = c.external_contact_id
        WHERE c.occurred_at <= fs.added_at
    """,
}


def checks_run(cursor, *, end) -> dict[str, int]:
    """{check: rows breaking it}."""
    found = {}
    for name, query in CHECKS.items():
        cursor.execute(query, {"end": end})
        found[name] = int(cursor.fetchone()[0])
    return found
