"""Report exports over the API: `?format=csv|xlsx` on the report endpoints answers the file
(or, past REPORT_EXPORT_SYNC_MAX_ROWS rows, 202 and a job), and the job's status and download:

    GET /api/v1/reports/exports/<id>/            status, progress, and when done the download link
    GET /api/v1/reports/exports/<id>/download/   the file (409 until done, 410 once deleted)

`format` is DRF's URL_FORMAT_OVERRIDE, which picks a renderer and answers 404 for a name it
does not know. On the report endpoints it names the answer instead (json, csv, xlsx): it is a
field of their query serializer (an unknown one is a 400 with a reason, like any parameter),
and their content negotiation (FormatIsAParameter) leaves it alone.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.http import HttpResponseBase
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import get_object_or_404
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.export_jobs import (
    export_job_create,
    export_job_file_response,
    export_job_needed,
    export_jobs_visible_to,
)
from analytics.exports import CONTENT_TYPES, report_export_response, report_kind
from analytics.models import ExportJob
from analytics.reports import ReportResult
from scrm.api_docs import DetailSerializer
from scrm.api_tenancy import CorpRolePermission

ANSWER_FORMATS = ("json", "csv", "xlsx")
FORMAT_HELP = gettext_lazy(
    "json (default); csv (UTF-8 with BOM) or xlsx: the same rows and totals as a file, or, "
    "for a large table, 202 and an export job to follow"
)


class FormatIsAParameter(DefaultContentNegotiation):
    """Negotiation by Accept only: `?format=` is the view's own parameter here (see above)."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


@extend_schema_field(OpenApiTypes.FLOAT)
class ProgressField(serializers.ReadOnlyField):
    pass


class ExportJobSerializer(serializers.ModelSerializer):
    progress = ProgressField(help_text=gettext_lazy("share of the rows written, 0..1"))
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(
        help_text=gettext_lazy("the file, once the job is done; null before and after")
    )

    class Meta:
        model = ExportJob
        fields = ["id", "report", "format", "status", "progress", "rows_total", "rows_done",
                  "error", "created_at", "finished_at", "url", "download_url"]  # fmt: skip
        read_only_fields = fields

    def _absolute(self, name: str, job: ExportJob) -> str:
        # Django's reverse, not DRF's: DRF's would carry the request's ?format= along.
        path = reverse(name, kwargs={"pk": job.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_url(self, job: ExportJob) -> str:
        return self._absolute("report-export", job)

    def get_download_url(self, job: ExportJob) -> str | None:
        if job.status != ExportJob.Status.DONE:
            return None
        return self._absolute("report-export-download", job)


def report_answer(request: Request, result: ReportResult, fmt: str, json: Any) -> Any:
    """The report endpoints' answer in `fmt`: `json()` for JSON, else the file, or 202 and
    an export job when the table is too large to write inside the request."""
    if fmt == "json":
        return json()
    if not export_job_needed(result):
        return report_export_response(result, fmt)
    job = export_job_create(report=report_kind(result), params=result.params, fmt=fmt,
                            user=request.user, rows=len(result.rows) + 1)  # fmt: skip
    job.refresh_from_db()  # without a broker the job has already run
    data = ExportJobSerializer(job, context={"request": request}).data
    return Response(data, status=202, headers={"Location": data["url"]})


def report_responses(json_serializer: type[serializers.Serializer]) -> dict:
    """The report endpoints' answers, for the schema."""
    return {
        (200, "application/json"): json_serializer,
        (200, CONTENT_TYPES["csv"].split(";")[0]): OpenApiResponse(
            OpenApiTypes.BINARY, description="format=csv: UTF-8 with BOM, totals last"
        ),
        (200, CONTENT_TYPES["xlsx"]): OpenApiResponse(
            OpenApiTypes.BINARY, description="format=xlsx: one sheet, totals last"
        ),
        (202, "application/json"): OpenApiResponse(
            ExportJobSerializer,
            description="format=csv or xlsx, more rows than the server exports at once: "
            "an export job, at the Location header's URL",
        ),
        (400, "application/json"): OpenApiResponse(
            OpenApiTypes.OBJECT,
            description="A parameter is wrong (an unknown format too): {parameter: [reason]}",
        ),
    }


class ExportJobView(APIView):
    permission_classes = [CorpRolePermission]

    @extend_schema(
        tags=["reports"],
        operation_id="report_export_retrieve",
        responses={200: ExportJobSerializer, 404: DetailSerializer},
        description=gettext_lazy(
            "An export job: its status (pending, running, done, failed, expired), progress, and, "
            "once done, the download link. Its file is deleted a day later."
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(export_jobs_visible_to(request.user), pk=pk)
        return Response(ExportJobSerializer(job, context={"request": request}).data)


class ExportJobDownloadView(APIView):
    permission_classes = [CorpRolePermission]

    @extend_schema(
        tags=["reports"],
        operation_id="report_export_download",
        parameters=[],
        responses={
            (200, CONTENT_TYPES["csv"].split(";")[0]): OpenApiResponse(OpenApiTypes.BINARY),
            (200, CONTENT_TYPES["xlsx"]): OpenApiResponse(OpenApiTypes.BINARY),
            (404, "application/json"): OpenApiResponse(DetailSerializer, description="No such job"),
            (409, "application/json"): OpenApiResponse(
                DetailSerializer, description="Not done yet (or failed)"
            ),
            (410, "application/json"): OpenApiResponse(
                DetailSerializer, description="The file was deleted (kept a day)"
            ),
        },
        description=gettext_lazy("The file of a finished export job."),
    )
    def get(self, request: Request, pk: int) -> HttpResponseBase:
        job = get_object_or_404(export_jobs_visible_to(request.user), pk=pk)
        if job.status == ExportJob.Status.EXPIRED or (
            job.status == ExportJob.Status.DONE and not job.file
        ):
            return Response({"detail": _("The export file was deleted.")}, status=410)
        if job.status != ExportJob.Status.DONE:
            return Response(
                {"detail": _("The export is not ready: %(status)s.")
                 % {"status": job.get_status_display()}},
                status=409,
            )  # fmt: skip
        try:
            return export_job_file_response(job)
        except FileNotFoundError:
            return Response({"detail": _("The export file was deleted.")}, status=410)
