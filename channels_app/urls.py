from django.urls import path

from channels_app import views

app_name = "channels_app"

urlpatterns = [
    path("<slug:slug>/", views.landing, name="landing"),
]
