"""scrm.urls plus `bench/empty/`: a bare view answering an empty 200, the benchmark's baseline."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def empty(request: HttpRequest) -> HttpResponse:
    # The request body is left unread on purpose: the baseline is the framework's floor.
    return HttpResponse(b"", content_type="text/plain")


urlpatterns = [
    path("bench/empty/", empty, name="bench-empty"),
    path("", include("scrm.urls")),
]
