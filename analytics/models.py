"""Rollups: the report figures per corp-local day, rebuilt from the facts (relation history,
attributions, first sources, scans, conversions, costs) by analytics.rollups, never counted up
one event at a time. A rebuild replaces a corp's days in one transaction; reports read these
tables only. Keys: flow figures by the day they happened, cohort figures by the day of the
customer's first add (first touch decides channel, live code and staff)."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from channels_app.models import Channel, LiveCode
from contacts.models import ExternalContact, Staff
from scrm import days
from scrm.input_guard import StorableJSONField
from scrm.wecom.models import Corp

WINDOWS = (7, 15, 30)  # days after the first add in which revenue, orders and buyers count


def _key_fields() -> tuple[models.ForeignKey, ...]:
    return (
        models.ForeignKey(Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")),
        models.ForeignKey(
            Channel,
            on_delete=models.CASCADE,
            null=True,
            blank=True,
            related_name="+",
            verbose_name=_("channel"),
        ),
        models.ForeignKey(
            LiveCode,
            on_delete=models.CASCADE,
            null=True,
            blank=True,
            related_name="+",
            verbose_name=_("live code"),
        ),
        models.ForeignKey(
            Staff,
            on_delete=models.CASCADE,
            null=True,
            blank=True,
            related_name="+",
            verbose_name=_("staff member"),
        ),
    )


class Breakdown(models.TextChoices):
    """The reports' breakdowns beyond channel, live code and staff: a scan's utm parameters and
    device class, and the add_way WeCom gives an add (名片分享, 扫描二维码...)."""

    UTM_SOURCE = "utm_source", _("utm_source")
    UTM_MEDIUM = "utm_medium", _("utm_medium")
    UTM_CAMPAIGN = "utm_campaign", _("utm_campaign")
    DEVICE = "device", _("device")
    ADD_WAY = "add_way", _("add way")


class Touch(models.TextChoices):
    """Whom an add, deletion or removal is credited to: the add it belongs to (any touch: a
    re-add through another code counts for that code), or the customer's first touch."""

    ANY = "any", _("any touch")
    FIRST = "first", _("first touch")


class FlowFigures(models.Model):
    """What happened on a local day: scans (landing codes), adds (each add, re-adds included,
    credited to its own attribution; those through landing codes apart, for scan-to-add, and
    those the staff member initiated, RelationEvent.initiator), deletions by the customer and
    removals by staff (credited to the add they ended)."""

    day = models.DateField(_("day"))
    scans = models.PositiveIntegerField(_("scans"), default=0)
    adds = models.PositiveIntegerField(_("adds"), default=0)
    landing_adds = models.PositiveIntegerField(_("adds through landing codes"), default=0)
    staff_initiated_adds = models.PositiveIntegerField(
        _("adds initiated by the staff member"), default=0
    )
    lost = models.PositiveIntegerField(_("deleted by customers"), default=0)
    removed = models.PositiveIntegerField(_("removed by staff"), default=0)

    class Meta:
        abstract = True


class CohortFigures(models.Model):
    """The customers whose first add fell on a local day, and what they did after it: a consult
    within 72 hours, still a customer 30 days on (counted only for those whose 30 days were
    over when rebuilt: `mature_30d`), and per window N orders, buyers, buyers of 2+ orders and
    revenue (orders minus refunds) within N days of the first add. A late conversion changes
    its cohort's row on the next rebuild of that day."""

    day = models.DateField(_("first-add day"))
    new_customers = models.PositiveIntegerField(_("new customers"), default=0)
    consult_72h = models.PositiveIntegerField(_("consulted within 72 hours"), default=0)
    mature_30d = models.PositiveIntegerField(_("30 days over"), default=0)
    retained_30d = models.PositiveIntegerField(_("still customers after 30 days"), default=0)
    revenue_7 = models.DecimalField(
        _("revenue within 7 days"), max_digits=16, decimal_places=2, default=0
    )
    orders_7 = models.PositiveIntegerField(_("orders within 7 days"), default=0)
    buyers_7 = models.PositiveIntegerField(_("buyers within 7 days"), default=0)
    repeat_buyers_7 = models.PositiveIntegerField(_("buyers of 2+ orders within 7 days"), default=0)
    revenue_15 = models.DecimalField(
        _("revenue within 15 days"), max_digits=16, decimal_places=2, default=0
    )
    orders_15 = models.PositiveIntegerField(_("orders within 15 days"), default=0)
    buyers_15 = models.PositiveIntegerField(_("buyers within 15 days"), default=0)
    repeat_buyers_15 = models.PositiveIntegerField(
        _("buyers of 2+ orders within 15 days"), default=0
    )
    revenue_30 = models.DecimalField(
        _("revenue within 30 days"), max_digits=16, decimal_places=2, default=0
    )
    orders_30 = models.PositiveIntegerField(_("orders within 30 days"), default=0)
    buyers_30 = models.PositiveIntegerField(_("buyers within 30 days"), default=0)
    repeat_buyers_30 = models.PositiveIntegerField(
        _("buyers of 2+ orders within 30 days"), default=0
    )

    class Meta:
        abstract = True


def _breakdown_fields() -> tuple[models.Field, ...]:
    return (
        models.ForeignKey(Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")),
        models.ForeignKey(
            Channel,
            on_delete=models.CASCADE,
            null=True,
            blank=True,
            related_name="+",
            verbose_name=_("channel"),
        ),
        models.CharField(_("breakdown"), max_length=16, choices=Breakdown.choices),
        models.CharField(_("value"), max_length=64, blank=True),
    )


class DailyFlow(FlowFigures):
    """Flow figures per local day, channel, live code and staff member, credited either way
    (`touch`: each fact to its own add, or to the customer's first touch)."""

    corp, channel, live_code, staff = _key_fields()
    touch = models.CharField(_("credited to"), max_length=8, choices=Touch.choices, default="any")

    class Meta:
        verbose_name = _("daily flow")
        verbose_name_plural = _("daily flows")
        indexes = [models.Index(fields=["corp", "day"], name="daily_flow_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.channel_id}/{self.live_code_id}/{self.staff_id}"


class DailyFlowBreakdown(FlowFigures):
    """Flow figures per local day, channel and one breakdown's value."""

    corp, channel, breakdown, value = _breakdown_fields()

    class Meta:
        verbose_name = _("daily flow breakdown")
        verbose_name_plural = _("daily flow breakdowns")
        indexes = [models.Index(fields=["corp", "breakdown", "day"], name="daily_flow_bd_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.breakdown}={self.value}"


class DailyVisitor(models.Model):
    """A device that scanned a live code on a local day (once per day, code, staff member and
    the scan's utm and device class): visitors over a period are the distinct devices of these
    rows, not a sum of days."""

    corp, channel, live_code, staff = _key_fields()
    day = models.DateField(_("day"))
    device_key = models.CharField(_("device key"), max_length=32)
    utm_source = models.CharField(max_length=64, blank=True)
    utm_medium = models.CharField(max_length=64, blank=True)
    utm_campaign = models.CharField(max_length=64, blank=True)
    device = models.CharField(_("device"), max_length=8, blank=True)

    class Meta:
        verbose_name = _("daily visitor")
        verbose_name_plural = _("daily visitors")
        indexes = [models.Index(fields=["corp", "day"], name="daily_visitor_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.channel_id}/{self.live_code_id}/{self.staff_id}"


class CustomerCohort(models.Model):
    """One customer's first add (first touch: channel, live code, staff member, its scan's utm
    and device class, its add_way) and what followed it, computed once per rebuild of its
    first-add day: DailyCohort and DailyCohortBreakdown are sums of these rows."""

    corp, channel, live_code, staff = _key_fields()
    external_contact = models.ForeignKey(
        ExternalContact, on_delete=models.CASCADE, related_name="+", verbose_name=_("customer")
    )
    day = models.DateField(_("first-add day"))
    # The cohort matrices (analytics.reports.cohorts) measure ages from these moments.
    added_at = models.DateTimeField(_("first added at"), null=True, blank=True)
    lapsed_at = models.DateTimeField(
        _("no longer a customer since"),
        null=True,
        blank=True,
        help_text=_("When the customer's last live relation with the corp ended, if none is "
                    "live; empty while it is a customer."),
    )  # fmt: skip
    first_order_at = models.DateTimeField(
        _("first order at"), null=True, blank=True,
        help_text=_("The customer's first order at or after its first add."),
    )  # fmt: skip
    utm_source = models.CharField(max_length=64, blank=True)
    utm_medium = models.CharField(max_length=64, blank=True)
    utm_campaign = models.CharField(max_length=64, blank=True)
    device = models.CharField(_("device"), max_length=8, blank=True)
    add_way = models.CharField(_("add way"), max_length=8, blank=True)
    consulted = models.BooleanField(_("consulted within 72 hours"), default=False)
    mature = models.BooleanField(_("30 days over"), default=False)
    retained = models.BooleanField(_("still customers after 30 days"), default=False)
    revenue_7 = models.DecimalField(
        _("revenue within 7 days"), max_digits=16, decimal_places=2, default=0
    )
    orders_7 = models.PositiveIntegerField(_("orders within 7 days"), default=0)
    revenue_15 = models.DecimalField(
        _("revenue within 15 days"), max_digits=16, decimal_places=2, default=0
    )
    orders_15 = models.PositiveIntegerField(_("orders within 15 days"), default=0)
    revenue_30 = models.DecimalField(
        _("revenue within 30 days"), max_digits=16, decimal_places=2, default=0
    )
    orders_30 = models.PositiveIntegerField(_("orders within 30 days"), default=0)

    class Meta:
        verbose_name = _("customer cohort")
        verbose_name_plural = _("customer cohorts")
        indexes = [models.Index(fields=["corp", "day"], name="customer_cohort_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.external_contact_id}"


class DailyCohort(CohortFigures):
    """Cohort figures per first-add day and first-touch channel, live code and staff member."""

    corp, channel, live_code, staff = _key_fields()

    class Meta:
        verbose_name = _("daily cohort")
        verbose_name_plural = _("daily cohorts")
        indexes = [models.Index(fields=["corp", "day"], name="daily_cohort_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.channel_id}/{self.live_code_id}/{self.staff_id}"


class DailyCohortBreakdown(CohortFigures):
    """Cohort figures per first-add day, first-touch channel and one breakdown's value."""

    corp, channel, breakdown, value = _breakdown_fields()

    class Meta:
        verbose_name = _("daily cohort breakdown")
        verbose_name_plural = _("daily cohort breakdowns")
        indexes = [models.Index(fields=["corp", "breakdown", "day"], name="daily_cohort_bd_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.breakdown}={self.value}"


class DailyCapUse(models.Model):
    """A staff member's daily cap on one live code on a local day, and how much of it was
    taken: `used` is what the cap is checked against (channels_app DailyCounter: landing
    visits assigned on landing codes, adds on native codes), `cap` the pool member's daily
    cap as it was when the day was rebuilt (caps have no history). Only enabled members with
    a cap above 0, and only days with a counter (a visit or an add that day)."""

    corp, channel, live_code, staff = _key_fields()
    day = models.DateField(_("day"))
    used = models.PositiveIntegerField(_("cap used"), default=0)
    cap = models.PositiveIntegerField(_("daily cap"), default=0)

    class Meta:
        verbose_name = _("daily cap use")
        verbose_name_plural = _("daily cap uses")
        indexes = [models.Index(fields=["corp", "day"], name="daily_cap_use_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.live_code_id}/{self.staff_id}: {self.used}/{self.cap}"


class DailyCost(models.Model):
    """A channel's spend on one local day: each ChannelCost spread evenly over its days (kept
    to six decimals, so the days of a cost add up to it)."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="+", verbose_name=_("channel")
    )
    day = models.DateField(_("day"))
    amount = models.DecimalField(_("amount"), max_digits=20, decimal_places=6, default=0)

    class Meta:
        verbose_name = _("daily cost")
        verbose_name_plural = _("daily costs")
        indexes = [models.Index(fields=["corp", "day"], name="daily_cost_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.channel_id}: {self.amount}"


class RollupDay(models.Model):
    """When a corp's day was last rebuilt, and whether a change since (a late conversion, a
    backfilled add, a cost edit) has made it dirty."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    day = models.DateField(_("day"))
    computed_at = models.DateTimeField(_("computed at"), null=True, blank=True)
    dirty = models.BooleanField(_("to rebuild"), default=True)

    class Meta:
        verbose_name = _("rollup day")
        verbose_name_plural = _("rollup days")
        ordering = ["corp", "-day"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "day"], name="rollup_day_once"),
        ]

    def __str__(self) -> str:
        return f"{self.corp_id} {self.day}"


class RollupState(models.Model):
    """Per corp, what the rollups have seen: facts recorded up to `facts_seen_until` (later
    ones dirty the days they touch) and the costs as they were (`costs_fingerprint`: a cost
    added, edited or deleted rebuilds the days its ranges cover)."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    facts_seen_until = models.DateTimeField(_("facts seen until"), null=True, blank=True)
    costs_fingerprint = models.CharField(_("costs fingerprint"), max_length=64, blank=True)
    cost_first = models.DateField(_("costs from"), null=True, blank=True)
    cost_last = models.DateField(_("costs to"), null=True, blank=True)

    class Meta:
        verbose_name = _("rollup state")
        verbose_name_plural = _("rollup states")
        constraints = [models.UniqueConstraint(fields=["corp"], name="rollup_state_once")]

    def __str__(self) -> str:
        return f"{self.corp_id} {self.facts_seen_until}"


# A report export written in the background (analytics.export_jobs): who asked, for which
# report, how far it got, and the file, kept in MEDIA_ROOT/exports/ for a day.
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
        STAFF = "staff", _("staff report")

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
    params = StorableJSONField(_("parameters"), default=dict)
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


class DecisionSettings(models.Model):
    """A corp's choices for the decisions taken from its data (analytics.decisions): the quality
    score's weights and the actions on its ranking, the surge rule, the budget advice's
    thresholds and the staff report's alert. A corp without a row uses the defaults
    (`decision_settings_for`); nothing here is applied to spend automatically."""

    corp = models.OneToOneField(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    # Channel quality score: each part normalised across the corp's channels (0..1), weighted.
    quality_weight_scans = models.PositiveSmallIntegerField(_("weight: scan volume"), default=15)
    quality_weight_scan_to_add = models.PositiveSmallIntegerField(
        _("weight: scan to add"), default=15
    )
    quality_weight_consult = models.PositiveSmallIntegerField(
        _("weight: consulted within 72 h"), default=20
    )
    quality_weight_reply_speed = models.PositiveSmallIntegerField(
        _("weight: reply speed"), default=15
    )
    quality_weight_retention = models.PositiveSmallIntegerField(
        _("weight: retained after 30 days"), default=20
    )
    quality_weight_revenue = models.PositiveSmallIntegerField(
        _("weight: revenue per new customer"), default=15
    )
    quality_days = models.PositiveSmallIntegerField(
        _("quality score period (days)"),
        default=30,
        help_text=_("The score's parts are computed over this many days up to today."),
    )
    quality_top_n = models.PositiveSmallIntegerField(_("top channels"), default=5)
    quality_tag_customers = models.BooleanField(_("tag the top channels' customers"), default=True)
    quality_tag_name = models.CharField(_("tag for the top channels"), max_length=30,
                                        default="高潜力")  # fmt: skip
    quality_order_pickers = models.BooleanField(
        _("list the top channels' live codes first"), default=True
    )
    # Surge: a live code's scans or adds of the last hour against the same hour of the week.
    surge_enabled = models.BooleanField(_("detect surges"), default=True)
    surge_multiplier = models.DecimalField(
        _("surge: times the usual level"), max_digits=5, decimal_places=2, default=3
    )
    surge_min_count = models.PositiveIntegerField(_("surge: at least"), default=20)
    surge_weeks = models.PositiveSmallIntegerField(_("surge: weeks of history"), default=4)
    surge_tag_name = models.CharField(_("tag for surge customers"), max_length=30,
                                      default="紧急跟进")  # fmt: skip
    auto_tag_group = models.CharField(_("tag group of these tags"), max_length=30,
                                      default="智能标签")  # fmt: skip
    # Budget advice from the median first reply time of a channel's new customers' staff.
    budget_reduce_above_hours = models.DecimalField(
        _("advise less budget above (hours)"), max_digits=5, decimal_places=2, default=4
    )
    budget_increase_below_hours = models.DecimalField(
        _("advise more budget below (hours)"), max_digits=5, decimal_places=2, default=2
    )
    # Staff report: adds the staff member initiated (add_way), as a share of their adds.
    staff_initiated_alert_share = models.DecimalField(
        _("alert when staff-initiated adds exceed"),
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.100"),
        help_text=_("A share between 0 and 1: 0.1 is 10 %."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("decision settings")
        verbose_name_plural = _("decision settings")

    def __str__(self) -> str:
        return str(self.corp)

    def clean(self) -> None:
        if not any(weight for _name, weight in self.quality_weights()):
            raise ValidationError(_("At least one quality weight must be above 0."))
        if self.budget_increase_below_hours > self.budget_reduce_above_hours:
            raise ValidationError(
                _("The threshold for more budget must not be above the one for less.")
            )
        if not Decimal(0) <= self.staff_initiated_alert_share <= Decimal(1):
            raise ValidationError(_("The staff alert share is between 0 and 1."))

    def quality_weights(self) -> list[tuple[str, int]]:
        """(part, weight) in the score's order, the parts named as in analytics.quality.PARTS."""
        return [
            ("scans", self.quality_weight_scans),
            ("scan_to_add", self.quality_weight_scan_to_add),
            ("consult_72h_rate", self.quality_weight_consult),
            ("reply_speed", self.quality_weight_reply_speed),
            ("retained_30d_rate", self.quality_weight_retention),
            ("revenue_per_customer", self.quality_weight_revenue),
        ]


def decision_settings_for(corp: Corp | int) -> DecisionSettings:
    """The corp's saved settings, or the defaults (unsaved) when it has none: reading never
    writes."""
    corp_id = corp if isinstance(corp, int) else corp.pk
    found = DecisionSettings.objects.filter(corp_id=corp_id).first()
    return found or DecisionSettings(corp_id=corp_id)


class SurgeAlert(models.Model):
    """A live code much busier than usual for this hour of the week (analytics.surges has the
    rule): opened by the minute's check when the rule fires, ended (ended_at) at the first check
    where it no longer holds. At most one open alert per code. The figures at detection are
    kept; the peaks are the highest hourly counts seen while it was open."""

    class Metric(models.TextChoices):
        SCANS = "scans", _("scans")
        ADDS = "adds", _("adds")
        BOTH = "both", _("scans and adds")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="+", verbose_name=_("live code")
    )
    metric = models.CharField(_("surging"), max_length=8, choices=Metric.choices)
    started_at = models.DateTimeField(_("detected at"))
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    # The last hour's counts at detection, and the usual level (median) they were compared with.
    scans = models.PositiveIntegerField(_("scans in the hour"))
    scans_usual = models.DecimalField(_("usual scans"), max_digits=9, decimal_places=1)
    adds = models.PositiveIntegerField(_("adds in the hour"))
    adds_usual = models.DecimalField(_("usual adds"), max_digits=9, decimal_places=1)
    peak_scans = models.PositiveIntegerField(_("peak scans in an hour"))
    peak_adds = models.PositiveIntegerField(_("peak adds in an hour"))
    customers_tagged = models.PositiveIntegerField(_("customers tagged"), default=0)

    class Meta:
        verbose_name = _("surge alert")
        verbose_name_plural = _("surge alerts")
        ordering = ["-started_at"]
        constraints = [
            # Also the index of the admin banner's "open alerts of these corps".
            models.UniqueConstraint(
                fields=["corp", "live_code"],
                condition=models.Q(ended_at__isnull=True),
                name="surge_alert_one_open_per_code",
            ),
        ]
        indexes = [models.Index(fields=["corp", "live_code", "started_at"], name="surge_code")]

    def __str__(self) -> str:
        when = days.local_display(self.started_at, days.corp_zone(self.corp_id))
        return f"{self.live_code} @ {when}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


class AnomalyAck(models.Model):
    """An operator's acknowledgement of one anomaly (analytics.anomalies): the anomaly stays
    listed, apart, with who saw it and why. `key` names the occurrence (a code and day, a
    calibration day, the oldest event of a backlog...), so a recurrence has a new key and shows
    again."""

    class Kind(models.TextChoices):
        ADDS_BELOW_SCANS = "adds_below_scans", _("adds far below scans")
        ADDS_WITHOUT_SCANS = "adds_without_scans", _("adds without scans")
        DEAD_CODE = "dead_code", _("scans but no adds for hours")
        EMPTY_API = "empty_api", _("WeCom answered an empty list")
        CALIBRATION = "calibration", _("our counts differ from WeCom's")
        CALLBACK_BACKLOG = "callback_backlog", _("callbacks waiting")
        CALLBACK_FAILED = "callback_failed", _("callbacks failed")
        LEFT_STAFF = "left_staff", _("staff who left still in a pool")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    key = models.CharField(_("occurrence"), max_length=128)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("acknowledged by"),
    )
    acknowledged_at = models.DateTimeField(_("acknowledged at"), auto_now_add=True)
    note = models.CharField(_("note"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("acknowledged anomaly")
        verbose_name_plural = _("acknowledged anomalies")
        ordering = ["-acknowledged_at"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "kind", "key"], name="anomaly_ack_once"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class QualityScore(models.Model):
    """One channel's place in its corp's quality ranking of one hour (analytics.quality): the
    score, its rank, and each part raw (as the channel report defines it) and normalised across
    the corp's active channels (0..1; a part without data is 0). Rows of an hour are replaced
    when the hour is computed again; the rows of all hours are the ranking's history."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="+", verbose_name=_("channel")
    )
    computed_at = models.DateTimeField(_("hour"))  # the UTC hour the ranking is of
    first = models.DateField(_("period from"))
    last = models.DateField(_("period to"))
    rank = models.PositiveIntegerField(_("rank"))
    score = models.DecimalField(_("score"), max_digits=7, decimal_places=2)
    new_customers = models.PositiveIntegerField(_("new customers"), default=0)
    scans = models.PositiveIntegerField(_("scans"), default=0)
    scan_to_add = models.DecimalField(_("scan to add"), max_digits=12, decimal_places=4,
                                      null=True, blank=True)  # fmt: skip
    consult_72h_rate = models.DecimalField(_("consulted within 72 h"), max_digits=12,
                                           decimal_places=4, null=True, blank=True)  # fmt: skip
    reply_minutes = models.DecimalField(_("median first reply (min)"), max_digits=10,
                                        decimal_places=1, null=True, blank=True)  # fmt: skip
    retained_30d_rate = models.DecimalField(_("retained after 30 days"), max_digits=12,
                                            decimal_places=4, null=True, blank=True)  # fmt: skip
    revenue_per_customer = models.DecimalField(_("revenue per new customer"), max_digits=18,
                                               decimal_places=2, null=True, blank=True)  # fmt: skip
    # Each part normalised (0..1), in the order of DecisionSettings.quality_weights().
    normalised = StorableJSONField(_("normalised parts"), default=dict)

    class Meta:
        verbose_name = _("channel quality score")
        verbose_name_plural = _("channel quality scores")
        ordering = ["corp", "-computed_at", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "computed_at", "channel"], name="quality_score_once_an_hour"
            ),
        ]
        indexes = [models.Index(fields=["corp", "computed_at", "rank"], name="quality_score_hour")]

    def __str__(self) -> str:
        hour = days.local_display(self.computed_at, days.corp_zone(self.corp_id))
        return f"{hour} #{self.rank} {self.channel_id}"
