from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from contacts.add_ways import ADD_WAY_CHOICES, add_way_label
from contacts.models import ExternalContact, FirstSource, FollowRelation, RelationEvent, Staff
from scrm import days
from scrm.wecom import tenancy
from scrm.wecom.admin import local_time_column
from scrm.wecom.admin_tenancy import CorpScopedAdmin, CorpScopedInline


@admin.register(Staff)
class StaffAdmin(CorpScopedAdmin):
    list_display = ["userid", "name", "department", "status", "corp",
                    local_time_column(Staff, "created_at")]  # fmt: skip
    list_filter = ["status", "corp", "department"]
    search_fields = ["userid", "name"]
    list_select_related = ["corp"]
    readonly_fields = ["created_at"]


class FirstSourceAddWayFilter(admin.SimpleListFilter):
    title = _("first add way")
    parameter_name = "first_add_way"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(str(value), label) for value, label in ADD_WAY_CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is not None and self.value().lstrip("-").isdigit():
            return queryset.filter(first_source__add_way=int(self.value()))
        return queryset


class FirstSourceStateFilter(admin.SimpleListFilter):
    title = _("first state")
    parameter_name = "first_state"

    def first_sources(self, request: HttpRequest) -> QuerySet[FirstSource]:
        """The first sources whose states are offered (channels_app leaves out its internal
        ones)."""
        return tenancy.scope(FirstSource.objects.exclude(state=""), request.user)

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        states = (
            self.first_sources(request)
            .order_by("state")
            .values_list("state", flat=True)
            .distinct()[:100]
        )
        return [(state, state) for state in states]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(first_source__state=self.value())
        return queryset


class FirstAddedWeekFilter(admin.SimpleListFilter):
    """This week's and last week's new customers, each week the corp's own (Monday to Sunday
    in its time zone); the date filter below counts days in the server's zone."""

    title = _("first added in")
    parameter_name = "first_added_week"
    WEEKS_AGO = {"this": 0, "last": 1}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("this", _("This week")), ("last", _("Last week"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        weeks_ago = self.WEEKS_AGO.get(self.value() or "")
        if weeks_ago is None:
            return queryset
        return queryset.filter(
            days.corp_week_q("first_source__added_at", weeks_ago=weeks_ago, corp="corp")
        )


class FirstAddStaffFilter(admin.RelatedOnlyFieldListFilter):
    # The title would be the FK's bare field name ("staff"), untranslated and ambiguous.
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.title = _("first-add staff")


class FirstAddedAtFilter(admin.DateFieldListFilter):
    # The title would be FirstSource.added_at's "added at", which reads as any add.
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.title = _("first added at")


class AddWayLabelMixin:
    @admin.display(description=_("add way"))
    def add_way_display(self, obj: FirstSource | FollowRelation) -> str:
        """WeCom's add_way in words (名片分享, 扫描二维码...); unknown values stay numbers."""
        return add_way_label(obj.add_way)


class FirstSourceInline(AddWayLabelMixin, CorpScopedInline, admin.StackedInline):
    model = FirstSource
    # Inline rows are labelled with the customer's name: the customer's page shows them only to
    # those who may see personal data (managers read the first source in the list's columns).
    personal = True
    fields = ["added_at", "staff", "add_way_display", "state", "backfilled"]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class FollowRelationInline(AddWayLabelMixin, CorpScopedInline, admin.TabularInline):
    model = FollowRelation
    personal = True  # the staff member's remark on the customer
    fk_name = "external_contact"
    fields = [
        "staff",
        "created_at",
        "add_way_display",
        "state",
        "status",
        "status_changed_at",
        "remark",
        "oper_userid",
        "backfilled",
    ]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RelationHistoryInline(AddWayLabelMixin, CorpScopedInline, admin.TabularInline):
    """关系变更历史: every add, deletion and transfer of the customer, oldest first."""

    model = RelationEvent
    fk_name = "external_contact"
    personal = True
    fields = ["occurred_at", "kind", "staff", "state", "add_way_display", "initiator",
              "fail_reason", "backfilled", "recorded_at"]  # fmt: skip
    readonly_fields = fields
    can_delete = False
    extra = 0
    ordering = ["occurred_at", "pk"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[RelationEvent]:
        return super().get_queryset(request).select_related("staff")


@admin.register(ExternalContact)
class ExternalContactAdmin(CorpScopedAdmin):
    personal_fields = ("__str__", "name", "unionid", "avatar", "corp_name", "gender",
                       "details_error")  # fmt: skip
    list_display = [
        "__str__",
        "external_userid",
        "first_added_at",
        "first_add_way",
        "first_staff",
        "first_state",
        "corp",
    ]
    list_filter = [
        FirstSourceAddWayFilter,
        ("first_source__staff", FirstAddStaffFilter),
        FirstSourceStateFilter,
        FirstAddedWeekFilter,
        ("first_source__added_at", FirstAddedAtFilter),
        "corp",
    ]
    search_fields = ["name", "external_userid"]
    list_select_related = ["corp", "first_source", "first_source__staff"]
    readonly_fields = [
        "corp",
        "external_userid",
        "type",
        "gender",
        "unionid",
        "avatar",
        "corp_name",
        "details_fetched_at",
        "details_error",
        "created_at",
    ]
    fields = ["corp", "external_userid", "name", *readonly_fields[2:]]
    inlines = [FirstSourceInline, FollowRelationInline, RelationHistoryInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers come from WeCom

    def _first(self, obj: ExternalContact) -> FirstSource | None:
        try:
            return obj.first_source
        except FirstSource.DoesNotExist:
            return None

    @admin.display(description=_("first added at"), ordering="first_source__added_at")
    def first_added_at(self, obj: ExternalContact) -> str | None:
        first = self._first(obj)
        return days.local_display(first.added_at, days.corp_zone(obj.corp_id)) if first else None

    @admin.display(description=_("first add way"), ordering="first_source__add_way")
    def first_add_way(self, obj: ExternalContact) -> str:
        first = self._first(obj)
        return add_way_label(first.add_way) if first else ""

    @admin.display(description=_("first-add staff"), ordering="first_source__staff__userid")
    def first_staff(self, obj: ExternalContact) -> str:
        first = self._first(obj)
        return str(first.staff) if first else ""

    @admin.display(description=_("first state"), ordering="first_source__state")
    def first_state(self, obj: ExternalContact) -> str:
        first = self._first(obj)
        return first.state if first else ""


from contacts import admin_calibration  # noqa: E402,F401,I001
from contacts import admin_lifecycle  # noqa: E402,F401
from contacts import tag_admin  # noqa: E402,F401
