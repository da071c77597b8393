import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from scrm.wecom.services import CallbackRejected, callback_receive, callback_verify_url

logger = logging.getLogger("scrm.wecom.callback")


def _reject(request: HttpRequest, corp_id: str, rejected: CallbackRejected) -> HttpResponse:
    logger.warning(
        "callback rejected corp=%s method=%s status=%s reason=%s",
        corp_id[:64],
        request.method,
        rejected.status,
        rejected.reason,
    )
    return HttpResponse(rejected.reason, status=rejected.status, content_type="text/plain")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def callback(request: HttpRequest, corp_id: str) -> HttpResponse:
    """WeCom's event callback. Answers within WeCom's 5 s: verify, store, queue, empty 200."""
    params = request.GET
    try:
        if request.method == "GET":
            echo = callback_verify_url(
                corp_id=corp_id,
                msg_signature=params.get("msg_signature", ""),
                timestamp=params.get("timestamp", ""),
                nonce=params.get("nonce", ""),
                echostr=params.get("echostr", ""),
            )
            return HttpResponse(echo, content_type="text/plain; charset=utf-8")

        limit = settings.WECOM_CALLBACK_MAX_BODY
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise CallbackRejected(413, "body over 64 KiB")
        body = request.read(limit + 1)
        if len(body) > limit:
            raise CallbackRejected(413, "body over 64 KiB")
        callback_receive(
            corp_id=corp_id,
            msg_signature=params.get("msg_signature", ""),
            timestamp=params.get("timestamp", ""),
            nonce=params.get("nonce", ""),
            body=body,
        )
    except CallbackRejected as rejected:
        return _reject(request, corp_id, rejected)
    return HttpResponse(b"", content_type="text/plain")
