"""The landing pages speak the code's language, else its corp's (zh-hans by default), never the
visitor's Accept-Language; their title is the code's public title, never the channel's name."""

from __future__ import annotations

import re

import pytest

from channels_app.models import LiveCode
from channels_app.selectors import landing_config_changed
from channels_app.services.publishing import live_code_publish

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("landing_path")]

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"
ENGLISH = "en-US,en;q=0.9"
CHINESE = "zh-CN,zh;q=0.9"


def _get(client, path, language):
    return client.get(path, HTTP_USER_AGENT=PHONE, HTTP_ACCEPT_LANGUAGE=language)


def _lang(page: str) -> str:
    return re.search(r'<html lang="([^"]+)"', page).group(1)


def _title(page: str) -> str:
    return re.search(r"<title>(.*?)</title>", page, re.S).group(1).strip()


def test_an_english_phone_reads_a_chinese_corps_page_in_chinese(client, make_code, channel):
    code = live_code_publish(live_code=make_code(name="内部：618 海报 A组",
                                                 public_title="618 会员专享"))  # fmt: skip
    response = _get(client, f"/l/{code.slug}/", ENGLISH)
    page = response.content.decode()
    assert response.status_code == 200
    assert "长按识别二维码" in page
    assert "Long-press" not in page
    assert "Your advisor" not in page
    assert _lang(page) == "zh-hans"
    assert response["Content-Language"] == "zh-hans"
    assert _title(page) == "618 会员专享"
    assert channel.name not in page  # internal names stay internal
    assert "内部" not in page


def test_an_english_code_speaks_english_to_a_chinese_phone(client, make_code):
    code = live_code_publish(live_code=make_code(language="en"))
    page = _get(client, f"/l/{code.slug}/", CHINESE).content.decode()
    assert "Long-press the QR code" in page
    assert "长按" not in page
    assert _lang(page) == "en"


def test_the_corps_language_applies_and_the_code_may_override_it(client, make_code, corp):
    corp.language = "en"
    corp.save()
    code = live_code_publish(live_code=make_code())
    assert "Long-press the QR code" in _get(client, f"/l/{code.slug}/", CHINESE).content.decode()

    LiveCode.objects.filter(pk=code.pk).update(language="zh-hans")
    landing_config_changed(live_code_id=code.pk)
    assert "长按识别二维码" in _get(client, f"/l/{code.slug}/", ENGLISH).content.decode()


def test_without_a_public_title_the_page_is_titled_with_the_codes_name(client, make_code, channel):
    code = live_code_publish(live_code=make_code(name="双十一 海报"))
    page = _get(client, f"/l/{code.slug}/", ENGLISH).content.decode()
    assert _title(page) == "双十一 海报"
    assert "<h1>双十一 海报</h1>" in page


def test_the_paused_stores_and_missing_pages_speak_the_codes_language(client, make_code):
    paused = make_code(status=LiveCode.Status.PAUSED, public_title="春季活动")
    response = _get(client, f"/l/{paused.slug}/", ENGLISH)
    page = response.content.decode()
    assert response.status_code == 410
    assert "该活码已暂停" in page
    assert _lang(page) == "zh-hans"
    assert _title(page) == "春季活动"

    english = live_code_publish(live_code=make_code(language="en"))
    response = _get(client, f"/l/{english.slug}/?store=nowhere", CHINESE)
    assert response.status_code == 404
    assert "Choose your store" in response.content.decode()

    response = _get(client, "/l/no-such-code/", ENGLISH)
    assert response.status_code == 404
    assert _lang(response.content.decode()) == "zh-hans"  # no code: the deployment's language
