from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, viewsets

from contacts.add_ways import add_way_label
from contacts.filters import ExternalContactFilter
from contacts.models import ExternalContact, FirstSource, FollowRelation
from contacts.selectors import external_contact_list
from scrm.api_tenancy import CorpScopedMixin, PersonalFieldsMixin
from scrm.wecom import tenancy


def _first(name: str, field: type[serializers.Field]) -> serializers.Field:
    """The customer's `first_<name>` annotation (None on a customer read without it)."""
    return field(source=f"external_contact.first_{name}", read_only=True, allow_null=True)


class FirstSourceSerializer(serializers.ModelSerializer):
    staff = serializers.CharField(source="staff.userid")
    add_way_label = serializers.SerializerMethodField()
    # The first add's live code and channel, annotated by external_contact_list (joined in
    # the list's one query); null when the add was not through one of our codes.
    live_code_id = _first("live_code_id", serializers.IntegerField)
    live_code_name = _first("live_code_name", serializers.CharField)
    live_code_slug = _first("live_code_slug", serializers.CharField)
    channel_id = _first("channel_id", serializers.IntegerField)
    channel_name = _first("channel_name", serializers.CharField)
    channel_code = _first("channel_code", serializers.CharField)

    class Meta:
        model = FirstSource
        fields = [
            "add_way",
            "add_way_label",
            "state",
            "staff",
            "added_at",
            "live_code_id",
            "live_code_name",
            "live_code_slug",
            "channel_id",
            "channel_name",
            "channel_code",
            "backfilled",
        ]

    def get_add_way_label(self, obj: FirstSource) -> str:
        return add_way_label(obj.add_way)


class FollowRelationSerializer(serializers.ModelSerializer):
    staff = serializers.CharField(source="staff.userid")
    staff_name = serializers.CharField(source="staff.name")
    add_way_label = serializers.SerializerMethodField()

    class Meta:
        model = FollowRelation
        fields = [
            "staff",
            "staff_name",
            "created_at",
            "add_way",
            "add_way_label",
            "state",
            "oper_userid",
            "remark",
            "description",
            "status",
            "status_changed_at",
            "deleted_at",
            "transfer_fail_reason",
            "backfilled",
        ]

    def get_add_way_label(self, obj: FollowRelation) -> str:
        return add_way_label(obj.add_way)


# What a manager (read-only) does not see: see ManagerExternalContactSerializer.
PERSONAL_FIELDS = ("unionid", "avatar", "gender", "corp_name")
RELATION_PERSONAL_FIELDS = ("oper_userid", "remark", "description")


class ExternalContactSerializer(PersonalFieldsMixin, serializers.ModelSerializer):
    corp = serializers.CharField(source="corp.corp_id")
    first_source = serializers.SerializerMethodField()
    relations = FollowRelationSerializer(source="follow_relations", many=True)

    class Meta:
        model = ExternalContact
        fields = [
            "id",
            "corp",
            "external_userid",
            "name",
            "type",
            "gender",
            "unionid",
            "avatar",
            "corp_name",
            "created_at",
            "details_fetched_at",
            "first_source",
            "relations",
        ]

    # A user who works with customers in one corp and only reads another (a manager there)
    # gets that corp's customers without personal fields, as a manager would.
    personal_fields = PERSONAL_FIELDS

    def to_representation(self, instance: ExternalContact) -> dict:
        data = super().to_representation(instance)
        if self.hides_personal_data(instance):
            for relation in data.get("relations") or []:
                for name in RELATION_PERSONAL_FIELDS:
                    relation.pop(name, None)
        return data

    @extend_schema_field(FirstSourceSerializer(allow_null=True))
    def get_first_source(self, obj: ExternalContact) -> dict | None:
        try:
            return FirstSourceSerializer(obj.first_source).data
        except FirstSource.DoesNotExist:
            return None


class ManagerFollowRelationSerializer(FollowRelationSerializer):
    class Meta(FollowRelationSerializer.Meta):
        fields = [
            name
            for name in FollowRelationSerializer.Meta.fields
            if name not in RELATION_PERSONAL_FIELDS
        ]


class ManagerExternalContactSerializer(ExternalContactSerializer):
    """A customer as a read-only manager sees them: what reports need (who, since when, from
    which channel, code and staff, still followed or not), without personal fields: the unionid
    (one person across every app of the WeChat platform), avatar, gender, company, and, on the
    follow relations, the staff's remark and description (free text that often holds a phone
    number or an address) and oper_userid (who shared the card: another customer's id)."""

    relations = ManagerFollowRelationSerializer(source="follow_relations", many=True)

    class Meta(ExternalContactSerializer.Meta):
        fields = [
            name for name in ExternalContactSerializer.Meta.fields if name not in PERSONAL_FIELDS
        ]


class ExternalContactViewSet(CorpScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Customers with their first source (its live code and channel by id, name, slug and
    code) and follow relations. Read-only. ?first_channel= and ?first_live_code= take an id,
    ?first_channel_code= a channel's code and ?first_live_code_slug= a code's slug: the
    customers whose first add came through them. ?added_from= and ?added_to= are local days
    of the corp (?corp=), else of each customer's own corp. An unknown parameter is a 400
    listing the valid ones. A user who is only a manager (read-only) in every corp of theirs
    gets the customers without personal fields (ManagerExternalContactSerializer)."""

    serializer_class = ExternalContactSerializer
    filterset_class = ExternalContactFilter

    def get_queryset(self):
        # The filter backend applies ExternalContactFilter to the selector's queryset.
        return external_contact_list()

    def get_serializer_class(self) -> type[ExternalContactSerializer]:
        # Personal fields for those who may work with customers (admin, operator) somewhere.
        if tenancy.may_anywhere(self.request.user, tenancy.WRITE):
            return ExternalContactSerializer
        return ManagerExternalContactSerializer
