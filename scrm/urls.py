from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("wecom/", include("scrm.wecom.urls")),
    path("api/v1/", include("contacts.urls")),
    path("api/v1/", include("channels_app.urls_api")),
    path("l/", include("channels_app.urls")),
]

if settings.WECOM_SANDBOX_ENABLED:
    urlpatterns.append(path("wecom-sandbox/", include("scrm.wecom.sandbox.urls")))
