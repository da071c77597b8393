from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from analytics.models import AnomalyAck, DecisionSettings, SurgeAlert
from scrm.wecom.admin import ReadOnlyAdmin, local_time_column
from scrm.wecom.admin_tenancy import CorpScopedAdmin

# The rule as analytics.surges applies it, for the settings and the alerts' pages.
SURGE_RULE = _(
    "A live code surges when its scans or adds of the last hour are more than the multiplier "
    "times the median of the same hour of the week over the weeks of history, and at least "
    "the minimum (a code without history surges as soon as it reaches the minimum). Checked "
    "every minute; the alert ends at the first check where the rule no longer holds. The "
    "customers whose first add came through the code from an hour before the alert until "
    "its end get the surge tag, once each."
)


@admin.register(DecisionSettings)
class DecisionSettingsAdmin(CorpScopedAdmin):
    list_display = ["corp", "quality_top_n", "quality_tag_customers", "surge_enabled",
                    "staff_initiated_alert_share", "updated_at"]  # fmt: skip
    list_select_related = ["corp"]
    readonly_fields = ["updated_at"]
    fieldsets = [
        (None, {"fields": ["corp"]}),
        (
            _("Channel quality score"),
            {
                "fields": [
                    (
                        "quality_weight_scans",
                        "quality_weight_scan_to_add",
                        "quality_weight_consult",
                    ),
                    (
                        "quality_weight_reply_speed",
                        "quality_weight_retention",
                        "quality_weight_revenue",
                    ),
                    "quality_days",
                    "quality_top_n",
                    ("quality_tag_customers", "quality_tag_name"),
                    "quality_order_pickers",
                ],
                "description": _(
                    "Each part is normalised across the corp's channels (the best channel 1, "
                    "the worst 0) and weighted; the score is recomputed every hour."
                ),
            },
        ),
        (
            _("Surges"),
            {
                "fields": [
                    "surge_enabled",
                    ("surge_multiplier", "surge_min_count", "surge_weeks"),
                    "surge_tag_name",
                ],
                "description": SURGE_RULE,
            },
        ),
        (None, {"fields": ["auto_tag_group"]}),
        (
            _("Budget advice and staff alerts"),
            {
                "fields": [
                    ("budget_reduce_above_hours", "budget_increase_below_hours"),
                    "staff_initiated_alert_share",
                    "updated_at",
                ]
            },
        ),
    ]


@admin.register(SurgeAlert)
class SurgeAlertAdmin(ReadOnlyAdmin):
    """What the minute's surge check found (analytics.surges); the alerts are its record, so
    nobody edits or deletes them here."""

    list_display = [local_time_column(SurgeAlert, "started_at"),
                    local_time_column(SurgeAlert, "ended_at"), "live_code", "metric",
                    "scans", "scans_usual", "adds", "adds_usual", "peak_scans", "peak_adds",
                    "customers_tagged", "corp"]  # fmt: skip
    list_filter = [("ended_at", admin.EmptyFieldListFilter), "metric", "corp"]
    search_fields = ["live_code__name", "live_code__slug"]
    list_select_related = ["live_code", "corp"]
    date_hierarchy = "started_at"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra_context = {**(extra_context or {}), "surge_rule": SURGE_RULE}
        return super().changelist_view(request, extra_context)


@admin.register(AnomalyAck)
class AnomalyAckAdmin(ReadOnlyAdmin):
    """Who acknowledged which anomaly, and why (written from the anomaly page only)."""

    list_display = ["acknowledged_at", "corp", "kind", "key", "acknowledged_by", "note"]
    list_filter = ["kind", "corp"]
    search_fields = ["key", "note"]
    list_select_related = ["corp", "acknowledged_by"]
    date_hierarchy = "acknowledged_at"
