"""One class per report (PostHog's query runners): frozen parameters, a calculation over the
rollups only, and the same figures for the pages, the API and the exports."""

from analytics.reports.base import FIGURES, ReportParams, ReportResult
from analytics.reports.channels import ChannelReport, DailyReport
from analytics.reports.staff import STAFF_FIGURES, StaffReport

__all__ = [
    "FIGURES",
    "STAFF_FIGURES",
    "ChannelReport",
    "DailyReport",
    "ReportParams",
    "ReportResult",
    "StaffReport",
]
