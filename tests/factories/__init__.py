"""factory_boy factories, one per model; traits via `class Params`."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from contacts.models import ExternalContact, FirstSource, FollowRelation, Staff
from scrm.wecom.models import Corp


class CorpFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Corp
        django_get_or_create = ("corp_id",)

    corp_id = factory.Sequence(lambda n: f"wwfactory{n:08d}")
    name = factory.Sequence(lambda n: f"企业{n}")
    secret = factory.Faker("pystr", min_chars=32, max_chars=32)
    callback_token = factory.Faker("pystr", min_chars=16, max_chars=16)
    encoding_aes_key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"


class StaffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Staff

    corp = factory.SubFactory(CorpFactory)
    userid = factory.Sequence(lambda n: f"staff{n:03d}")
    name = factory.Faker("name", locale="zh_CN")

    class Params:
        left = factory.Trait(status=Staff.Status.LEFT, left_at=factory.LazyFunction(timezone.now))


class ExternalContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExternalContact

    corp = factory.SubFactory(CorpFactory)
    external_userid = factory.Sequence(lambda n: f"wmfactory{n:020d}")
    name = factory.Faker("name", locale="zh_CN")
    type = ExternalContact.Type.WECHAT
    details_fetched_at = factory.LazyFunction(timezone.now)


def _add_through_the_pipeline(
    *, contact: ExternalContact, staff: Staff, added_at: dt.datetime, state: str, add_way: int
) -> FollowRelation:
    """Relations and first sources are projections of the relation history: a factory makes
    them the way production does, through the one add step."""
    from scrm.pipeline import add_record

    return add_record(
        corp=contact.corp,
        userid=staff.userid,
        external_userid=contact.external_userid,
        state=state,
        added_at=added_at,
        add_way=add_way,
    ).relation


class FollowRelationFactory(factory.django.DjangoModelFactory):
    """A relation made by an add (and a deletion with the trait), through the add step; other
    fields given (remark, description) are set on it afterwards."""

    class Meta:
        model = FollowRelation

    external_contact = factory.SubFactory(ExternalContactFactory)
    corp = factory.SelfAttribute("external_contact.corp")
    staff = factory.SubFactory(StaffFactory, corp=factory.SelfAttribute("..corp"))
    created_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    add_way = 1
    state = "pyq_0012"

    class Params:
        deleted_by_customer = factory.Trait(
            status=FollowRelation.Status.DELETED_BY_CUSTOMER,
            deleted_at=factory.LazyFunction(timezone.now),
        )

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> FollowRelation:
        from contacts.models import RelationEvent
        from contacts.services import relation_event_record

        contact, staff = kwargs.pop("external_contact"), kwargs.pop("staff")
        kwargs.pop("corp")
        relation = _add_through_the_pipeline(
            contact=contact, staff=staff, added_at=kwargs.pop("created_at"),
            state=kwargs.pop("state"), add_way=kwargs.pop("add_way"),
        )  # fmt: skip
        status, deleted_at = kwargs.pop("status", None), kwargs.pop("deleted_at", None)
        if status is not None and status != FollowRelation.Status.ACTIVE:
            relation = relation_event_record(
                corp=contact.corp, userid=staff.userid, external_userid=contact.external_userid,
                kind=RelationEvent.Kind(status), occurred_at=deleted_at,
            ).relation  # fmt: skip
        for name, value in kwargs.items():
            setattr(relation, name, value)
        if kwargs:
            relation.save(update_fields=list(kwargs))
        return relation


class FirstSourceFactory(factory.django.DjangoModelFactory):
    """A customer's first source: the projection of its first add, made through the add step
    (with its follow relation and attribution)."""

    class Meta:
        model = FirstSource

    external_contact = factory.SubFactory(ExternalContactFactory)
    corp = factory.SelfAttribute("external_contact.corp")
    staff = factory.SubFactory(StaffFactory, corp=factory.SelfAttribute("..corp"))
    added_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    add_way = 1
    state = "pyq_0012"

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> FirstSource:
        contact = kwargs["external_contact"]
        _add_through_the_pipeline(
            contact=contact, staff=kwargs["staff"], added_at=kwargs["added_at"],
            state=kwargs["state"], add_way=kwargs["add_way"],
        )  # fmt: skip
        return FirstSource.objects.get(external_contact=contact)
