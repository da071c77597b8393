from django.db import models
from django.utils.translation import gettext_lazy as _

from contacts.add_ways import add_way_label
from scrm import days
from scrm.input_guard import StorableJSONField
from scrm.wecom.models import Corp


class Staff(models.Model):
    """A corp member (成员) with customer contact (客户联系) enabled."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        DISABLED = "disabled", _("disabled")
        LEFT = "left", _("left")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="staff", verbose_name=_("corp")
    )
    userid = models.CharField(_("UserID"), max_length=64)
    name = models.CharField(_("name"), max_length=128, blank=True)
    department = models.CharField(_("department"), max_length=128, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    left_at = models.DateTimeField(_("left at"), null=True, blank=True)
    # From get_user_behavior_data: the recent average first reply, for assignment.
    avg_reply_minutes = models.FloatField(_("avg. first reply (min)"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("staff member")
        verbose_name_plural = _("staff")
        ordering = ["corp", "userid"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "userid"], name="staff_unique_userid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.userid})" if self.name else self.userid


class ExternalContact(models.Model):
    """A customer (客户): an external contact of the corp."""

    class Type(models.IntegerChoices):
        UNKNOWN = 0, _("unknown")
        WECHAT = 1, _("WeChat user")
        WECOM = 2, _("WeCom user")

    class Gender(models.IntegerChoices):
        UNKNOWN = 0, _("unknown")
        MALE = 1, _("male")
        FEMALE = 2, _("female")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="external_contacts", verbose_name=_("corp")
    )
    external_userid = models.CharField(_("external UserID"), max_length=64)
    name = models.CharField(_("name"), max_length=128, blank=True)
    type = models.PositiveSmallIntegerField(_("type"), choices=Type.choices, default=Type.UNKNOWN)
    gender = models.PositiveSmallIntegerField(
        _("gender"), choices=Gender.choices, default=Gender.UNKNOWN
    )
    unionid = models.CharField(_("unionid"), max_length=64, blank=True, db_index=True)
    avatar = models.URLField(_("avatar"), max_length=512, blank=True)
    corp_name = models.CharField(_("company"), max_length=128, blank=True)
    # Set once externalcontact/get answered; null while the details are still to be fetched.
    details_fetched_at = models.DateTimeField(_("details fetched at"), null=True, blank=True)
    details_error = models.CharField(_("last details error"), max_length=255, blank=True)
    details_attempts = models.PositiveSmallIntegerField(_("details fetch attempts"), default=0)
    # PIPL erasure: personal fields emptied, the row kept so counts and reports stay consistent.
    erased_at = models.DateTimeField(_("personal data erased at"), null=True, blank=True)
    created_at = models.DateTimeField(_("first seen"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "external_userid"], name="external_contact_unique_id"
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.external_userid


class FollowRelation(models.Model):
    """A customer x staff relation (跟进关系), with its add source and lifecycle."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        DELETED_BY_STAFF = "deleted_by_staff", _("deleted by staff")
        DELETED_BY_CUSTOMER = "deleted_by_customer", _("deleted by customer")
        TRANSFERRED = "transferred", _("transferred")
        TRANSFER_FAILED = "transfer_failed", _("transfer failed")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    external_contact = models.ForeignKey(
        ExternalContact,
        on_delete=models.CASCADE,
        related_name="follow_relations",
        verbose_name=_("customer"),
    )
    staff = models.ForeignKey(
        Staff,
        on_delete=models.PROTECT,
        related_name="follow_relations",
        verbose_name=_("staff member"),
    )
    # Null while only a delete has arrived: WeCom does not guarantee event order.
    created_at = models.DateTimeField(_("added at"), null=True, blank=True, db_index=True)
    add_way = models.IntegerField(_("add way"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=64, blank=True)
    oper_userid = models.CharField(_("operator"), max_length=64, blank=True)
    remark = models.CharField(_("remark"), max_length=255, blank=True)
    description = models.TextField(_("description"), blank=True)
    status = models.CharField(
        _("status"), max_length=24, choices=Status.choices, default=Status.ACTIVE
    )
    # Time of the event that set `status`; an older event never overrides a newer one.
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    transfer_fail_reason = models.CharField(_("transfer fail reason"), max_length=64, blank=True)
    backfilled = models.BooleanField(_("backfilled"), default=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("follow relation")
        verbose_name_plural = _("follow relations")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "external_contact", "staff"], name="follow_relation_unique"
            ),
        ]
        indexes = [models.Index(fields=["corp", "staff", "created_at"], name="follow_staff_day")]

    def __str__(self) -> str:
        return f"{self.external_contact} × {self.staff}"

    @property
    def add_way_label(self) -> str:
        return add_way_label(self.add_way)


class RelationEvent(models.Model):
    """关系变更历史: one add, deletion, removal or transfer of a customer x staff relation, at the
    time WeCom gives. Append-only: FollowRelation's current state and every customer's first
    source are projections of these rows, and reports about the past read them, never the
    current state. An add is resolved to its channel by its Attribution (channels_app)."""

    class Kind(models.TextChoices):
        ADDED = "added", _("added")
        DELETED_BY_CUSTOMER = "deleted_by_customer", _("deleted by customer")
        DELETED_BY_STAFF = "deleted_by_staff", _("removed by staff")
        TRANSFERRED = "transferred", _("transferred")
        TRANSFER_FAILED = "transfer_failed", _("transfer failed")

    class Initiator(models.TextChoices):
        STAFF = "staff", _("the staff member")
        CUSTOMER = "customer", _("the customer")
        HANDED_OVER = "handed_over", _("shared or assigned by a colleague")
        OTHER = "other", _("someone else")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    follow_relation = models.ForeignKey(
        FollowRelation,
        on_delete=models.CASCADE,
        related_name="history",
        verbose_name=_("follow relation"),
    )
    # The relation's two ends, kept on each row for the reads by customer and by staff member.
    external_contact = models.ForeignKey(
        ExternalContact,
        on_delete=models.CASCADE,
        related_name="relation_history",
        verbose_name=_("customer"),
    )
    staff = models.ForeignKey(
        Staff, on_delete=models.PROTECT, related_name="+", verbose_name=_("staff member")
    )
    kind = models.CharField(_("event"), max_length=24, choices=Kind.choices)
    occurred_at = models.DateTimeField(_("time"))
    state = models.CharField(_("state"), max_length=64, blank=True)
    # Only externalcontact/get and calibration tell an add's add_way: filled in when they do.
    add_way = models.IntegerField(_("add way"), null=True, blank=True)
    # Who initiated the add, classified from the oper_userid that externalcontact/get and
    # calibration give (contacts.add_ways.add_initiator) when they tell of this add; kept per
    # add because FollowRelation.oper_userid is only the relation's latest, and as a class, not
    # the id, so a customer's erasure leaves the staff report as it was.
    initiator = models.CharField(
        _("initiated by"), max_length=16, choices=Initiator.choices, blank=True
    )
    fail_reason = models.CharField(_("transfer fail reason"), max_length=64, blank=True)
    # Learned from WeCom's own data (details, calibration), not announced by a callback.
    backfilled = models.BooleanField(_("backfilled"), default=False)
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("relation event")
        verbose_name_plural = _("relation history")
        ordering = ["occurred_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "follow_relation", "kind", "occurred_at"],
                name="relation_event_once",
            ),
        ]
        indexes = [
            models.Index(fields=["corp", "kind", "occurred_at"], name="relation_event_day"),
            models.Index(fields=["corp", "staff", "occurred_at"], name="relation_event_staff"),
            models.Index(
                fields=["corp", "external_contact", "occurred_at"], name="relation_event_contact"
            ),
            # The rollups find what was recorded since they last looked (analytics).
            models.Index(fields=["corp", "recorded_at"], name="relation_event_recorded"),
        ]

    def __str__(self) -> str:
        when = days.local_display(self.occurred_at, days.corp_zone(self.corp_id))
        return f"{self.get_kind_display()} {when}"

    @property
    def add_way_label(self) -> str:
        return add_way_label(self.add_way)


class FirstSource(models.Model):
    """首次来源: how the customer first came to the corp, one per customer: a projection of the
    customer's earliest add in the relation history (its staff, time, add_way and state; its
    live code, channel and scan through the add's Attribution), rebuilt by one function
    (channels_app.services.attribution.first_touch_project). A later add never changes it; an
    earlier add delivered late (WeCom does not keep order) or found by calibration does.
    """

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    external_contact = models.OneToOneField(
        ExternalContact,
        on_delete=models.CASCADE,
        related_name="first_source",
        verbose_name=_("customer"),
    )
    add_event = models.ForeignKey(
        RelationEvent, on_delete=models.CASCADE, related_name="+", verbose_name=_("first add")
    )
    # Copied from add_event by the projection, for filters and ordering without a join.
    staff = models.ForeignKey(
        Staff,
        on_delete=models.PROTECT,
        related_name="first_sources",
        verbose_name=_("staff member"),
    )
    add_way = models.IntegerField(_("add way"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=64, blank=True, db_index=True)
    added_at = models.DateTimeField(_("added at"), db_index=True)
    backfilled = models.BooleanField(_("backfilled"), default=False)
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    # One per customer: the customer's id is global and the customer belongs to one corp, so
    # the one-to-one index and first_source_one_per_customer say the same (see README, Citus).
    tenant_global_unique = {"external_contact": "one first source per customer"}

    class Meta:
        verbose_name = _("first source")
        verbose_name_plural = _("first sources")
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "external_contact"], name="first_source_one_per_customer"
            ),
        ]
        indexes = [models.Index(fields=["corp", "added_at"], name="first_source_day")]

    def __str__(self) -> str:
        return f"{self.external_contact}: {self.add_way_label} {self.state}".strip()

    @property
    def add_way_label(self) -> str:
        return add_way_label(self.add_way)


class TimelineEvent(models.Model):
    """客户动态: one thing that happened to a customer, in the customer's own history."""

    class Kind(models.TextChoices):
        ADDED = "added", _("added")
        RE_ADDED = "re_added", _("added again")
        TAGGED = "tagged", _("tagged")
        UNTAGGED = "untagged", _("tag removed")
        WELCOME_SENT = "welcome_sent", _("welcome message sent")
        WELCOME_FAILED = "welcome_failed", _("welcome message not sent")
        DELETED_BY_STAFF = "deleted_by_staff", _("deleted by staff")
        DELETED_BY_CUSTOMER = "deleted_by_customer", _("deleted by customer")
        TRANSFERRED = "transferred", _("transferred")
        TRANSFER_FAILED = "transfer_failed", _("transfer failed")
        CONVERSION = "conversion", _("conversion")
        # An add no callback announced, found by calibration or in a customer's details.
        BACKFILLED = "backfilled", _("added (found in WeCom's data)")
        ERASED = "erased", _("personal data erased")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    external_contact = models.ForeignKey(
        ExternalContact,
        on_delete=models.CASCADE,
        related_name="timeline",
        verbose_name=_("customer"),
    )
    kind = models.CharField(_("event"), max_length=24, choices=Kind.choices)
    occurred_at = models.DateTimeField(_("time"), db_index=True)
    staff = models.ForeignKey(
        Staff,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("staff member"),
    )
    summary = models.CharField(_("summary"), max_length=255, blank=True)
    data = StorableJSONField(_("details"), default=dict, blank=True)
    # Makes recording idempotent: a replayed event never writes its line twice.
    dedup_key = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("timeline event")
        verbose_name_plural = _("customer timeline")
        ordering = ["-occurred_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "external_contact", "dedup_key"], name="timeline_event_once"
            ),
        ]

    def __str__(self) -> str:
        when = days.local_display(self.occurred_at, days.corp_zone(self.corp_id))
        return f"{when} {self.get_kind_display()} {self.summary}"


class TagGroup(models.Model):
    """A corp tag group (企业标签组), mirrored from WeCom."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="tag_groups", verbose_name=_("corp")
    )
    group_id = models.CharField(_("group ID"), max_length=64)
    name = models.CharField(_("name"), max_length=30)
    order = models.BigIntegerField(_("sort order"), default=0)
    deleted = models.BooleanField(_("deleted in WeCom"), default=False)

    class Meta:
        verbose_name = _("tag group")
        verbose_name_plural = _("tag groups")
        ordering = ["corp", "-order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "group_id"], name="tag_group_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    """A corp tag (企业标签), mirrored from WeCom; `tag_id` is WeCom's id."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="tags", verbose_name=_("corp")
    )
    group = models.ForeignKey(
        TagGroup, on_delete=models.CASCADE, related_name="tags", verbose_name=_("tag group")
    )
    tag_id = models.CharField(_("tag ID"), max_length=64)
    name = models.CharField(_("name"), max_length=30)
    order = models.BigIntegerField(_("sort order"), default=0)
    deleted = models.BooleanField(_("deleted in WeCom"), default=False)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["group", "-order", "name"]
        constraints = [models.UniqueConstraint(fields=["corp", "tag_id"], name="tag_unique")]

    def __str__(self) -> str:
        return f"{self.group.name}/{self.name}"


class CustomerTag(models.Model):
    """A tag on a customer as seen by one staff member (WeCom tags per follow relation)."""

    class Source(models.TextChoices):
        RULE = "rule", _("auto-tag rule")
        LIVE_CODE = "live_code", _("live code")
        MANUAL = "manual", _("operator")
        WECOM = "wecom", _("WeCom")
        QUALITY = "quality", _("channel quality ranking")
        SURGE = "surge", _("surge")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    follow_relation = models.ForeignKey(
        FollowRelation,
        on_delete=models.CASCADE,
        related_name="customer_tags",
        verbose_name=_("follow relation"),
    )
    tag = models.ForeignKey(
        Tag, on_delete=models.CASCADE, related_name="customer_tags", verbose_name=_("tag")
    )
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    created_at = models.DateTimeField(_("tagged at"), auto_now_add=True)

    class Meta:
        verbose_name = _("customer tag")
        verbose_name_plural = _("customer tags")
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "follow_relation", "tag"], name="customer_tag_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.follow_relation} #{self.tag}"


class ConversionEvent(models.Model):
    """A consult, order, refund or custom conversion, matched to a customer when possible.
    `external_id` makes imports idempotent: the same row sent twice is stored once."""

    class Kind(models.TextChoices):
        CONSULT = "consult", _("consultation")
        ORDER = "order", _("order")
        REFUND = "refund", _("refund")
        CUSTOM = "custom", _("custom")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="conversions", verbose_name=_("corp")
    )
    external_id = models.CharField(_("external ID"), max_length=64)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    custom_name = models.CharField(_("custom kind"), max_length=64, blank=True)
    amount = models.DecimalField(
        _("amount"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    occurred_at = models.DateTimeField(_("occurred at"), db_index=True)
    # As given by the source system; the match to a customer may come later.
    external_userid = models.CharField(_("external UserID"), max_length=64, blank=True)
    unionid = models.CharField(_("unionid"), max_length=64, blank=True)
    external_contact = models.ForeignKey(
        ExternalContact, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="conversions", verbose_name=_("customer")
    )  # fmt: skip
    matched_at = models.DateTimeField(_("matched at"), null=True, blank=True)
    note = models.CharField(_("note"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("conversion")
        verbose_name_plural = _("conversions")
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "external_id"], name="conversion_once"),
        ]
        indexes = [
            models.Index(fields=["corp", "external_contact", "occurred_at"], name="conv_contact"),
            models.Index(fields=["corp", "matched_at"], name="conv_unmatched"),
            models.Index(fields=["corp", "created_at"], name="conv_received"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount or ''} {self.external_id}"


class AuditLog(models.Model):
    """Who did what to personal data (PIPL): exports, erasures, and other operator actions."""

    corp = models.ForeignKey(
        Corp, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("corp")
    )
    actor = models.ForeignKey(
        "auth.User",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("operator"),
    )
    actor_label = models.CharField(_("operator"), max_length=150)
    action = models.CharField(_("action"), max_length=32)
    target = models.CharField(_("target"), max_length=128)
    detail = StorableJSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        when = days.local_display(self.created_at, days.corp_zone(self.corp_id))  # UTC: no corp
        return f"{when} {self.actor_label} {self.action} {self.target}"


class CalibrationRun(models.Model):
    """校准: one pass over WeCom's own data, backfilling what no callback announced and
    comparing our daily counts with WeCom's statistics."""

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="calibrations", verbose_name=_("corp")
    )
    since = models.DateField(_("compare from"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices,
                              default=Status.RUNNING)  # fmt: skip
    triggered_by = models.CharField(_("started by"), max_length=150, blank=True)
    staff_count = models.PositiveIntegerField(_("staff"), default=0)
    contacts_seen = models.PositiveIntegerField(_("relations seen"), default=0)
    relations_backfilled = models.PositiveIntegerField(_("relations backfilled"), default=0)
    first_sources_backfilled = models.PositiveIntegerField(_("first sources backfilled"), default=0)
    deviations = models.PositiveIntegerField(_("days deviating"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("calibration run")
        verbose_name_plural = _("calibration runs")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        when = days.local_display(self.started_at, self.corp)
        return f"{self.corp.corp_id} {when} {self.status}"


class CalibrationDeviation(models.Model):
    """A day on which our new-customer count for a staff member differs from WeCom's."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    run = models.ForeignKey(
        CalibrationRun,
        on_delete=models.CASCADE,
        related_name="rows",
        verbose_name=_("calibration run"),
    )
    staff = models.ForeignKey(
        Staff, on_delete=models.CASCADE, related_name="+", verbose_name=_("staff member")
    )
    day = models.DateField(_("day"))
    ours = models.IntegerField(_("our count"))
    wecom = models.IntegerField(_("WeCom's count"))

    class Meta:
        verbose_name = _("calibration deviation")
        verbose_name_plural = _("calibration deviations")
        ordering = ["day", "staff"]

    def __str__(self) -> str:
        return f"{self.day} {self.staff}: {self.ours} vs {self.wecom}"

    @property
    def delta(self) -> int:
        return self.ours - self.wecom


class BatchTagJob(models.Model):
    """Tagging (or untagging) a filtered list of customers in the background, with progress."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    created_by = models.CharField(_("started by"), max_length=150, blank=True)
    add = models.BooleanField(_("add (else remove)"), default=True)
    tag_ids = StorableJSONField(_("tags"), default=list)
    relation_ids = StorableJSONField(_("follow relations"), default=list)
    total = models.PositiveIntegerField(_("total"), default=0)
    done = models.PositiveIntegerField(_("done"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    errors = StorableJSONField(_("errors"), default=list, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices,
                              default=Status.PENDING)  # fmt: skip
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("batch tagging")
        verbose_name_plural = _("batch tagging")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.done}/{self.total} {self.status}"
