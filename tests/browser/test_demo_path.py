"""The README's demo path in a real browser: the demo's own corp, channels and codes (as
`make run` sets them up), customers added through the sandbox; the operator logs in with the
printed login, finds a customer's first source and timeline on the customer's page, and
publishes a draft code from the code's own page."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from channels_app.models import Channel, LiveCode
from channels_app.services.live_codes import live_code_create
from contacts.models import ExternalContact, Staff
from scrm.management.commands.demo import DEMO_CORP, DEMO_PASSWORD, DEMO_USER, Command
from scrm.wecom.sandbox.simulate import simulate_adds


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
                             mode=LiveCode.Mode.NATIVE,
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

    # The customer list, then the customer: first source (code and channel by name), timeline.
    desktop.get(f"{live_server.url}/admin/contacts/externalcontact/")
    listing = desktop.find_element(By.ID, "result_list")
    assert native.channel.name in listing.text
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
