"""A real Chromium, headless, driven by Selenium through the system's chromedriver.

Where Chromium is not installed the browser tests skip with the reason, so `make test` on a
bare machine still runs everything else; .ci/run installs Chromium and sets
SCRM_REQUIRE_BROWSER=1, under which a missing browser is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.channels.conftest import channel, make_code, staff  # noqa: F401 (the same fixtures)

PHONE_USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.40"
)


def _executables() -> tuple[str, str]:
    chromium = next(
        (path for name in ("chromium", "chromium-browser", "google-chrome")
         if (path := shutil.which(name))),
        None,
    )  # fmt: skip
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = (
        "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    )
    if os.environ.get("SCRM_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)


def _driver(options: webdriver.ChromeOptions, *, languages: str = "zh-CN,zh") -> webdriver.Chrome:
    chromium, driver = _executables()
    options.binary_location = chromium
    lang = languages.split(",", 1)[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--lang={lang}"):
        options.add_argument(argument)
    # A browser in China asks for Chinese: the pages answer in zh-hans (LocaleMiddleware).
    options.add_experimental_option("prefs", {"intl.accept_languages": languages})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(30)
    return browser


@pytest.fixture
def desktop() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.add_argument("--window-size=1366,900")
    browser = _driver(options)
    yield browser
    browser.quit()


def phone_open(*, languages: str = "zh-CN,zh") -> webdriver.Chrome:
    """An iPhone-sized screen inside WeChat (its User-Agent says MicroMessenger), asking for
    `languages`; the caller quits it."""
    options = webdriver.ChromeOptions()
    options.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 3.0},
         "userAgent": PHONE_USER_AGENT},
    )  # fmt: skip
    return _driver(options, languages=languages)


@pytest.fixture
def phone() -> Iterator[webdriver.Chrome]:
    browser = phone_open()
    yield browser
    browser.quit()
