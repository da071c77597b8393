"""Row locks of the customer domain, in one place (select_for_update is a no-op on SQLite)."""

from contacts.models import ExternalContact
from scrm.wecom.models import Corp


def external_contact_lock(*, corp: Corp, external_userid: str) -> ExternalContact:
    """The customer's row, created if new, locked until commit (external_contact_lock_created)."""
    return external_contact_lock_created(corp=corp, external_userid=external_userid)[0]


def external_contact_lock_created(
    *, corp: Corp, external_userid: str
) -> tuple[ExternalContact, bool]:
    """The customer's row, created if new (True), locked until commit. Every writer of a customer
    (event processing, the details refresh) takes this lock before it may insert a Staff row,
    so two of them never wait on each other's uncommitted staff rows: with 16 adds of one
    customer processed at once, the other order deadlocked. FOR NO KEY UPDATE: writers of the
    customer queue on it, while the foreign-key checks of rows that only reference the customer
    (KEY SHARE, taken at commit by other transactions) pass; FOR UPDATE made those wait too,
    closing a cycle through whatever those transactions held."""
    contact, created = ExternalContact.objects.select_for_update(no_key=True).get_or_create(
        corp=corp, external_userid=external_userid
    )
    contact.corp = corp  # the row in hand, not read again
    return contact, created
