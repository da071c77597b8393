import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from scrm import days
from scrm.input_guard import StorableJSONField
from scrm.wecom.crypto import aes_key_is_valid
from scrm.wecom.vault import EncryptedTextField


def validate_aes_key(value: str) -> None:
    if not aes_key_is_valid(value):
        raise ValidationError(_("EncodingAESKey must be exactly 43 letters or digits."))


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(_("Unknown time zone: %(tz)s"), params={"tz": value}) from exc


class Corp(models.Model):
    """A WeCom organisation (企业). Every domain row belongs to one."""

    corp_id = models.CharField(_("corp ID"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=128)
    # Secrets: encrypted at rest (scrm.wecom.vault), write-only in the admin, never serialized,
    # logged or filtered on (the fields offer no lookup but isnull).
    secret = EncryptedTextField(_("app secret"), max_length=128)
    agent_id = models.CharField(_("agent ID"), max_length=32, blank=True)
    callback_token = EncryptedTextField(_("callback token"), max_length=32)
    encoding_aes_key = EncryptedTextField(
        _("EncodingAESKey"), max_length=43, validators=[validate_aes_key]
    )
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="Asia/Shanghai", validators=[validate_time_zone]
    )
    # What its customers read: the landing pages speak it, whatever a visitor's browser asks
    # for (a code may override it, LiveCode.language).
    language = models.CharField(
        _("customer language"),
        max_length=16,
        choices=settings.LANGUAGES,
        default="zh-hans",
        help_text=_("The language of the landing pages customers see."),
    )
    # Money is kept in the corp's currency: amounts in another are refused (with a reason)
    # until exchange rates exist.
    currency = models.CharField(
        _("currency"),
        max_length=3,
        default="CNY",
        validators=[RegexValidator(r"^[A-Z]{3}$", _("Use a three-letter currency code."))],
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("corp")
        verbose_name_plural = _("corps")
        ordering = ["corp_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.corp_id})"

    def __repr__(self) -> str:
        # Never let a secret reach a log line through repr().
        return f"<Corp {self.corp_id}>"

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def currency_error(self, currency: str) -> str | None:
        """Why an amount in `currency` is refused; None when it is the corp's."""
        if currency == self.currency:
            return None
        return _(
            "Amounts are kept in the corp's currency, %(corp)s; %(given)s is refused until "
            "exchange rates are supported."
        ) % {"corp": self.currency, "given": currency}


class CallbackEvent(models.Model):
    """The callback inbox: every verified event, stored before it is processed."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        PROCESSED = "processed", _("processed")
        FAILED = "failed", _("failed")
        IGNORED = "ignored", _("ignored")
        # Verified, but a field the pipeline needs is unusable (a list, an over-long id): kept
        # for the operator with the reason in last_error, never processed.
        INVALID = "invalid", _("invalid")

    # No index of its own: the dedup constraint's (corp, dedup_key) serves lookups by corp, and
    # every index is paid for on each insert of the callback's hot path.
    corp = models.ForeignKey(
        Corp,
        on_delete=models.CASCADE,
        related_name="callback_events",
        verbose_name=_("corp"),
        db_index=False,
    )
    # (Event, ChangeType, UserID|ChatId|Id, ExternalUserID, CreateTime): several customers adding
    # in the same second share CreateTime, so the customer must be part of the key.
    dedup_key = models.CharField(_("dedup key"), max_length=255)
    event = models.CharField(_("event"), max_length=64)
    change_type = models.CharField(_("change type"), max_length=64, blank=True)
    user_id = models.CharField(_("UserID"), max_length=64, blank=True)
    external_user_id = models.CharField(_("ExternalUserID"), max_length=64, blank=True)
    event_time = models.DateTimeField(_("event time"))
    payload = StorableJSONField(_("parsed fields"), default=dict)
    raw_body = models.TextField(_("raw body"), blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    duplicates = models.PositiveIntegerField(_("duplicate deliveries"), default=0)

    class Meta:
        verbose_name = _("callback event")
        verbose_name_plural = _("callback inbox")
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["corp", "dedup_key"], name="callback_event_dedup"),
        ]
        indexes = [models.Index(fields=["status", "received_at"], name="callback_event_status")]

    def __str__(self) -> str:
        when = days.local_display(self.event_time, days.corp_zone(self.corp_id))
        return f"{self.change_type or self.event} {self.external_user_id} @ {when}"


class ApiCall(models.Model):
    """One call to the WeCom API, so that an HTTP 200 with an empty list is visible."""

    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="api_calls", verbose_name=_("corp")
    )
    endpoint = models.CharField(_("endpoint"), max_length=128)
    method = models.CharField(_("method"), max_length=8)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    errcode = models.IntegerField(_("errcode"), null=True, blank=True)
    errmsg = models.CharField(_("errmsg"), max_length=255, blank=True)
    items_returned = models.IntegerField(_("items returned"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("API call")
        verbose_name_plural = _("API call log")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.endpoint} errcode={self.errcode}"


class Role(models.TextChoices):
    """What a user may do in one corp (see scrm/wecom/tenancy.py for who may do what)."""

    ADMIN = "admin", pgettext_lazy("role", "admin")  # everything: credentials, users too
    OPERATOR = "operator", pgettext_lazy("role", "operator")  # channels, codes, customers...
    MANAGER = "manager", pgettext_lazy("role", "manager")  # read-only: customers, reports


class CorpMembership(models.Model):
    """A user's membership of one corp, with a role. A user may belong to several corps;
    Django superusers (the deployment's operators) see every corp without one."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="corp_memberships",
        verbose_name=_("user"),
    )
    corp = models.ForeignKey(
        Corp, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("corp")
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("corp membership")
        verbose_name_plural = _("corp memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "corp"], name="membership_once_per_corp"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.corp.corp_id}: {self.get_role_display()}"
