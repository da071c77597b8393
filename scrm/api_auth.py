"""/api-auth/: the browsable API's own login and logout (DRF's `rest_framework` namespace).

DRF's `rest_framework.urls`, with where to go next when the link gives no `?next=`: the API
root after logging in (Django's default, /accounts/profile/, is not routed here), the login
page after logging out (rather than the admin's "logged out" page). Logout is a POST, as the
browsable API's menu sends it.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

app_name = "rest_framework"  # the browsable API links to rest_framework:login and :logout

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="rest_framework/login.html", next_page=reverse_lazy("api-root")
        ),
        name="login",
    ),
    path(
        "logout/",
        auth_views.LogoutView.as_view(next_page=reverse_lazy("rest_framework:login")),
        name="logout",
    ),
]
