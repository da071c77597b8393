import io
import json

import qrcode
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from scrm.wecom.sandbox.api import dispatch
from scrm.wecom.sandbox.models import SandboxContactWay


@csrf_exempt
def api_view(request: HttpRequest, path: str) -> JsonResponse:
    """The sandbox over real HTTP, for WECOM_API_BASE=http://host/wecom-sandbox/cgi-bin/."""
    try:
        body = json.loads(request.body or b"{}") if request.method == "POST" else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JsonResponse({"errcode": 40058, "errmsg": "invalid json"})
    status, answer = dispatch(request.method or "GET", path, request.GET.dict(), body)
    return JsonResponse(answer, status=status, json_dumps_params={"ensure_ascii": False})


def qr_image(request: HttpRequest, config_id: str) -> HttpResponse:
    """The QR image of a sandbox contact way, standing in for WeCom's p.qpic.cn image. It
    encodes a made-up WeCom add link carrying the config_id."""
    if not SandboxContactWay.objects.filter(config_id=config_id).exists():
        raise Http404("unknown contact way")
    image = qrcode.make(f"https://work.weixin.qq.com/ca/sandbox/{config_id}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return HttpResponse(buffer.getvalue(), content_type="image/png")
