"""The console reads like the product: its sections in the operator's order, the framework's
tables last, and a language switch on every page."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _sections(html: str) -> list[str]:
    """The index's sections (app labels), top to bottom."""
    main = html.split('id="content-main"', 1)[1]
    return re.findall(r'<div class="app-([\w-]+) module', main)


def test_the_index_lists_the_product_first_and_the_framework_last(admin_client):
    sections = _sections(admin_client.get("/admin/").content.decode())
    assert sections[:5] == ["channels_app", "contacts", "reports", "analytics", "wecom"]
    assert sections[-3:] == ["django_celery_beat", "authtoken", "auth"]


def test_the_reports_section_links_each_report_page(admin_client):
    html = admin_client.get("/admin/").content.decode()
    reports = html.split('class="app-reports module', 1)[1].split("</table>", 1)[0]
    for url in ("/reports/", "/reports/channel-types/", "/reports/live-codes/", "/reports/staff/"):
        assert f'href="{url}"' in reports
    assert "数据报表" in reports


def test_an_operator_sees_the_product_sections_only(client, django_user_model, corp):
    from tests.tenancy import member

    user = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    member(user, corp)
    client.force_login(user)
    sections = _sections(client.get("/admin/").content.decode())
    assert sections[:4] == ["channels_app", "contacts", "reports", "analytics"]
    assert not {"django_celery_beat", "authtoken", "auth"} & set(sections)


# -- the language switch ----------------------------------------------------------------------


def test_every_admin_page_offers_both_languages(admin_client, client):
    for html in (admin_client.get("/admin/").content.decode(),
                 admin_client.get("/admin/contacts/externalcontact/").content.decode(),
                 client.get("/admin/login/").content.decode()):  # fmt: skip
        form = html.split('id="language-switch"', 1)[1].split("</form>", 1)[0]
        assert 'action="/i18n/setlang/"' in form
        assert 'name="csrfmiddlewaretoken"' in form
        assert 'value="zh-hans"' in form
        assert 'value="en"' in form


def test_switching_to_english_and_back(admin_client):
    assert "客户" in admin_client.get("/admin/").content.decode()  # Chinese first
    response = admin_client.post(
        "/i18n/setlang/", {"language": "en", "next": "/admin/contacts/externalcontact/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/contacts/externalcontact/"
    html = admin_client.get("/admin/").content.decode()
    assert "Customers" in html
    assert '<button type="submit" name="language" value="en" lang="en" aria-current="true"' in html

    admin_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    html = admin_client.get("/admin/").content.decode()
    assert "Customers" not in html
    assert "客户" in html


def test_the_switch_returns_to_this_site_only(admin_client):
    response = admin_client.post(
        "/i18n/setlang/", {"language": "en", "next": "https://evil.example/"}
    )
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]
