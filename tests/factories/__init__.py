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


class FollowRelationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FollowRelation

    external_contact = factory.SubFactory(ExternalContactFactory)
    corp = factory.SelfAttribute("external_contact.corp")
    staff = factory.SubFactory(StaffFactory, corp=factory.SelfAttribute("..corp"))
    created_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    status_changed_at = factory.SelfAttribute("created_at")
    add_way = 1
    state = "pyq_0012"

    class Params:
        deleted_by_customer = factory.Trait(
            status=FollowRelation.Status.DELETED_BY_CUSTOMER,
            deleted_at=factory.LazyFunction(timezone.now),
        )


class FirstSourceFactory(factory.django.DjangoModelFactory):
    """A customer's first source together with the follow relation it came from."""

    class Meta:
        model = FirstSource
        skip_postgeneration_save = True

    external_contact = factory.SubFactory(ExternalContactFactory)
    corp = factory.SelfAttribute("external_contact.corp")
    staff = factory.SubFactory(StaffFactory, corp=factory.SelfAttribute("..corp"))
    added_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    add_way = 1
    state = "pyq_0012"
    relation = factory.RelatedFactory(
        FollowRelationFactory,
        factory_related_name=None,
        external_contact=factory.SelfAttribute("..external_contact"),
        staff=factory.SelfAttribute("..staff"),
        created_at=factory.SelfAttribute("..added_at"),
        add_way=factory.SelfAttribute("..add_way"),
        state=factory.SelfAttribute("..state"),
    )
