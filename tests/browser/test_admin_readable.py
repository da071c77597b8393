"""The customer list on a 1366-pixel laptop screen: every name on one line, not one character
per line squeezed by the columns beside it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from channels_app.services.publishing import live_code_publish
from contacts.models import ExternalContact
from scrm.wecom.sandbox.models import SandboxContactWay
from tests.flows import customer_flows_in

# Line boxes of each cell's text (an inline element's client rects: one per line).
LINES = """
return Array.from(document.querySelectorAll(arguments[0])).map(
  cell => [cell.textContent.trim(), Math.max(...Array.from(cell.childNodes).map(node => {
    const range = document.createRange(); range.selectNodeContents(node);
    return new Set(Array.from(range.getClientRects()).map(rect => Math.round(rect.top))).size;
  }))]);
"""


@pytest.mark.django_db(transaction=True)
def test_the_customer_list_reads_at_1366_pixels(
    desktop, live_server, make_code, sandbox_corp, post_event
):
    code = live_code_publish(live_code=make_code(mode="native", name="双十一门店收银台海报"))
    state = SandboxContactWay.objects.get(config_id=code.config_id).state
    for seed in range(1, 6):
        customer_flows_in(sandbox_corp, post_event, state=state, seed=seed)
    ExternalContact.objects.filter(pk=ExternalContact.objects.first().pk).update(
        name="欧阳娜娜的朋友小王同学"
    )
    get_user_model().objects.create_superuser("operator", "op@example.cn", "s3cret-pass")

    desktop.get(f"{live_server.url}/admin/login/?next=/admin/contacts/externalcontact/")
    desktop.find_element(By.NAME, "username").send_keys("operator")
    desktop.find_element(By.NAME, "password").send_keys("s3cret-pass")
    desktop.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(desktop, 10).until(lambda browser: "/login/" not in browser.current_url)
    assert desktop.execute_script("return innerWidth") <= 1366

    names = desktop.execute_script(LINES, "#result_list .field-__str__")
    assert len(names) == 5
    for name, lines in names:
        assert lines == 1, f"{name!r} wraps onto {lines} lines"
    for column in ("first_channel", "first_live_code", "first_staff"):
        for text, lines in desktop.execute_script(LINES, f"#result_list .field-{column}"):
            assert lines <= 2, f"{column} {text!r} wraps onto {lines} lines"
    # And the list fits beside the filters: nothing to scroll sideways.
    results = desktop.find_element(By.CSS_SELECTOR, "#changelist .results")
    script = "return arguments[0].scrollWidth - arguments[0].clientWidth"
    assert desktop.execute_script(script, results) <= 2
