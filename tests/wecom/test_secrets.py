"""Corp secrets: encrypted at rest with SECRETS_KEY (rotatable), and no lookup can test them."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.contrib.auth.models import User
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection
from django.test import Client

from scrm.wecom.models import Corp, Role
from scrm.wecom.services import corp_create
from scrm.wecom.vault import SecretsKeyError
from tests.factories import CorpFactory, ExternalContactFactory
from tests.tenancy import member

SECRET = "S3cr3t-app-secret-value-0123456789abcdef"
TOKEN = "tok3nTOKENtok3n1"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
SECRET_COLUMNS = ("secret", "callback_token", "encoding_aes_key")


def _stored(corp: Corp) -> dict[str, str]:
    """The columns as the database holds them, past the model's field."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret, callback_token, encoding_aes_key FROM wecom_corp WHERE id = %s",
            [corp.pk],
        )
        return dict(zip(SECRET_COLUMNS, cursor.fetchone(), strict=True))


def _corp(corp_id: str = "wwsecret0001") -> Corp:
    return corp_create(corp_id=corp_id, name="密钥企业", secret=SECRET, callback_token=TOKEN,
                       encoding_aes_key=AES_KEY)  # fmt: skip


@pytest.mark.django_db
def test_the_database_holds_no_plaintext_secret_and_the_model_reads_them(settings):
    key = Fernet.generate_key().decode()
    settings.SECRETS_KEY = [key]
    corp = _corp()
    stored = _stored(corp)
    for column, plaintext in zip(SECRET_COLUMNS, (SECRET, TOKEN, AES_KEY), strict=True):
        assert plaintext not in stored[column]
        assert plaintext[:8] not in stored[column]
        assert Fernet(key.encode()).decrypt(stored[column].encode()).decode() == plaintext
    fresh = Corp.objects.get(pk=corp.pk)
    assert (fresh.secret, fresh.callback_token, fresh.encoding_aes_key) == (SECRET, TOKEN, AES_KEY)


@pytest.mark.django_db
def test_rotate_secrets_moves_every_corp_to_the_first_key(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_KEY = [old]
    corps = [_corp("wwrotate0001"), _corp("wwrotate0002")]

    settings.SECRETS_KEY = f"{new},{old}"  # the environment's comma-separated form
    assert Corp.objects.get(pk=corps[0].pk).secret == SECRET  # the old key still decrypts
    call_command("rotate_secrets")

    settings.SECRETS_KEY = [new]  # the old key dropped
    for corp in corps:
        stored = _stored(corp)
        with pytest.raises(InvalidToken):
            Fernet(old.encode()).decrypt(stored["secret"].encode())
        assert Fernet(new.encode()).decrypt(stored["callback_token"].encode()).decode() == TOKEN
        assert Corp.objects.get(pk=corp.pk).encoding_aes_key == AES_KEY


@pytest.mark.django_db
def test_a_key_that_does_not_decrypt_fails_loudly(settings):
    settings.SECRETS_KEY = [Fernet.generate_key().decode()]
    corp = _corp()
    settings.SECRETS_KEY = [Fernet.generate_key().decode()]
    with pytest.raises(SecretsKeyError, match="SECRETS_KEY"):
        Corp.objects.get(pk=corp.pk)


@pytest.mark.django_db
def test_the_embedded_default_derives_a_key_from_secret_key_and_says_so(settings):
    settings.SECRETS_KEY = []
    corp = _corp()
    assert SECRET not in _stored(corp)["secret"]
    assert Corp.objects.get(pk=corp.pk).secret == SECRET
    from scrm.wecom.apps import secrets_key_check

    assert [m.id for m in secrets_key_check()] == ["wecom.W001"]
    # Setting SECRETS_KEY later still reads them; rotate_secrets moves them to it.
    key = Fernet.generate_key().decode()
    settings.SECRETS_KEY = [key]
    assert secrets_key_check() == []
    settings.SECRETS_KEY = ["change-me", key]
    assert [m.id for m in secrets_key_check()] == ["wecom.E001"]
    settings.SECRETS_KEY = [key]
    call_command("rotate_secrets")
    assert Fernet(key.encode()).decrypt(_stored(corp)["secret"].encode()).decode() == SECRET


@pytest.mark.django_db
def test_the_orm_offers_no_lookup_on_a_secret():
    CorpFactory()
    for lookup in ("secret__startswith", "secret", "callback_token__contains",
                   "encoding_aes_key__regex", "secret__gt"):  # fmt: skip
        with pytest.raises(FieldError):
            list(Corp.objects.filter(**{lookup: "a"}))
    assert Corp.objects.filter(secret__isnull=False).count() == 1


@pytest.mark.django_db
def test_the_callback_still_verifies_with_the_encrypted_credentials(corp, post_event):
    response = post_event("add_external_contact", UserID="zhangsan", ExternalUserID="wmSecret1")
    assert response.status_code == 200


# -- no oracle in the admin and the API ---------------------------------------------------------


def _view_only_user(corp) -> User:
    """An operator of `corp`: the corp's page is view-only to them (its secrets are its
    admins'), and they read the callback and API call logs."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    return member(user, corp, role=Role.OPERATOR)


ADMIN_ORACLES = [
    ("/admin/wecom/corp/", "secret__startswith"),
    ("/admin/wecom/corp/", "encoding_aes_key__startswith"),
    ("/admin/wecom/corp/", "callback_token__exact"),
    ("/admin/wecom/corp/", "secret"),
    ("/admin/wecom/callbackevent/", "corp__secret__startswith"),
    ("/admin/wecom/apicall/", "corp__callback_token__startswith"),
    ("/admin/contacts/externalcontact/", "corp__encoding_aes_key__startswith"),
    ("/admin/contacts/externalcontact/", "follow_relations__corp__secret__startswith"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "lookup"), ADMIN_ORACLES)
def test_the_admin_refuses_a_lookup_on_a_secret_with_400(path, lookup):
    corp = CorpFactory(secret=SECRET)
    ExternalContactFactory(corp=corp)
    for user in (_view_only_user(corp), User.objects.create_superuser("root", password="pw")):
        client = Client()
        client.force_login(user)
        for value in ("S", "x", ""):
            response = client.get(path, {lookup: value})
            assert response.status_code == 400, (user, path, lookup, value)
        assert client.get(path).status_code == 200  # the changelist itself is fine


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "lookup"), ADMIN_ORACLES[:6])
def test_the_admin_itself_refuses_without_the_middleware(settings, admin_client, path, lookup):
    """Django's own lookup_allowed answers 400 (DisallowedModelAdminLookup), should the
    middleware ever be taken out."""
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "scrm.wecom.secret_lookups.SecretLookupMiddleware"
    ]
    CorpFactory(secret=SECRET)
    assert admin_client.get(path, {lookup: "S"}).status_code == 400


API_ORACLES = [
    ("/api/v1/contacts/", {"corp__secret__startswith": "S"}),
    ("/api/v1/contacts/", {"ordering": "corp__secret"}),
    ("/api/v1/contacts/", {"ordering": "name,-corp__encoding_aes_key"}),
    ("/api/v1/conversions/", {"corp__callback_token": "x"}),
    ("/api/v1/channels/", {"corp__secret__startswith": "S"}),
    ("/api/v1/live-codes/", {"corp__secret__gt": "S"}),
    ("/api/v1/scans/", {"live_code__corp__secret__startswith": "S"}),
    ("/api/v1/attributions/", {"secret": "S"}),
    ("/api/v1/reports/channels/", {"corp__secret__startswith": "S"}),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "params"), API_ORACLES)
def test_the_api_refuses_a_filter_or_ordering_on_a_secret_with_400(admin_client, path, params):
    CorpFactory(secret=SECRET)
    assert admin_client.get(path).status_code < 500, path
    response = admin_client.get(path, params)
    assert response.status_code == 400
    assert "密钥字段" in response.json()["detail"]  # "a secret field", zh-hans first


def test_no_admin_search_filter_or_ordering_names_a_secret():
    from django.contrib import admin

    from scrm.wecom.secret_lookups import lookup_names_secret

    for model, model_admin in admin.site._registry.items():
        named = [*model_admin.search_fields, *(model_admin.ordering or ())]
        named += [f if isinstance(f, str) else f[0] for f in model_admin.list_filter
                  if isinstance(f, str | tuple)]  # fmt: skip
        for path in named:
            assert not lookup_names_secret(model, path.lstrip("-^=@")), (model, path)


@pytest.mark.django_db
def test_the_admin_form_keeps_secrets_write_only_and_encrypted(admin_client):
    corp = _corp()
    url = f"/admin/wecom/corp/{corp.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert SECRET not in page
    assert TOKEN not in page
    assert AES_KEY not in page
    form = {"corp_id": corp.corp_id, "name": "改名企业", "agent_id": "",
            "time_zone": "Asia/Shanghai", "is_active": "on",
            "secret": "", "callback_token": "", "encoding_aes_key": ""}  # fmt: skip
    assert admin_client.post(url, form).status_code == 302
    kept = Corp.objects.get(pk=corp.pk)
    assert (kept.name, kept.secret, kept.callback_token) == ("改名企业", SECRET, TOKEN)
    assert admin_client.post(url, {**form, "secret": "a-new-secret"}).status_code == 302
    assert Corp.objects.get(pk=corp.pk).secret == "a-new-secret"
    assert "a-new-secret" not in _stored(corp)["secret"]


def test_no_api_filterset_names_a_secret():
    from django.urls import get_resolver

    from scrm.wecom.secret_lookups import lookup_names_secret

    def views(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from views(pattern.url_patterns)
            else:
                yield getattr(pattern.callback, "cls", None)

    filtersets = {getattr(v, "filterset_class", None) for v in views(get_resolver().url_patterns)}
    filtersets.discard(None)
    assert len(filtersets) >= 5  # the API's list endpoints were found
    for filterset in filtersets:
        model = filterset._meta.model
        for name, declared in filterset.base_filters.items():
            assert not lookup_names_secret(model, declared.field_name or name), (filterset, name)
