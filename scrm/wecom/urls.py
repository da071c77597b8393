from django.urls import path

from scrm.wecom import views

app_name = "wecom"

urlpatterns = [
    path("callback/<str:corp_id>/", views.callback, name="callback"),
]
