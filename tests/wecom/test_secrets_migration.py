"""The data migration encrypts the secrets already stored, and back again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

PLAIN = (
    "app-secret-before-encryption",
    "tokenbefore",
    "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _stored() -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, callback_token, encoding_aes_key FROM wecom_corp")
        return tuple(cursor.fetchone())


@pytest.fixture
def _back_to_the_latest_schema():
    yield
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.usefixtures("_back_to_the_latest_schema")
def test_existing_secrets_are_encrypted_and_decrypted_back():
    old = _migrate([("wecom", "0005_corp_membership")])
    old.get_model("wecom", "Corp").objects.create(
        corp_id="wwmigrate", name="迁移", secret=PLAIN[0], callback_token=PLAIN[1],
        encoding_aes_key=PLAIN[2],
    )  # fmt: skip
    _migrate([("wecom", "0006_corp_secrets_encrypted")])
    stored = _stored()
    assert all(p not in s for p, s in zip(PLAIN, stored, strict=True))
    from scrm.wecom.models import Corp

    # Only the columns of this schema: later migrations add others to Corp.
    corp = Corp.objects.only("secret", "callback_token", "encoding_aes_key").get(
        corp_id="wwmigrate"
    )
    assert (corp.secret, corp.callback_token, corp.encoding_aes_key) == PLAIN

    _migrate([("wecom", "0005_corp_membership")])
    assert _stored() == PLAIN
