from django.urls import path

from analytics.api import ChannelReportView, DailyReportView

urlpatterns = [
    path("reports/channels/", ChannelReportView.as_view(), name="report-channels"),
    path("reports/daily/", DailyReportView.as_view(), name="report-daily"),
]
