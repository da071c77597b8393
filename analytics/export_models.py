"""A report export written in the background (analytics.export_jobs): who asked, for which
report, how far it got, and the file, kept in MEDIA_ROOT/exports/ for a day."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from scrm.wecom.models import Corp


class ExportJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")
        EXPIRED = "expired", _("expired")

    class Report(models.TextChoices):
        CHANNELS = "channels", _("channel report")
        DAILY = "daily", _("daily trend")

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "XLSX"

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("started by"),
    )
    report = models.CharField(_("report"), max_length=16, choices=Report.choices)
    format = models.CharField(_("file format"), max_length=8, choices=Format.choices)
    # ReportParams without the corp: first/last (ISO days), window, group_by, channel filters.
    params = models.JSONField(_("parameters"), default=dict)
    language = models.CharField(_("language"), max_length=16, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices,
                              default=Status.PENDING)  # fmt: skip
    rows_total = models.PositiveIntegerField(_("rows"), default=0)
    rows_done = models.PositiveIntegerField(_("rows written"), default=0)
    file = models.FileField(_("file"), upload_to="exports/", max_length=255, blank=True)
    filename = models.CharField(_("file name"), max_length=255, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("report export")
        verbose_name_plural = _("report exports")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["corp", "created_at"])]

    def __str__(self) -> str:
        return f"{self.report}.{self.format} {self.status}"

    @property
    def progress(self) -> float:
        """Share of the rows written, 0..1 (1 once done)."""
        if self.status == self.Status.DONE:
            return 1.0
        return min(self.rows_done / self.rows_total, 1.0) if self.rows_total else 0.0
