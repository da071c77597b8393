"""One class per report (PostHog's query runners): frozen parameters, a calculation over the
rollups only, and the same figures for the pages, the API and the exports."""

from analytics.reports.base import FIGURES, ReportParams, ReportResult
from analytics.reports.channels import ChannelReport, DailyReport

__all__ = ["FIGURES", "ChannelReport", "DailyReport", "ReportParams", "ReportResult"]
