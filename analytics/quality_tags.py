"""The quality ranking's tag action: the customers of the corp's top N channels get the top
channels' tag (高潜力 by default) once each, in WeCom (mark_tag) and on their timeline.

Whose: customers whose first add (first touch decides the channel) falls within the ranking's
period through one of its top N channels, and who still have a live relation. Where: one
relation per customer (contacts.selectors.customers_tag_targets): the first-touch relation when
live, else the latest live one; a customer carrying the tag on any relation is skipped, so the
next hour's run (the channel still in the top N) calls mark_tag for nobody already tagged.

Runs after the hourly ranking as a chain of Celery tasks of CHUNK_SIZE customers, no
transaction held around WeCom calls; one chain per corp at a time (a cache lock naming the
run), so two hours' runs never tag the same customer concurrently. A customer WeCom refuses
(the relation ended meanwhile) is logged and tried again next hour.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import QuerySet

from analytics.models import (
    CustomerCohort,
    DecisionSettings,
    QualityScore,
    decision_settings_for,
)
from analytics.quality import quality_top_channel_ids
from contacts.models import CustomerTag, FollowRelation
from contacts.selectors import customers_tag_targets
from contacts.tags import TagLibraryError, tag_ensure, tags_apply
from scrm.wecom.client import WeComError, WeComTransientError
from scrm.wecom.models import Corp

logger = logging.getLogger("analytics.quality_tags")

# Customers per task run: ~100 mark_tag calls, a few seconds against WeCom; then the task
# queues the next chunk (ids after the last one), so a crash loses little.
CHUNK_SIZE = 100
# One chain per corp; a chain whose worker died frees the corp after this long.
LOCK_SECONDS = 900


def _lock_key(corp_id: int) -> str:
    return f"quality-tags:{corp_id}"


def quality_tag_candidates(*, corp: Corp, after: int = 0) -> QuerySet:
    """Ids (above `after`) of the customers first added through a top-N channel of the latest
    ranking within its period, from the cohort rollups; a subquery, not a list."""
    channel_ids = quality_top_channel_ids(corp=corp)
    latest = QualityScore.objects.filter(corp=corp, channel_id__in=channel_ids).first()
    if latest is None:
        return CustomerCohort.objects.none().values("external_contact_id")
    return CustomerCohort.objects.filter(
        corp=corp,
        channel_id__in=channel_ids,
        day__gte=latest.first,
        day__lte=latest.last,
        external_contact_id__gt=after,
    ).values("external_contact_id")


@dataclass(frozen=True)
class TagChunk:
    tagged: int  # customers tagged in this chunk
    next_run: str | None  # the run to continue with another chunk; None: done, or not ours
    last_customer: int = 0  # the next chunk starts after this customer id


def quality_tags_apply(*, corp: Corp, run: str = "", after: int = 0) -> TagChunk:
    """Tag one chunk (CHUNK_SIZE) of the corp's top channels' customers not yet tagged, with
    ids above `after`; `next_run` says whether another chunk follows. A new run (`run` empty)
    takes the corp's lock, or does nothing while another run holds it."""
    settings = decision_settings_for(corp)
    if not settings.quality_tag_customers:
        return TagChunk(0, None)
    key = _lock_key(corp.pk)
    if not run:
        run = uuid.uuid4().hex
        if not cache.add(key, run, LOCK_SECONDS):
            logger.info("corp %s: quality tags still being applied; this run skipped", corp.pk)
            return TagChunk(0, None)
    elif cache.get(key) != run:
        return TagChunk(0, None)  # the lock expired and another run took over
    cache.set(key, run, LOCK_SECONDS)
    try:
        chunk = _chunk(corp, settings, run, after)
    except BaseException:
        cache.delete(key)  # a retry, or the next hour, starts a run of its own
        raise
    if chunk.next_run is None:
        cache.delete(key)
    return chunk


def _chunk(corp: Corp, settings: DecisionSettings, run: str, after: int) -> TagChunk:
    try:
        tag = tag_ensure(corp=corp, group_name=settings.auto_tag_group,
                         name=settings.quality_tag_name)  # fmt: skip
    except TagLibraryError as exc:
        logger.warning("corp %s: the quality tag could not be made: %s", corp.pk, exc.message)
        return TagChunk(0, None)
    candidates = quality_tag_candidates(corp=corp, after=after)
    targets = list(
        customers_tag_targets(corp_id=corp.pk, customer_ids=candidates, tag=tag)[:CHUNK_SIZE]
    )
    relations = FollowRelation.objects.in_bulk([relation_id for _c, relation_id in targets])
    tagged = 0
    for _customer_id, relation_id in targets:
        relation = relations.get(relation_id)
        if relation is None:
            continue  # gone since it was chosen (the customer erased)
        try:
            added = tags_apply(
                relation=relation,
                tag_ids=[tag.tag_id],
                source=CustomerTag.Source.QUALITY,
            )
        except WeComTransientError:
            raise  # the task's retry policy takes it from here (rate limit, network)
        except WeComError as exc:
            logger.warning("corp %s: relation %s not tagged: %s", corp.pk, relation_id, exc)
        else:
            tagged += bool(added)
    if len(targets) < CHUNK_SIZE:
        return TagChunk(tagged, None)
    return TagChunk(tagged, run, targets[-1][0])
