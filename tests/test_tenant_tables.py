"""Every tenant table carries its corp, and every uniqueness holds per corp (or is global by
design, said in the model): the schema stays ready to be distributed by corp (README, "Scale
beyond one machine"). A new model without corp, or a unique column that ignores it, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.apps import apps
from django.db import models

from scrm.wecom.models import Corp

OUR_APPS = ("wecom", "contacts", "channels_app", "analytics")
# The tenant itself (distributed by its own id on Citus).
TENANT_ROOT = {"wecom.Corp"}
# Django's own link tables of many-to-many fields: the members of a shift, special date or
# store. Small configuration, so on Citus they are reference tables (replicated), as the README
# plan says; a link table of anything that grows with customers must be a model with corp.
REFERENCE_LINK_TABLES = {
    "channels_app.ScheduleRule_members",
    "channels_app.ScheduleOverride_members",
    "channels_app.Store_members",
}


def _models() -> list[type[models.Model]]:
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in OUR_APPS and model._meta.label not in TENANT_ROOT
    ]


def _ids(model: type[models.Model]) -> str:
    return model._meta.label


@pytest.mark.parametrize("model", _models(), ids=_ids)
def test_every_tenant_table_carries_its_corp(model):
    if model._meta.auto_created:
        assert model._meta.label in REFERENCE_LINK_TABLES, (
            f"{model._meta.label}: a many-to-many link table without corp; give it a through "
            "model with corp, or list it as a reference table (small configuration)"
        )
        return
    corp = next((f for f in model._meta.fields if f.name == "corp"), None)
    assert corp is not None, f"{model._meta.label} has no corp"
    assert isinstance(corp, models.ForeignKey)
    assert corp.related_model is Corp


@pytest.mark.parametrize("model", _models(), ids=_ids)
def test_every_uniqueness_holds_per_corp_or_is_global_by_design(model):
    global_by_design = getattr(model, "tenant_global_unique", {})
    for field in model._meta.fields:
        # A one-to-one corp (one row per corp: settings) is per corp by definition.
        if field.unique and not field.primary_key and field.name != "corp":
            assert field.name in global_by_design, (
                f"{model._meta.label}.{field.name} is unique across corps: make it unique per "
                "corp, or say in tenant_global_unique why it is global by design"
            )
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.UniqueConstraint):
            assert "corp" in constraint.fields, (
                f"{model._meta.label}.{constraint.name} ignores the corp"
            )
    for fields in model._meta.unique_together:
        assert "corp" in fields or model._meta.auto_created, (
            f"{model._meta.label} unique_together {fields} ignores the corp"
        )


def test_the_global_values_by_design_are_the_ones_the_readme_names():
    declared = {
        f"{model._meta.label}.{name}"
        for model in _models()
        for name in getattr(model, "tenant_global_unique", {})
    }
    assert declared == {"channels_app.LiveCode.slug", "contacts.FirstSource.external_contact"}


def test_rows_of_a_live_code_take_its_corp(corp):
    from channels_app.models import Channel, LiveCode, PoolMember, ScheduleRule, Store
    from contacts.services import staff_get_or_create

    channel = Channel.objects.create(corp=corp, name="门店", code="store")
    code = LiveCode.objects.create(corp=corp, channel=channel, name="门店码", slug="store")
    member = PoolMember.objects.create(
        live_code=code, staff=staff_get_or_create(corp=corp, userid="staff01")
    )
    rule = ScheduleRule.objects.create(live_code=code, start_time="09:00", end_time="18:00")
    store = Store.objects.create(live_code=code, code="nj01", name="南京一店")
    assert {member.corp_id, rule.corp_id, store.corp_id} == {corp.pk}


def _citus_plan() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    return readme.split("## Scale beyond one machine", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("model", _models(), ids=_ids)
def test_the_readmes_citus_plan_places_every_tenant_table(model):
    plan = _citus_plan()
    name = model._meta.model_name
    if model._meta.auto_created:  # Store_members is named `store_members`
        name = model._meta.db_table.split("_", 2)[-1]
    assert f"`{name}`" in plan, (
        f"{model._meta.label}: say in the README's Citus table how it is distributed"
    )
