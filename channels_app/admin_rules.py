"""Admin for auto rules, welcome outcomes and customer-group codes (客户群活码)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from channels_app.forms import TagPickerAdminMixin
from channels_app.models import GroupJoinWay, GroupMemberJoin, SourceRule, WelcomeDelivery
from channels_app.services.groups import group_join_way_publish
from channels_app.services.publishing import PublishError
from scrm.wecom.admin import local_time_column
from scrm.wecom.admin_tenancy import CorpScopedAdmin


@admin.register(SourceRule)
class SourceRuleAdmin(TagPickerAdminMixin, CorpScopedAdmin):
    list_display = ["name", "corp", "is_active", "priority", "scope", "channel", "channel_type",
                    "live_code", "add_way", "state_prefix", "weekdays"]  # fmt: skip
    list_filter = ["is_active", "scope", "channel_type", "corp"]
    list_editable = ["is_active", "priority"]
    search_fields = ["name", "state_prefix"]
    list_select_related = ["corp", "channel", "live_code"]
    autocomplete_fields = ["channel", "live_code"]
    fieldsets = [
        (None, {"fields": ["corp", "name", "is_active", "priority", "scope"]}),
        (_("When the add matches (all that are set)"), {
            "fields": ["channel", "channel_type", "live_code", "add_way", "state_prefix",
                       ("time_from", "time_to"), "weekdays"],
        }),
        (_("Then"), {"fields": ["tag_ids", "welcome_text", "welcome_attachments"]}),
    ]  # fmt: skip


@admin.register(WelcomeDelivery)
class WelcomeDeliveryAdmin(CorpScopedAdmin):
    personal_fields = ("__str__", "follow_relation")
    list_display = [local_time_column(WelcomeDelivery, "sent_at"), "follow_relation", "source",
                    "outcome", "errcode", local_time_column(WelcomeDelivery, "added_at"),
                    local_time_column(WelcomeDelivery, "received_at")]  # fmt: skip
    list_filter = ["outcome", "source", "corp"]
    list_select_related = ["follow_relation__staff", "follow_relation__external_contact"]
    date_hierarchy = "sent_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(GroupJoinWay)
class GroupJoinWayAdmin(CorpScopedAdmin):
    list_display = ["name", "channel", "scene", "state", "config_id",
                    local_time_column(GroupJoinWay, "published_at"), "joins"]  # fmt: skip
    list_filter = ["channel", "scene", "corp"]
    search_fields = ["name", "state", "config_id"]
    list_select_related = ["channel", "corp"]
    autocomplete_fields = ["channel"]
    readonly_fields = ["config_id", "qr_code", "state", "published_at", "created_at"]
    actions = ["publish"]

    @admin.display(description=_("joins"))
    def joins(self, obj: GroupJoinWay) -> int:
        return obj.joins.count()

    @admin.action(permissions=["change"], description=_("Publish to WeCom"))
    def publish(self, request: HttpRequest, queryset: QuerySet[GroupJoinWay]) -> None:
        for join_way in queryset.select_related("corp"):
            try:
                group_join_way_publish(join_way=join_way)
            except PublishError as exc:
                self.message_user(request, f"{join_way}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("%(code)s published.") % {"code": join_way})


@admin.register(GroupMemberJoin)
class GroupMemberJoinAdmin(CorpScopedAdmin):
    personal_fields = ("external_contact",)
    list_display = [local_time_column(GroupMemberJoin, "joined_at"), "chat_id", "member_id",
                    "external_contact", "join_way",
                    "channel", "join_scene", "state_kind"]  # fmt: skip
    list_filter = ["state_kind", "join_scene", "channel", "corp"]
    search_fields = ["chat_id", "member_id", "state"]
    list_select_related = ["external_contact", "join_way", "channel"]
    date_hierarchy = "joined_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
