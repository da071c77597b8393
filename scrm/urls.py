from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from scrm.api_root import ApiRootView
from scrm.wecom import views as wecom_views

urlpatterns = [
    # First and not nested in an include: WeCom's callback is the URL resolved most often.
    path("wecom/callback/<str:corp_id>/", wecom_views.callback, name="wecom-callback"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("reports/", include("analytics.urls")),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the console's switch
    # The schema needs the API's login (session or token); the docs page, opened in a
    # browser, sends an anonymous visitor to the admin's login and back.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="schema"), login_url="admin:login"),
        name="api-docs",
    ),
    # The browsable API's login and logout (session), linked from its pages.
    path("api-auth/", include("scrm.api_auth")),
    path("api/v1/", ApiRootView.as_view(), name="api-root"),
    path("api/v1/", include("contacts.urls")),
    path("api/v1/", include("channels_app.urls_api")),
    path("api/v1/", include("analytics.urls_api")),
    path("l/", include("channels_app.urls")),
]

if settings.WECOM_SANDBOX_ENABLED:
    urlpatterns.append(path("wecom-sandbox/", include("scrm.wecom.sandbox.urls")))
