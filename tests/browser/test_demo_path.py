"""The README's demo path in a real browser: the demo's own corp, channels and codes (as
`make run` sets them up), customers added through the sandbox; the operator logs in with the
printed login, finds the product before the framework on the index, the customer list's
filters, a customer's first source and timeline on the customer's page; a draft code's link
says it is not yet published; the operator publishes it from the code's own page, and an
English phone then gets the code's page in Chinese under its public title; the console
switches to English and back."""

from __future__ import annotations

import contextlib

import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from channels_app.models import Channel, LiveCode
from channels_app.services.live_codes import live_code_create
from contacts.models import ExternalContact, Staff
from scrm.management.commands.demo import DEMO_CORP, DEMO_PASSWORD, DEMO_USER, Command
from scrm.wecom.sandbox.simulate import simulate_adds
from tests.browser.conftest import phone_open


@pytest.mark.django_db(transaction=True)
def test_the_readme_demo_path(desktop, live_server, settings):
    settings.WECOM_SANDBOX_PUBLIC_URL = live_server.url
    demo = Command()
    demo._operator()
    corp = demo._corp(callback_url=f"{live_server.url}/wecom/callback/{DEMO_CORP}/")
    _landing, states = demo._channels(corp)
    native = LiveCode.objects.get(corp=corp, state=states[0])
    report = simulate_adds(corp_id=DEMO_CORP, adds=3, url=live_server.url, states=[states[0]])
    assert report.answered_200 == 3
    customer = ExternalContact.objects.get(external_userid=report.customers[0])
    staff = Staff.objects.filter(corp=corp).order_by("userid")
    draft = live_code_create(corp=corp, channel=native.channel, name="元旦海报", slug="newyear",
                             mode=LiveCode.Mode.NATIVE, public_title="元旦福利 扫码领券",
                             pool=[{"staff": staff[0]}])  # fmt: skip
    assert draft.status == LiveCode.Status.DRAFT

    # The login the demo prints.
    desktop.get(f"{live_server.url}/admin/")
    desktop.find_element(By.NAME, "username").send_keys(DEMO_USER)
    desktop.find_element(By.NAME, "password").send_keys(DEMO_PASSWORD)
    desktop.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(desktop, 10).until(lambda browser: "/admin/login/" not in browser.current_url)
    index = desktop.find_element(By.ID, "content-main").text
    assert index.index("渠道") < index.index("企业微信")  # the product first, the framework last
    assert index.index("数据报表") < index.index("企业微信")

    # The customer list, then the customer: first source (code and channel by name), timeline.
    desktop.get(f"{live_server.url}/admin/contacts/externalcontact/")
    listing = desktop.find_element(By.ID, "result_list")
    assert native.channel.name in listing.text
    filters = desktop.find_element(By.ID, "changelist-filter").get_attribute("textContent")
    for choice in ("无渠道", "本周", "上周"):
        assert choice in filters
    assert "slot" not in filters  # the landing slots' internal states are not offered
    desktop.find_element(
        By.CSS_SELECTOR, f"#result_list a[href*='/externalcontact/{customer.pk}/']"
    ).click()
    WebDriverWait(desktop, 10).until(staleness_of(listing))
    page = desktop.find_element(By.ID, "content").text
    assert "首次来源" in page
    assert native.name in page
    assert Channel.objects.get(pk=native.channel_id).name in page
    assert "客户动态" in page  # the timeline (TimelineEvent)
    assert "已添加" in page

    # A draft code's link: not yet published (not "paused or ended").
    desktop.get(f"{live_server.url}/l/newyear/")
    assert "该活码尚未发布" in desktop.find_element(By.TAG_NAME, "body").text

    # A draft code's own page: no QR to download yet; publish from the page.
    desktop.get(f"{live_server.url}/admin/channels_app/livecode/{draft.pk}/change/")
    form = desktop.find_element(By.ID, "content")
    assert "下载二维码" not in form.text
    desktop.find_element(By.CSS_SELECTOR, "form.livecode-status button[value=publish]").click()
    WebDriverWait(desktop, 10).until(staleness_of(form))
    message = WebDriverWait(desktop, 10).until(
        lambda browser: browser.find_element(By.CSS_SELECTOR, "ul.messagelist li")
    )
    assert "发布" in message.text
    draft.refresh_from_db()
    assert draft.status == LiveCode.Status.ACTIVE
    assert "下载二维码" in desktop.find_element(By.ID, "content").text

    # An English iPhone on the published code's link: the corp's language, the public title.
    english = phone_open(languages="en-US,en")
    try:
        english.get(f"{live_server.url}/l/newyear/")
        assert english.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-hans"
        assert english.title == "元旦福利 扫码领券"
        assert "元旦福利 扫码领券" in english.find_element(By.TAG_NAME, "h1").text
        assert "Long-press" not in english.find_element(By.TAG_NAME, "body").text
    finally:
        english.quit()

    # The console's language switcher: English, then back to Chinese. Each switch posts and
    # redirects, so the text is read only once the old page is gone, and a read that races
    # the next page's load is tried again rather than failing on a stale element.
    desktop.get(f"{live_server.url}/admin/")
    _switch_language(desktop, "en")
    assert "Channels" in _text_when(desktop, "content-main", "Channels")
    _switch_language(desktop, "zh-hans")
    assert "渠道" in _text_when(desktop, "content-main", "渠道")


def _switch_language(browser, language: str) -> None:
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, f"#language-switch button[value={language}]").click()
    WebDriverWait(browser, 10).until(staleness_of(page))


def _text_when(browser, element_id: str, expected: str) -> str:
    """The element's text once it shows `expected` (or its last text after 10 s)."""
    last = {"text": ""}

    def shown(driver) -> bool:
        last["text"] = driver.find_element(By.ID, element_id).text
        return expected in last["text"]

    # On a timeout the caller's assertion shows what the page said instead.
    with contextlib.suppress(TimeoutException):
        WebDriverWait(
            browser, 10, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        ).until(shown)
    return last["text"]
