from django.urls import path

from analytics.api import ChannelReportView, DailyReportView
from analytics.api_exports import ExportJobDownloadView, ExportJobView
from analytics.api_quality import QualityReportView

urlpatterns = [
    path("reports/channels/", ChannelReportView.as_view(), name="report-channels"),
    path("reports/daily/", DailyReportView.as_view(), name="report-daily"),
    path("reports/quality/", QualityReportView.as_view(), name="report-quality"),
    path("reports/exports/<int:pk>/", ExportJobView.as_view(), name="report-export"),
    path(
        "reports/exports/<int:pk>/download/",
        ExportJobDownloadView.as_view(),
        name="report-export-download",
    ),
]
