from django.urls import path

from analytics.api import ChannelReportView, CohortReportView, DailyReportView
from analytics.api_anomalies import AnomalyListView
from analytics.api_exports import ExportJobDownloadView, ExportJobView
from analytics.api_quality import QualityReportView
from analytics.api_staff import StaffReportView

urlpatterns = [
    path("reports/channels/", ChannelReportView.as_view(), name="report-channels"),
    path("reports/daily/", DailyReportView.as_view(), name="report-daily"),
    path("reports/staff/", StaffReportView.as_view(), name="report-staff"),
    path("reports/anomalies/", AnomalyListView.as_view(), name="report-anomalies"),
    path("reports/quality/", QualityReportView.as_view(), name="report-quality"),
    path("reports/cohorts/", CohortReportView.as_view(), name="report-cohorts"),
    path("reports/exports/<int:pk>/", ExportJobView.as_view(), name="report-export"),
    path(
        "reports/exports/<int:pk>/download/",
        ExportJobDownloadView.as_view(),
        name="report-export-download",
    ),
]
