"""The add step, as contacts sees it. Adds reach us by callback, and also through WeCom's own
data: the details of a customer (externalcontact/get) and calibration (batch/get_by_user) tell
of adds no callback announced. Every one of them must go through the same step, which records
the add in the relation history, attributes it and projects the first source; that step is
scrm.pipeline.add_record, above the apps. contacts may not import it, so it is named by a
setting and loaded here, as the gateway loads its event pipeline (WECOM_EVENT_PIPELINE)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from contacts.services import RelationRecorded
    from scrm.wecom.models import Corp


class AddRecorder(Protocol):
    def __call__(
        self,
        *,
        corp: Corp,
        userid: str,
        external_userid: str,
        state: str,
        added_at: datetime,
        add_way: int | None = None,
        oper_userid: str = "",
        backfilled: bool = False,
    ) -> RelationRecorded: ...


def add_recorder() -> AddRecorder:
    return import_string(settings.CONTACTS_ADD_RECORDER)
