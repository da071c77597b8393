from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from channels_app.attachments import validate_welcome_attachments
from contacts.models import ExternalContact, FollowRelation, RelationEvent, Staff
from scrm import days
from scrm.input_guard import StorableJSONField
from scrm.wecom.models import Corp

# Short, sortable channel codes such as pyq_0012 or xhs_618 (朋友圈广告 0012, 小红书 618).
channel_code_validator = RegexValidator(
    r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$",
    _("Use lowercase letters and digits in parts joined by _, such as pyq_0012 or xhs_618."),
)
slug_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_-]*$", _("Use letters, digits, - and _ only.")
)


class Channel(models.Model):
    """渠道: where customers come from (a Moments ad, a Xiaohongshu post, a store counter)."""

    class Type(models.IntegerChoices):
        DEFAULT = 0, _("default")
        STORE = 1, _("store")
        AD = 2, _("advertising")
        REFERRAL = 3, _("referral")
        GROUP = 4, _("customer group")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="channels", verbose_name=_("corp")
    )
    name = models.CharField(_("name"), max_length=64)
    code = models.CharField(
        _("code"), max_length=32, validators=[channel_code_validator],
        help_text=_("Short naming convention, e.g. pyq_0012 or xhs_618."),
    )  # fmt: skip
    channel_type = models.PositiveSmallIntegerField(
        _("channel type"), choices=Type.choices, default=Type.DEFAULT
    )
    category = models.CharField(_("group"), max_length=64, blank=True)
    utm_source = models.CharField(_("utm_source"), max_length=64, blank=True)
    utm_medium = models.CharField(_("utm_medium"), max_length=64, blank=True)
    utm_campaign = models.CharField(_("utm_campaign"), max_length=64, blank=True)
    utm_content = models.CharField(_("utm_content"), max_length=64, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    notes = models.TextField(_("notes"), blank=True)
    # Used when the live code has no welcome message of its own.
    welcome_text = models.TextField(
        _("welcome message"), blank=True,
        help_text=_("Variables: {customer_name}, {staff_name}."),
    )  # fmt: skip
    welcome_attachments = StorableJSONField(
        _("welcome attachments"),
        default=list,
        blank=True,
        validators=[validate_welcome_attachments],
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ["corp", "code"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "code"], name="channel_unique_code"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class ChannelCost(models.Model):
    """Spend on a channel over a date range (inclusive), for cost per add and ROI."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="costs", verbose_name=_("channel")
    )
    start_date = models.DateField(_("from"))
    end_date = models.DateField(_("to"))
    amount = models.DecimalField(
        _("amount"), max_digits=14, decimal_places=2, validators=[MinValueValidator(0)]
    )
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    note = models.CharField(_("note"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("channel cost")
        verbose_name_plural = _("channel costs")
        ordering = ["-start_date"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end_date__gte=models.F("start_date")),
                name="channel_cost_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel.code} {self.start_date}..{self.end_date} {self.amount}"

    def clean(self) -> None:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValidationError({"end_date": _("The end date is before the start date.")})
        if self.channel_id is not None:
            refused = self.channel.corp.currency_error(self.currency)
            if refused:
                raise ValidationError({"currency": refused})


class LiveCode(models.Model):
    """活码: a WeCom "contact me" code with a channel identity."""

    class Mode(models.TextChoices):
        NATIVE = "native", _("native (WeCom multi-user code)")
        LANDING = "landing", _("landing (tracked link)")

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        ACTIVE = "active", _("active")
        PAUSED = "paused", _("paused")
        ARCHIVED = "archived", _("archived")

    class Strategy(models.TextChoices):
        ROUND_ROBIN = "round_robin", _("round robin")
        WEIGHTED = "weighted", _("weighted")
        LEAST_LOADED = "least_loaded", _("least loaded today")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="live_codes", verbose_name=_("corp")
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.PROTECT, related_name="live_codes", verbose_name=_("channel")
    )
    name = models.CharField(_("name"), max_length=64)
    # What customers read on the landing page (its title and heading); the channel's name is
    # internal and never shown to them.
    public_title = models.CharField(
        _("public title"), max_length=64, blank=True,
        help_text=_("Shown to customers as the landing page's title; blank: the code's name."),
    )  # fmt: skip
    language = models.CharField(
        _("customer language"), max_length=16, blank=True, choices=settings.LANGUAGES,
        help_text=_("The landing page's language; blank: the corp's."),
    )  # fmt: skip
    # Global by design: /l/<slug>/ names no corp (see tenant_global_unique).
    slug = models.SlugField(_("link slug"), max_length=40, unique=True, validators=[slug_validator])
    mode = models.CharField(_("mode"), max_length=16, choices=Mode.choices, default=Mode.NATIVE)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT
    )
    strategy = models.CharField(
        _("assignment"), max_length=16, choices=Strategy.choices, default=Strategy.LEAST_LOADED
    )
    penalize_slow_reply = models.BooleanField(
        _("prefer fast responders"), default=False,
        help_text=_("Least-loaded: weigh down staff whose recent average first reply is slow."),
    )  # fmt: skip
    skip_verify = models.BooleanField(_("add without verification"), default=True)
    auto_accept_from = models.TimeField(_("auto-accept from"), null=True, blank=True)
    auto_accept_to = models.TimeField(_("auto-accept to"), null=True, blank=True)
    is_exclusive = models.BooleanField(_("one staff per customer"), default=False)
    tag_ids = StorableJSONField(_("tags to apply"), default=list, blank=True)
    welcome_text = models.TextField(
        _("welcome message"), blank=True,
        help_text=_("Variables: {customer_name}, {staff_name}."),
    )  # fmt: skip
    welcome_attachments = StorableJSONField(
        _("welcome attachments"),
        default=list,
        blank=True,
        validators=[validate_welcome_attachments],
    )
    daily_target = models.PositiveIntegerField(_("daily target"), null=True, blank=True)
    total_target = models.PositiveIntegerField(_("total target"), null=True, blank=True)
    # What WeCom holds for a native code. The printed QR belongs to config_id: edits update the
    # contact way in place, so a printed poster keeps working.
    config_id = models.CharField(_("config_id"), max_length=64, blank=True, db_index=True)
    qr_code = models.URLField(_("WeCom QR URL"), max_length=512, blank=True)
    state = models.CharField(_("state"), max_length=30, blank=True, db_index=True)
    published_users = StorableJSONField(_("published staff"), default=list, blank=True)
    published_skip_verify = models.BooleanField(
        _("published without verification"), null=True, blank=True
    )
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    sync_error = models.CharField(_("last publish error"), max_length=255, blank=True)
    imported = models.BooleanField(_("imported from WeCom"), default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    # The printed link /l/<slug>/ names no corp, so its slug is one namespace for the whole
    # deployment (on Citus: a reference table of slugs, see README).
    tenant_global_unique = {"slug": "the landing URL /l/<slug>/ names no corp"}

    class Meta:
        verbose_name = _("live code")
        verbose_name_plural = _("live codes")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "config_id"],
                condition=~models.Q(config_id=""),
                name="live_code_unique_config_id",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def title_for_customers(self) -> str:
        return self.public_title or self.name

    @property
    def customer_language(self) -> str:
        """The language of the pages its customers see: its own, else its corp's."""
        return self.language or self.corp.language

    def clean(self) -> None:
        if self.channel_id and self.corp_id and self.channel.corp_id != self.corp_id:
            raise ValidationError({"channel": _("The channel belongs to another corp.")})
        if (self.auto_accept_from is None) != (self.auto_accept_to is None):
            raise ValidationError(_("Give both ends of the auto-accept window, or neither."))


class LiveCodePart(models.Model):
    """A row that belongs to a live code (its pool, shifts, special dates, stores). It carries
    the code's corp like every tenant row; save() takes it from the code when not given."""

    class Meta:
        abstract = True

    def save(self, *args: object, **kwargs: object) -> None:
        if self.corp_id is None and self.live_code_id is not None:
            self.corp_id = self.live_code.corp_id
        super().save(*args, **kwargs)


class PoolMember(LiveCodePart):
    """A staff member in a live code's pool, with a weight and a daily cap."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="pool", verbose_name=_("live code")
    )
    staff = models.ForeignKey(
        Staff,
        on_delete=models.CASCADE,
        related_name="pool_memberships",
        verbose_name=_("staff member"),
    )
    weight = models.PositiveSmallIntegerField(
        _("weight"), default=1, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    daily_cap = models.PositiveIntegerField(
        _("daily cap"), null=True, blank=True, help_text=_("Empty: no cap.")
    )
    is_backup = models.BooleanField(
        _("backup"), default=False,
        help_text=_("Receives customers only when everyone else is capped or off shift."),
    )  # fmt: skip
    is_enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("pool member")
        verbose_name_plural = _("staff pool")
        ordering = ["live_code", "is_backup", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "live_code", "staff"], name="pool_member_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.staff} @ {self.live_code}"


class ScheduleRule(LiveCodePart):
    """A shift: on these weekdays, between these times (corp time zone), this part of the pool
    is on duty. A window whose end is before its start runs past midnight."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="schedules", verbose_name=_("live code")
    )
    name = models.CharField(_("name"), max_length=64, blank=True)
    weekdays = models.CharField(
        _("weekdays"), max_length=7, default="1234567",
        validators=[RegexValidator(r"^[1-7]{1,7}$", _("Digits 1 (Monday) to 7 (Sunday)."))],
    )  # fmt: skip
    start_time = models.TimeField(_("from"))
    end_time = models.TimeField(_("to"))
    members = models.ManyToManyField(PoolMember, related_name="schedules", verbose_name=_("staff"))

    class Meta:
        verbose_name = _("shift")
        verbose_name_plural = _("shifts")
        ordering = ["live_code", "start_time"]

    def __str__(self) -> str:
        return f"{self.name or self.weekdays} {self.start_time:%H:%M}-{self.end_time:%H:%M}"


class ScheduleOverride(LiveCodePart):
    """A holiday or special date: replaces the weekly shifts on that date."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="overrides", verbose_name=_("live code")
    )
    date = models.DateField(_("date"))
    closed = models.BooleanField(_("closed (backup staff only)"), default=False)
    start_time = models.TimeField(_("from"), null=True, blank=True)
    end_time = models.TimeField(_("to"), null=True, blank=True)
    members = models.ManyToManyField(
        PoolMember, related_name="overrides", blank=True, verbose_name=_("staff")
    )
    note = models.CharField(_("note"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("special date")
        verbose_name_plural = _("special dates")
        ordering = ["live_code", "date", "start_time"]

    def __str__(self) -> str:
        return f"{self.date} {self.note}"


class Store(LiveCodePart):
    """A store of a store/region code: one printed code, each store with its own pool."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="stores", verbose_name=_("live code")
    )
    code = models.SlugField(_("store code"), max_length=32)
    name = models.CharField(_("name"), max_length=64)
    region = models.CharField(_("region"), max_length=64, blank=True)
    members = models.ManyToManyField(PoolMember, related_name="stores", verbose_name=_("staff"))

    class Meta:
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        ordering = ["live_code", "region", "code"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "live_code", "code"], name="store_unique_code"),
        ]

    def __str__(self) -> str:
        return self.name


class DailyCounter(models.Model):
    """Per live code, staff member and local day: the cap's capacity taken (`assigned`: landing
    visits claimed on the database path, and capacity granted to the landing page's Redis
    store, which may not all be spent yet; see channels_app.landing_store) and customers
    added. Changed only by conditional atomic updates, so caps hold under concurrency."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="counters", verbose_name=_("live code")
    )
    staff = models.ForeignKey(
        Staff, on_delete=models.CASCADE, related_name="+", verbose_name=_("staff member")
    )
    day = models.DateField(_("day"))
    assigned = models.PositiveIntegerField(_("assigned"), default=0)
    added = models.PositiveIntegerField(_("added"), default=0)

    class Meta:
        verbose_name = _("daily counter")
        verbose_name_plural = _("daily counters")
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "live_code", "staff", "day"], name="daily_counter_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.live_code_id}/{self.staff_id} {self.day}: {self.assigned}/{self.added}"


class LandingSlot(models.Model):
    """A single-user contact way of one staff member for a landing code. Its state is leased
    to one scan at a time, so the add that follows joins that exact scan."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="slots", verbose_name=_("live code")
    )
    staff = models.ForeignKey(
        Staff,
        on_delete=models.CASCADE,
        related_name="landing_slots",
        verbose_name=_("staff member"),
    )
    config_id = models.CharField(_("config_id"), max_length=64, blank=True)
    qr_code = models.URLField(_("WeCom QR URL"), max_length=512, blank=True)
    state = models.CharField(_("state"), max_length=30, blank=True)
    leased_until = models.DateTimeField(_("leased until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("landing slot")
        verbose_name_plural = _("landing slots")
        indexes = [models.Index(fields=["live_code", "staff", "leased_until"], name="slot_free")]

    def __str__(self) -> str:
        return self.state or f"slot {self.pk}"


class ReferralCode(models.Model):
    """老带新: a customer's own referral link; adds through it record the referrer."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="referrals", verbose_name=_("live code")
    )
    referrer = models.ForeignKey(
        ExternalContact,
        on_delete=models.CASCADE,
        related_name="referral_codes",
        verbose_name=_("referrer"),
    )
    token = models.CharField(_("token"), max_length=16)
    # For a native live code, the referrer's own contact way (its state names this row).
    config_id = models.CharField(_("config_id"), max_length=64, blank=True)
    qr_code = models.URLField(_("WeCom QR URL"), max_length=512, blank=True)
    state = models.CharField(_("state"), max_length=30, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("referral code")
        verbose_name_plural = _("referral codes")
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "live_code", "referrer"], name="referral_unique"
            ),
            # 12 random URL-safe characters (72 bits), and the link names its code's slug too:
            # unique per corp by constraint, across corps by construction.
            models.UniqueConstraint(fields=["corp", "token"], name="referral_token_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.referrer} → {self.live_code}"


class Scan(models.Model):
    """One visit of a tracked link (two-jump). No raw IP is stored, only a salted hash."""

    class Device(models.TextChoices):
        MOBILE = "mobile", _("mobile")
        TABLET = "tablet", _("tablet")
        DESKTOP = "desktop", _("desktop")
        BOT = "bot", _("bot")
        UNKNOWN = "unknown", _("unknown")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    live_code = models.ForeignKey(
        LiveCode, on_delete=models.CASCADE, related_name="scans", verbose_name=_("live code")
    )
    # A default rather than auto_now_add: scans buffered by the landing page's Redis path are
    # written later in batches and keep the time of the visit.
    created_at = models.DateTimeField(
        _("time"), default=timezone.now, editable=False, db_index=True
    )
    # The Redis stream entry a buffered scan came from: writing a batch twice adds nothing
    # (scan_visit_once; stream entry ids are unique in the one stream, across corps too).
    visit_id = models.CharField(_("visit id"), max_length=32, null=True, blank=True, editable=False)
    utm_source = models.CharField(max_length=64, blank=True)
    utm_medium = models.CharField(max_length=64, blank=True)
    utm_campaign = models.CharField(max_length=64, blank=True)
    utm_content = models.CharField(max_length=64, blank=True)
    utm_term = models.CharField(max_length=64, blank=True)
    device = models.CharField(_("device"), max_length=8, choices=Device.choices)
    in_wechat = models.BooleanField(_("in WeChat"), default=False)
    referrer_url = models.CharField(_("referrer URL"), max_length=512, blank=True)
    ip_hash = models.CharField(_("IP hash"), max_length=32, blank=True)
    device_key = models.CharField(_("device key"), max_length=32, blank=True, db_index=True)
    staff = models.ForeignKey(
        Staff,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("staff member"),
    )
    slot = models.ForeignKey(
        LandingSlot,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="scans",
        verbose_name=_("landing slot"),
    )
    store = models.ForeignKey(
        Store,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="scans",
        verbose_name=_("store"),
    )
    referral = models.ForeignKey(
        ReferralCode,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="scans",
        verbose_name=_("referral code"),
    )
    reused = models.BooleanField(_("returning device"), default=False)

    class Meta:
        verbose_name = _("scan")
        verbose_name_plural = _("scans")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "visit_id"], name="scan_visit_once"),
        ]
        indexes = [
            models.Index(fields=["slot", "created_at"], name="scan_slot_time"),
            models.Index(fields=["corp", "live_code", "created_at"], name="scan_code_time"),
            models.Index(fields=["corp", "staff", "created_at"], name="scan_staff_time"),
        ]

    def __str__(self) -> str:
        when = days.local_display(self.created_at, days.corp_zone(self.corp_id))
        return f"{self.live_code_id} @ {when}"


# What a contact way's state said, as channels_app.state parses it; "foreign" is a state made
# elsewhere (another tool, a code made by hand in WeCom), kept as it came.
STATE_KIND_CHOICES = [
    ("native", _("native code")),
    ("landing", _("landing link")),
    ("referral", _("referral code")),
    ("group", _("group code")),
    ("foreign", _("foreign state")),
]


class Attribution(models.Model):
    """One add of the relation history, resolved through its state to its live code, channel,
    scan or referrer (one per add event; is_first_touch is projected with the first source)."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    add_event = models.ForeignKey(
        RelationEvent,
        on_delete=models.CASCADE,
        related_name="attribution",
        verbose_name=_("add"),
    )
    external_contact = models.ForeignKey(
        ExternalContact,
        on_delete=models.CASCADE,
        related_name="attributions",
        verbose_name=_("customer"),
    )
    follow_relation = models.ForeignKey(
        FollowRelation,
        on_delete=models.CASCADE,
        related_name="attributions",
        verbose_name=_("follow relation"),
    )
    staff = models.ForeignKey(
        Staff, on_delete=models.PROTECT, related_name="+", verbose_name=_("staff member")
    )
    live_code = models.ForeignKey(
        LiveCode,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="attributions",
        verbose_name=_("live code"),
    )
    channel = models.ForeignKey(
        Channel,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="attributions",
        verbose_name=_("channel"),
    )
    scan = models.ForeignKey(
        Scan,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="attributions",
        verbose_name=_("scan"),
    )
    referrer = models.ForeignKey(
        ExternalContact,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("referrer"),
    )
    store = models.ForeignKey(
        Store,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("store"),
    )
    state = models.CharField(_("state"), max_length=64, blank=True)
    state_kind = models.CharField(
        _("state kind"), max_length=16, blank=True, choices=STATE_KIND_CHOICES
    )
    added_at = models.DateTimeField(_("added at"), db_index=True)
    is_first_touch = models.BooleanField(_("first touch"), default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("attribution")
        verbose_name_plural = _("attributions")
        ordering = ["-added_at"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "add_event"], name="attribution_once_per_add"),
        ]
        indexes = [
            models.Index(fields=["corp", "channel", "added_at"], name="attr_channel_day"),
            models.Index(fields=["corp", "live_code", "added_at"], name="attr_code_day"),
            models.Index(fields=["corp", "staff", "added_at"], name="attr_staff_day"),
        ]

    def __str__(self) -> str:
        return f"{self.external_contact} ← {self.live_code or self.state}"


class GroupJoinWay(models.Model):
    """客户群活码: a "join the group chat" code (add_join_way) carrying our state."""

    class Scene(models.IntegerChoices):
        MINIPROGRAM = 1, _("mini program")
        QR_CODE = 2, _("QR code")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="group_join_ways", verbose_name=_("corp")
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.PROTECT, related_name="group_join_ways", verbose_name=_("channel")
    )
    name = models.CharField(_("name"), max_length=30)
    scene = models.PositiveSmallIntegerField(_("scene"), choices=Scene.choices, default=2)
    chat_ids = StorableJSONField(_("group chat IDs"), default=list, help_text=_("At most 5."))
    auto_create_room = models.BooleanField(_("create a new group when full"), default=True)
    room_base_name = models.CharField(_("new group name"), max_length=40, blank=True)
    room_base_id = models.PositiveIntegerField(_("new group number from"), default=1)
    config_id = models.CharField(_("config_id"), max_length=64, blank=True, db_index=True)
    qr_code = models.URLField(_("WeCom QR URL"), max_length=512, blank=True)
    state = models.CharField(_("state"), max_length=30, blank=True, db_index=True)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("group chat code")
        verbose_name_plural = _("group chat codes")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not 1 <= len(self.chat_ids or []) <= 5:
            raise ValidationError({"chat_ids": _("Give 1 to 5 group chat IDs.")})


class GroupMemberJoin(models.Model):
    """A member joining a customer group, attributed by the member's join state."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    chat_id = models.CharField(_("group chat ID"), max_length=64)
    member_id = models.CharField(_("member"), max_length=64)
    member_type = models.PositiveSmallIntegerField(
        _("member type"), default=2
    )  # 1 staff, 2 customer
    external_contact = models.ForeignKey(
        ExternalContact,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("customer"),
    )
    join_way = models.ForeignKey(
        GroupJoinWay,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="joins",
        verbose_name=_("group chat code"),
    )
    channel = models.ForeignKey(
        Channel,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("channel"),
    )
    join_scene = models.PositiveSmallIntegerField(_("join scene"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=64, blank=True)
    state_kind = models.CharField(
        _("state kind"), max_length=16, blank=True, choices=STATE_KIND_CHOICES
    )
    joined_at = models.DateTimeField(_("joined at"), db_index=True)

    class Meta:
        verbose_name = _("group join")
        verbose_name_plural = _("group joins")
        ordering = ["-joined_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "chat_id", "member_id", "joined_at"], name="group_join_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} → {self.chat_id}"


class SourceRule(models.Model):
    """自动标签 / 欢迎语规则: when an add matches the conditions (all that are set), apply the
    tags and, if the code and channel have none, send this welcome message."""

    class Scope(models.TextChoices):
        FIRST_ADD = "first_add", _("first add only")
        ANY_ADD = "any_add", _("any add")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="source_rules", verbose_name=_("corp")
    )
    name = models.CharField(_("name"), max_length=64)
    is_active = models.BooleanField(_("active"), default=True)
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=100, help_text=_("Lower first; the first welcome wins.")
    )
    scope = models.CharField(_("applies to"), max_length=16, choices=Scope.choices,
                             default=Scope.FIRST_ADD)  # fmt: skip
    channel = models.ForeignKey(
        Channel,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("channel"),
    )
    channel_type = models.PositiveSmallIntegerField(
        _("channel type"), choices=Channel.Type.choices, null=True, blank=True
    )
    live_code = models.ForeignKey(
        LiveCode,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("live code"),
    )
    add_way = models.IntegerField(_("add way"), null=True, blank=True)
    state_prefix = models.CharField(_("state prefix"), max_length=30, blank=True)
    time_from = models.TimeField(_("from (time of day)"), null=True, blank=True)
    time_to = models.TimeField(_("to (time of day)"), null=True, blank=True)
    weekdays = models.CharField(
        _("weekdays"), max_length=7, blank=True,
        validators=[RegexValidator(r"^[1-7]{0,7}$", _("Digits 1 (Monday) to 7 (Sunday)."))],
    )  # fmt: skip
    tag_ids = StorableJSONField(_("tags to apply"), default=list, blank=True)
    welcome_text = models.TextField(_("welcome message"), blank=True)
    welcome_attachments = StorableJSONField(
        _("welcome attachments"),
        default=list,
        blank=True,
        validators=[validate_welcome_attachments],
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("auto rule")
        verbose_name_plural = _("auto rules (tags, welcome)")
        ordering = ["corp", "priority", "pk"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if (self.time_from is None) != (self.time_to is None):
            raise ValidationError(_("Give both ends of the time window, or neither."))


class WelcomeDelivery(models.Model):
    """One add's welcome message (the welcome_code works once, for 20 s): queued with the add,
    claimed by the worker that sends it, then its outcome. The row is the durable to-do: a
    welcome whose worker died is found here and queued again while its code lives."""

    class Outcome(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENT = "sent", _("sent")
        ALREADY_CHATTING = "already_chatting", _("already chatting (41051)")
        EXPIRED = "expired", _("code expired (41050)")
        NONE_CONFIGURED = "none", _("no welcome configured")
        FAILED = "failed", _("failed")

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="+", verbose_name=_("corp")
    )
    follow_relation = models.ForeignKey(
        FollowRelation,
        on_delete=models.CASCADE,
        related_name="welcomes",
        verbose_name=_("follow relation"),
    )
    added_at = models.DateTimeField(_("added at"))
    source = models.CharField(_("source"), max_length=16, blank=True)  # live_code, channel, rule
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    errcode = models.IntegerField(_("errcode"), null=True, blank=True)
    received_at = models.DateTimeField(_("callback received at"), null=True, blank=True)
    # While queued: the add's welcome_code (single-use, 20 s; no personal data), when it was
    # last put on the queue, and when a worker claimed it (a claim older than a few seconds
    # is a worker that died).
    welcome_code = models.CharField(_("welcome code"), max_length=128, blank=True)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), auto_now_add=True)

    class Meta:
        verbose_name = _("welcome message")
        verbose_name_plural = _("welcome messages")
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["corp", "follow_relation", "added_at"], name="welcome_once_per_add"
            ),
        ]
        indexes = [
            # The sweep's question, every two seconds: which welcomes are still queued.
            models.Index(
                fields=["received_at"],
                name="welcome_queued",
                condition=models.Q(outcome="queued"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.follow_relation} {self.outcome}"
