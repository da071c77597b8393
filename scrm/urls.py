from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

# The operators' console is the product's face: our name, not Django's.
admin.site.site_header = _("Channel-attribution SCRM")
admin.site.site_title = _("Channel-attribution SCRM")
admin.site.index_title = _("Operations console")

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
