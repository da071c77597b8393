"""The tracked link (two-jump) pages: /l/<slug>/ records a scan and shows a staff member's
code. Thin: the service does the work in one transaction, with no WeCom call."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import get_language
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from channels_app.models import LiveCode, ReferralCode, Store
from channels_app.selectors import LandingConfig, landing_config
from channels_app.services.landing import landing_visit
from channels_app.services.landing_limits import LandingRateLimited

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str:
    """The visitor's IP, used only hashed. Behind a proxy, its X-Forwarded-For last hop."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    return render(request, f"channels_app/{template}", context, status=status)


def _landing_page(
    request: HttpRequest, config: LandingConfig, context: dict, status: int = 200
) -> HttpResponse:
    """landing.html, rendered once per config (a few seconds at most) for each language,
    member, QR, store and status: every visitor of a campaign gets one of a few pages, and
    rendering it cost a quarter of a visit. The page depends on nothing else. (config.pages
    keeps the PAGES_PER_CONFIG most recently used.)"""
    staff, store = context["staff"], context["store"]
    key = (get_language(), status, staff.pk if staff else None, context["qr_url"],
           store.pk if store else None, context["preview"])  # fmt: skip
    html = config.pages.get(key)
    if html is None:
        html = render_to_string("channels_app/landing.html", context, request)
        config.pages[key] = html
    return HttpResponse(html, status=status)


def _store_links(request: HttpRequest, live_code: LiveCode) -> list[tuple[Store, str]]:
    """The picker's stores, each linked with the visit's own parameters kept (utm_*, r):
    a poster's utm_source must survive the customer's tap on a store."""
    links = []
    for store in live_code.stores.order_by("region", "code"):
        params = request.GET.copy()
        params["store"] = store.code
        links.append((store, f"?{params.urlencode()}"))
    return links


@never_cache
@require_GET
def landing(request: HttpRequest, slug: str) -> HttpResponse:
    """Every page of the link speaks the code's language (else its corp's), never the visitor's
    Accept-Language: a campaign is written in one language, and its staff's names and the
    code's title are in it."""
    config = landing_config(slug)
    language = config.live_code.customer_language if config else settings.LANGUAGE_CODE
    with translation.override(language):
        response = _landing(request, config)
    response["Content-Language"] = language
    return response


def _landing(request: HttpRequest, config: LandingConfig | None) -> HttpResponse:
    if config is None:
        return _page(request, "unavailable.html", {"reason": "missing"}, status=404)
    live_code = config.live_code
    if live_code.status == LiveCode.Status.DRAFT:  # not yet, rather than no longer
        return _page(request, "unavailable.html", {"reason": "draft", "code": live_code}, 404)
    # A disabled corp (its contract ended, its keys withdrawn) assigns no one, like a paused code.
    if live_code.status != LiveCode.Status.ACTIVE or not live_code.corp.is_active:
        return _page(request, "unavailable.html", {"reason": "paused", "code": live_code}, 410)

    store = None
    store_code = request.GET.get("store", "")
    if store_code:
        store = Store.objects.filter(live_code=live_code, code=store_code).first()
        if store is None:
            context = {"code": live_code, "stores": _store_links(request, live_code),
                       "unknown": store_code}  # fmt: skip
            return _page(request, "stores.html", context, status=404)
    elif live_code.mode == LiveCode.Mode.LANDING and live_code.has_stores:
        context = {"code": live_code, "stores": _store_links(request, live_code)}
        return _page(request, "stores.html", context)

    referral = None
    if request.GET.get("r"):
        referral = ReferralCode.objects.filter(
            token=request.GET["r"][:16], live_code=live_code
        ).first()

    try:
        result = landing_visit(
            config=config,
            params=request.GET.dict(),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
            referrer_url=request.META.get("HTTP_REFERER", ""),
            ip=client_ip(request),
            store=store,
            referral=referral,
        )
    except LandingRateLimited as limited:
        response = _page(request, "unavailable.html", {"reason": "limited", "code": live_code},
                         status=429)  # fmt: skip
        response["Retry-After"] = str(limited.retry_after)
        return response
    if live_code.mode == LiveCode.Mode.NATIVE:
        # A native referral has its own contact way, whose state names the referrer.
        qr_url = referral.qr_code if referral and referral.qr_code else live_code.qr_code
    else:
        qr_url = result.slot.qr_code if result.slot else ""
    context = {"code": live_code, "staff": result.staff, "qr_url": qr_url, "store": store,
               "preview": result.bot}  # fmt: skip
    if qr_url or result.bot:
        # A robot (a link preview) gets the page without a member's code: nothing was assigned.
        return _landing_page(request, config, context)
    # Everyone capped or off shift is the code's business state, not a server fault: a warning
    # for operators instead of django.request's ERROR for every visitor of a full campaign.
    logger.warning("live code %s: no staff member available, busy page shown", live_code.slug)
    response = _landing_page(request, config, context, status=503)
    response._has_been_logged = True  # django.utils.log.log_response skips it
    return response
