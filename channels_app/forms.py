"""Forms of the channels admin pages: CSV uploads, the WeCom import, and the inline checks
that keep a live code's pool, shifts and stores inside one corp and one code."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, QueryDict
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from channels_app.attachments import AttachmentRowsField
from channels_app.models import PoolMember, ReferralCode
from channels_app.services.live_codes import POOL_FIELDS, PoolRow, live_code_pool_set
from contacts.models import Tag
from contacts.selectors import tag_choices_by_group
from scrm.csv_import import MAX_BYTES
from scrm.wecom import tenancy
from scrm.wecom.models import Corp
from scrm.wecom.tenancy import WRITE


class CorpChoiceForm(forms.Form):
    """A choice among `corps` (the corps where the user may do what the page does), active."""

    corp = forms.ModelChoiceField(label=capfirst(_("corp")), queryset=Corp.objects.none())

    def __init__(self, *args: object, corps: QuerySet[Corp], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["corp"].queryset = corps.filter(is_active=True).order_by("name")
        corps = list(self.fields["corp"].queryset[:2])
        if len(corps) == 1:  # the usual single-corp install: nothing to choose
            self.fields["corp"].initial = corps[0].pk


class CsvUploadForm(CorpChoiceForm):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "UTF-8 (with or without BOM) or GBK as saved by Excel; the first row names the "
            "columns; at most 2,000 rows."
        ),
    )

    def clean_file(self) -> object:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_BYTES:
            raise ValidationError(_("The file is larger than 5 MB."))
        return upload


class LeaderboardForm(CorpChoiceForm):
    days = forms.TypedChoiceField(
        label=_("Period"),
        coerce=int,
        choices=[(7, _("last 7 days")), (30, _("last 30 days")), (90, _("last 90 days")),
                 (0, _("all time"))],
    )  # fmt: skip

    @classmethod
    def from_query(cls, query: QueryDict, *, corps: QuerySet[Corp]) -> LeaderboardForm:
        """Bound from the query string, defaulting to the first of `corps` and 30 days."""
        data = query.copy()
        if not data.get("corp"):
            corp = corps.filter(is_active=True).order_by("name").first()
            data["corp"] = corp.pk if corp else ""
        data.setdefault("days", "30")
        return cls(data, corps=corps)


class ReferralCodeForm(forms.ModelForm):
    """Picks a live code and a customer; the service makes (or returns) their code."""

    class Meta:
        model = ReferralCode
        fields = ["live_code", "referrer"]

    def clean(self) -> dict:
        data = super().clean()
        live_code, referrer = data.get("live_code"), data.get("referrer")
        if live_code and referrer and live_code.corp_id != referrer.corp_id:
            raise ValidationError(_("The customer belongs to another corp than the live code."))
        return data

    def validate_unique(self) -> None:
        # An existing (live code, referrer) pair is returned as it is, not refused.
        pass


class PoolMemberFormSet(BaseInlineFormSet):
    """The admin's pool inline, saved through live_code_pool_set as the API and the CSV import
    are: a member who stays keeps the row (and the shifts on it); a pool change re-syncs an
    active native code's WeCom user list."""

    def clean(self) -> None:
        super().clean()
        corp_id = self.instance.corp_id
        for form in self.forms:
            staff = form.cleaned_data.get("staff") if hasattr(form, "cleaned_data") else None
            if staff is not None and corp_id and staff.corp_id != corp_id:
                form.add_error("staff", _("This member belongs to another corp."))

    def pool_rows(self) -> list[PoolRow]:
        """The pool as the valid formset lists it: one row per form with a member, less the
        forms ticked for deletion and the empty extra forms."""
        rows: list[PoolRow] = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if data.get("staff") is None or (self.can_delete and data.get("DELETE")):
                continue
            values = {name: data[name] for name in POOL_FIELDS if name in data}
            rows.append(PoolRow(staff=data["staff"], **values))
        return rows

    def save(self, commit: bool = True) -> list[PoolMember]:
        if not commit:
            raise ValueError("the pool is saved by its service, at once")
        change = live_code_pool_set(live_code=self.instance, rows=self.pool_rows())
        # What the admin's history message reads from a saved formset.
        self.new_objects = change.created
        self.changed_objects = change.updated
        self.deleted_objects = change.deleted
        return [*change.created, *(member for member, _fields in change.updated)]


def pool_member_choices(field: forms.Field, live_code_id: int | None) -> forms.Field:
    """Shifts, special dates and stores pick members of this code's own pool only."""
    field.queryset = PoolMember.objects.filter(live_code_id=live_code_id).select_related("staff")
    field.label_from_instance = lambda member: str(member.staff)
    if live_code_id is None:
        field.help_text = _("Save the staff pool first, then choose its members here.")
    return field


class AttachmentRowsForm(forms.ModelForm):
    """A form whose `welcome_attachments` are edited as rows, not as raw JSON."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("welcome_attachments")
        if field is not None and not field.disabled:
            self.fields["welcome_attachments"] = AttachmentRowsField(
                label=field.label,
                help_text=_("One row per attachment (at most 9), sent after the welcome text."),
            )


class TagPickerForm(AttachmentRowsForm):
    """A form whose `tag_ids` (a JSON list of WeCom tag ids) is picked from the tag library,
    grouped by tag group, instead of typed as JSON. `corp_ids` are the corps whose tags are
    offered (where the user may write); a tag must belong to the row's own corp."""

    corp_ids: tuple[int, ...] = ()

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if "tag_ids" not in self.fields:  # read-only for this user
            return
        keep = [str(tag_id) for tag_id in (self.instance.tag_ids or [])]
        field = forms.MultipleChoiceField(
            label=self.fields["tag_ids"].label, required=False,
            widget=forms.CheckboxSelectMultiple(attrs={"class": "tag-picker"}),
            choices=tag_choices_by_group(corp_ids=self.corp_ids, keep=keep),
            help_text=_("Applied to every customer added through it (WeCom's mark_tag)."),
        )  # fmt: skip
        self.fields["tag_ids"] = field
        self.initial["tag_ids"] = keep

    def clean(self) -> dict:
        data = super().clean()
        corp = data.get("corp") or getattr(self.instance, "corp", None)
        chosen = [tag_id for tag_id in data.get("tag_ids") or [] if tag_id not in self._kept()]
        if corp is not None and chosen:
            known = set(
                Tag.objects.filter(corp=corp, tag_id__in=chosen, deleted=False).values_list(
                    "tag_id", flat=True
                )
            )
            foreign = [tag_id for tag_id in chosen if tag_id not in known]
            if foreign:
                self.add_error("tag_ids", _("Tags of another corp: %(ids)s")
                               % {"ids": ", ".join(foreign)})  # fmt: skip
        return data

    def _kept(self) -> set[str]:
        """Tag ids the row already had: kept as they are, even if gone from the library."""
        return (
            {str(tag_id) for tag_id in (self.instance.tag_ids or [])} if self.instance.pk else set()
        )


class TagPickerAdminMixin:
    """For a ModelAdmin of rows with `tag_ids` and a corp: the tag picker, offering the tags
    of the corps where the user may write."""

    form = TagPickerForm

    def get_form(self, request: HttpRequest, obj: object = None, **kwargs: object) -> type:
        form = super().get_form(request, obj, **kwargs)  # type: ignore[misc]
        corp_ids = tenancy.corps_for_user(request.user, WRITE).values_list("pk", flat=True)
        return type(form.__name__, (form,), {"corp_ids": tuple(corp_ids)})
