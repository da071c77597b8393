"""scrm.urls plus `bench/empty/`: a bare view answering an empty 200, the benchmark's baseline."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from scrm import urls as scrm_urls


@csrf_exempt
def empty(request: HttpRequest) -> HttpResponse:
    # The request body is left unread on purpose: the baseline is the framework's floor.
    return HttpResponse(b"", content_type="text/plain")


# scrm.urls' own patterns, not include()d: an include would add a level of resolving to every
# production URL that production does not pay.
urlpatterns = [
    path("bench/empty/", empty, name="bench-empty"),
    *scrm_urls.urlpatterns,
]
