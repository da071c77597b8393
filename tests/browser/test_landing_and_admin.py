"""The two pages people see, in a real browser: a customer's phone on a tracked link, and an
operator publishing a live code from the admin."""

from __future__ import annotations

import random
import re

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait

from channels_app.models import Attribution, LiveCode, Scan, Store
from channels_app.services.publishing import live_code_publish
from scrm.wecom.sandbox.models import SandboxContactWay
from scrm.wecom.sandbox.simulate import sandbox_customer_add

QR_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")


def _loaded(browser, element) -> bool:
    script = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    return bool(browser.execute_script(script, element))


@pytest.mark.django_db(transaction=True)
def test_a_phone_opens_a_landing_link_sees_the_qr_and_its_add_joins_that_scan(
    phone, live_server, settings, make_code, sandbox_corp, post_event
):
    settings.WECOM_SANDBOX_PUBLIC_URL = live_server.url  # the QR image is served by the sandbox
    code = live_code_publish(live_code=make_code())

    phone.get(f"{live_server.url}/l/{code.slug}/?utm_source=xhs&utm_campaign=618")
    qr = phone.find_element(By.CSS_SELECTOR, "img.qr")
    WebDriverWait(phone, 10).until(lambda browser: _loaded(browser, qr))
    page = phone.find_element(By.TAG_NAME, "body").text
    assert "长按识别二维码" in page
    # The card fits the phone's width: nothing to scroll sideways.
    assert phone.execute_script("return document.documentElement.scrollWidth <= innerWidth")

    scan = Scan.objects.get()
    assert (scan.device, scan.in_wechat, scan.utm_source, scan.utm_campaign) == (
        "mobile", True, "xhs", "618",
    )  # fmt: skip
    way = SandboxContactWay.objects.get(config_id=QR_RE.search(qr.get_attribute("src")).group(1))
    assert scan.staff.userid == way.users[0]
    assert scan.staff.name in page

    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(7), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    attribution = Attribution.objects.get()
    assert (attribution.scan, attribution.live_code, attribution.is_first_touch) == (
        scan, code, True,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_an_operator_logs_in_and_publishes_a_live_code_from_the_admin(
    desktop, live_server, make_code, sandbox_corp
):
    get_user_model().objects.create_superuser("operator", "op@example.cn", "s3cret-pass")
    code = make_code(name="双十一海报")
    assert code.status == LiveCode.Status.DRAFT

    desktop.get(f"{live_server.url}/admin/login/")
    desktop.find_element(By.NAME, "username").send_keys("operator")
    desktop.find_element(By.NAME, "password").send_keys("s3cret-pass")
    desktop.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(desktop, 10).until(lambda browser: "/admin/login/" not in browser.current_url)

    desktop.get(f"{live_server.url}/admin/channels_app/livecode/")
    changelist = desktop.find_element(By.ID, "result_list")
    assert "双十一海报" in changelist.text
    desktop.find_element(By.CSS_SELECTOR, f"input.action-select[value='{code.pk}']").click()
    Select(desktop.find_element(By.NAME, "action")).select_by_value("publish")
    desktop.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    WebDriverWait(desktop, 10).until(staleness_of(changelist))  # the next page has loaded

    # The confirmation page names the code; confirming calls WeCom (the sandbox).
    confirmation = desktop.find_element(By.ID, "content")
    assert "双十一海报" in confirmation.text
    desktop.find_element(By.CSS_SELECTOR, "#content input[type=submit]").click()
    WebDriverWait(desktop, 10).until(staleness_of(confirmation))
    message = (
        WebDriverWait(desktop, 10)
        .until(lambda browser: browser.find_element(By.CSS_SELECTOR, "ul.messagelist li.success"))
        .text
    )
    assert "1" in message
    assert "发布" in message
    code.refresh_from_db()
    assert code.status == LiveCode.Status.ACTIVE
    assert SandboxContactWay.objects.filter(state__startswith="scL").exists()


@pytest.mark.django_db(transaction=True)
def test_a_phone_picks_its_store_and_keeps_the_posters_parameters(
    phone, live_server, settings, make_code, sandbox_corp, staff
):
    settings.WECOM_SANDBOX_PUBLIC_URL = live_server.url
    code = make_code()
    for store_code, name, member in (("nj01", "南京路店", staff[1]), ("xjh", "徐家汇店", staff[2])):
        store = Store.objects.create(live_code=code, code=store_code, name=name, region="上海")
        store.members.set(code.pool.filter(staff=member))
    live_code_publish(live_code=code)

    phone.get(f"{live_server.url}/l/{code.slug}/?utm_source=poster&utm_content=counter")
    assert "选择门店" in phone.find_element(By.TAG_NAME, "h1").text
    assert Scan.objects.count() == 0  # the picker itself records nothing
    phone.find_element(By.PARTIAL_LINK_TEXT, "徐家汇店").click()
    qr = WebDriverWait(phone, 10).until(
        lambda browser: browser.find_element(By.CSS_SELECTOR, "img.qr")
    )
    WebDriverWait(phone, 10).until(lambda browser: _loaded(browser, qr))

    scan = Scan.objects.get()
    assert (scan.store.code, scan.staff.userid) == ("xjh", "staff03")
    assert (scan.utm_source, scan.utm_content) == ("poster", "counter")
