"""Row locks of the analytics domain (select_for_update is a no-op on SQLite)."""

from analytics.models import RollupState
from scrm.wecom.models import Corp


def rollup_state_lock(*, corp: Corp) -> RollupState:
    """The corp's rollup state, created if new, locked until commit: rebuilds of one corp queue
    here, so two of them never delete and insert the same days at once (the second would not
    see the first one's new rows and would insert its own beside them)."""
    state, _ = RollupState.objects.select_for_update().get_or_create(corp=corp)
    return state
