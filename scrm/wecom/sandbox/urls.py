from django.urls import path

from scrm.wecom.sandbox import views

app_name = "wecom_sandbox"

urlpatterns = [
    path("cgi-bin/<path:path>", views.api_view, name="api"),
    path("qr/<slug:config_id>.png", views.qr_image, name="qr"),
]
