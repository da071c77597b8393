"""Auto rules by source: which tags an add gets, and which welcome message it is sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from channels_app.models import Attribution, SourceRule
from scrm import days


@dataclass(frozen=True)
class AddContext:
    """What a rule can look at, for one add. `local_time` is in the corp's time zone."""

    channel_id: int | None
    channel_type: int | None
    live_code_id: int | None
    add_way: int | None
    state: str
    local_time: datetime
    is_first: bool


def add_context(attribution: Attribution, add_way: int | None) -> AddContext:
    channel = attribution.channel
    return AddContext(
        channel_id=attribution.channel_id,
        channel_type=channel.channel_type if channel else None,
        live_code_id=attribution.live_code_id,
        add_way=add_way,
        state=attribution.state,
        local_time=days.local_datetime(attribution.added_at, attribution.corp),
        is_first=attribution.is_first_touch,
    )


def rule_matches(rule: SourceRule, ctx: AddContext) -> bool:
    """Every condition that is set must hold; a rule with no condition matches every add."""
    if rule.scope == SourceRule.Scope.FIRST_ADD and not ctx.is_first:
        return False
    checks = [
        rule.channel_id is None or rule.channel_id == ctx.channel_id,
        rule.channel_type is None or rule.channel_type == ctx.channel_type,
        rule.live_code_id is None or rule.live_code_id == ctx.live_code_id,
        rule.add_way is None or rule.add_way == ctx.add_way,
        not rule.state_prefix or ctx.state.startswith(rule.state_prefix),
        not rule.weekdays or str(ctx.local_time.isoweekday()) in rule.weekdays,
    ]
    if rule.time_from is not None and rule.time_to is not None:
        clock = ctx.local_time.time()
        start, end = rule.time_from, rule.time_to
        checks.append(start <= clock < end if start < end else clock >= start or clock < end)
    return all(checks)


def matching_rules(*, corp_id: int, ctx: AddContext) -> list[SourceRule]:
    rules = SourceRule.objects.filter(corp_id=corp_id, is_active=True).order_by("priority", "pk")
    return [rule for rule in rules if rule_matches(rule, ctx)]


def tag_ids_for(attribution: Attribution, rules: list[SourceRule]) -> list[str]:
    """The live code's tags and every matching rule's, without repeats, in order."""
    ids: list[str] = list(attribution.live_code.tag_ids) if attribution.live_code else []
    for rule in rules:
        ids += rule.tag_ids
    return list(dict.fromkeys(str(i) for i in ids))


def welcome_for(attribution: Attribution, rules: list[SourceRule]) -> tuple[str, str, list] | None:
    """(source, text, attachments): the live code's welcome, else the channel's, else the
    first matching rule's, else None."""
    code, channel = attribution.live_code, attribution.channel
    if code is not None and (code.welcome_text or code.welcome_attachments):
        return "live_code", code.welcome_text, list(code.welcome_attachments)
    if channel is not None and (channel.welcome_text or channel.welcome_attachments):
        return "channel", channel.welcome_text, list(channel.welcome_attachments)
    for rule in rules:
        if rule.welcome_text or rule.welcome_attachments:
            return "rule", rule.welcome_text, list(rule.welcome_attachments)
    return None
