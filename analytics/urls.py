from django.urls import path

from analytics import anomaly_views, views

app_name = "reports"
urlpatterns = [
    path("", views.channels, name="channels"),
    path("channel-types/", views.channel_types, name="channel_types"),
    path("live-codes/", views.live_codes, name="live_codes"),
    path("staff/", views.staff, name="staff"),
    path("by/<str:by>/", views.breakdown, name="breakdown"),
    path("cohorts/", views.cohorts, name="cohorts"),
    path("anomalies/", anomaly_views.anomalies, name="anomalies"),
    path("anomalies/acknowledge/", anomaly_views.acknowledge, name="anomaly_acknowledge"),
    path("quality/", views.quality, name="quality"),
]
