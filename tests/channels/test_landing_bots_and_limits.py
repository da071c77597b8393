"""Caps are not for bots, nor for one visitor: robots (self-declared crawlers, link previews,
HTTP tools, no User-Agent) get the landing page without a scan, an assignment, a slot or a cap
count; per-IP and per-code rate limits answer 429 before a visit takes capacity. Every test
runs on both landing stores: the rules sit above them (services.landing.landing_visit). Also
hostile query strings and headers: a 4xx or a clean row, never a 500."""

from __future__ import annotations

import re

import pytest
import time_machine

from channels_app.models import DailyCounter, LandingSlot, Scan
from channels_app.services.landing import is_bot
from channels_app.services.publishing import live_code_publish

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("landing_path")]

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"
QR_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")
ROBOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0 A",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; SkypeUriPreview Preview/0.5)",
    "",
    "   ",
]
PEOPLE = [
    PHONE,
    "Mozilla/5.0 (Linux; Android 13; CUBOT KingKong Power) AppleWebKit/537.36 Chrome/119.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; HarmonyOS; NOH-AN00) AppleWebKit/537.36 Mobile "
    "MicroMessenger/8.0.47.2560",
]


@pytest.fixture
def client(client):
    client.raise_request_exception = False
    return client


@pytest.fixture
def code(make_code, sandbox_corp):
    return live_code_publish(live_code=make_code(caps=(5, 5, 5)))


def _visit(client, code, *, ua=PHONE, ip="10.0.0.1", referer=None, **params):
    headers = {"HTTP_REFERER": referer} if referer is not None else {}
    return client.get(f"/l/{code.slug}/", params, HTTP_USER_AGENT=ua, REMOTE_ADDR=ip, **headers)


def _nothing_taken(code) -> None:
    assert Scan.objects.count() == 0
    assert sum(DailyCounter.objects.values_list("assigned", flat=True)) == 0
    assert not LandingSlot.objects.filter(live_code=code, leased_until__isnull=False).exists()


@pytest.mark.parametrize("ua", ROBOTS)
def test_a_robot_gets_the_page_without_a_scan_an_assignment_or_a_slot(client, code, ua):
    for _ in range(3):
        response = client.get(f"/l/{code.slug}/", {"utm_source": "pyq"}, REMOTE_ADDR="10.0.0.9",
                              **({"HTTP_USER_AGENT": ua} if ua else {}))  # fmt: skip
        assert response.status_code == 200
        page = response.content.decode()
        assert code.name in page  # a link preview still shows what the link is
        assert not QR_RE.search(page)  # but no member's code: nothing was assigned
    _nothing_taken(code)


@pytest.mark.parametrize("ua", PEOPLE)
def test_people_s_browsers_are_not_robots(ua):
    assert not is_bot(ua)


def test_a_robot_does_not_change_who_the_next_visitor_gets(client, code):
    for ua in ROBOTS:
        _visit(client, code, ua=ua)
    response = _visit(client, code)
    assert QR_RE.search(response.content.decode())
    assert Scan.objects.count() == 1
    assert sum(DailyCounter.objects.values_list("assigned", flat=True)) == 1


def test_per_ip_limit_refuses_new_assignments_with_a_429_page(client, code, settings):
    settings.LANDING_RATE_LIMIT_PER_IP = 3
    for device in range(3):
        assert _visit(client, code, ua=f"{PHONE} device/{device}").status_code == 200
    response = _visit(client, code, ua=f"{PHONE} device/9")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= settings.LANDING_RATE_LIMIT_WINDOW
    assert not QR_RE.search(response.content.decode())
    assert response["Content-Type"].startswith("text/html")
    # The refused visit took nothing; another visitor (IP) is not limited.
    assert Scan.objects.count() == 3
    assert sum(DailyCounter.objects.values_list("assigned", flat=True)) == 3
    assert _visit(client, code, ua=f"{PHONE} device/9", ip="10.0.0.2").status_code == 200


def test_per_ip_budget_of_24_hours_holds_across_short_windows(client, code, settings):
    # One address coming back window after window: the short window alone would let it take
    # 20 every 10 minutes, 2,880 a day.
    settings.LANDING_RATE_LIMIT_PER_IP = 2
    settings.LANDING_RATE_LIMIT_WINDOW = 600
    settings.LANDING_RATE_LIMIT_PER_IP_24H = 3
    start = 1_800_000_000.0  # a 24-hour window's start, far from its end
    with time_machine.travel(start, tick=False):
        for device in range(2):
            assert _visit(client, code, ua=f"{PHONE} device/{device}").status_code == 200
    with time_machine.travel(start + 700, tick=False):  # the next short window
        assert _visit(client, code, ua=f"{PHONE} device/2").status_code == 200
        refused = _visit(client, code, ua=f"{PHONE} device/3")
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) > settings.LANDING_RATE_LIMIT_WINDOW  # tomorrow's
    assert Scan.objects.count() == 3
    with time_machine.travel(start + 86_400, tick=False):  # the next 24 hours
        assert _visit(client, code, ua=f"{PHONE} device/3").status_code == 200


def test_a_returning_device_is_not_counted_again(client, code, settings):
    settings.LANDING_RATE_LIMIT_PER_IP = 2
    first = _visit(client, code)
    again = _visit(client, code)  # the same phone within 30 minutes keeps its member
    assert (first.status_code, again.status_code) == (200, 200)
    assert QR_RE.search(first.content.decode()).group(1) == QR_RE.search(
        again.content.decode()
    ).group(1)
    assert _visit(client, code, ua=f"{PHONE} second").status_code == 200
    # Over the limit even a returning device is refused: which visit renews is only known
    # inside the store, after the count.
    assert _visit(client, code, ua=f"{PHONE} third").status_code == 429


def test_busy_visits_give_their_count_back(client, make_code, sandbox_corp, settings):
    settings.LANDING_RATE_LIMIT_PER_IP = 4
    code = live_code_publish(live_code=make_code(caps=(1, 1, 1)))
    statuses = [_visit(client, code, ua=f"{PHONE} device/{n}").status_code for n in range(6)]
    # Three claims fill the caps; the busy answers took nothing, so they are not counted.
    assert statuses == [200, 200, 200, 503, 503, 503]


def test_per_code_limit_holds_whoever_asks(client, code, settings):
    settings.LANDING_RATE_LIMIT_PER_CODE = 3
    statuses = [_visit(client, code, ip=f"10.0.1.{n}").status_code for n in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert sum(DailyCounter.objects.values_list("assigned", flat=True)) == 3


def test_robots_do_not_use_up_the_limits(client, code, settings):
    settings.LANDING_RATE_LIMIT_PER_IP = 1
    settings.LANDING_RATE_LIMIT_PER_CODE = 1
    for ua in ROBOTS:
        assert _visit(client, code, ua=ua).status_code == 200
    assert _visit(client, code).status_code == 200


def test_a_cache_outage_lets_visits_through(client, code, settings, caplog):
    settings.LANDING_RATE_LIMIT_PER_IP = 1
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}  # fmt: skip
    assert _visit(client, code).status_code == 200
    assert _visit(client, code, ua=f"{PHONE} other").status_code == 200
    assert "landing rate limits unavailable" in caplog.text


# -- hostile query strings and headers -----------------------------------------------------------


@pytest.mark.parametrize("param", ["utm_source", "utm_campaign", "store", "r", "other"])
def test_a_nul_in_a_query_parameter_is_a_400(client, code, param):
    # PostgreSQL refused the scan's insert (or the store/referral lookup): a 500 there.
    response = _visit(client, code, **{param: "a\x00b"})
    assert response.status_code == 400
    assert "NUL" in response.content.decode()
    _nothing_taken(code)


def test_a_nul_in_the_slug_is_a_4xx(client, code):
    response = client.get(f"/l/{code.slug}%00/", HTTP_USER_AGENT=PHONE)
    assert 400 <= response.status_code < 500


def test_a_nul_in_the_referer_is_dropped(client, code):
    response = _visit(client, code, referer="https://example.cn/\x00x")
    assert response.status_code == 200
    assert Scan.objects.get().referrer_url == ""


def test_long_and_odd_parameters_are_stored_cut_to_their_columns(client, code):
    response = _visit(client, code, utm_source="小" * 500, utm_term="\U0001f600" * 80,
                      utm_medium="\ufffd\u202e", referer="https://x.cn/" + "a" * 2000)  # fmt: skip
    assert response.status_code == 200
    scan = Scan.objects.get()
    assert (scan.utm_source, scan.utm_term) == ("小" * 64, "\U0001f600" * 64)
    assert len(scan.referrer_url) == 512
