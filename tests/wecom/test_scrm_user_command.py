"""manage.py scrm_user: console users and their roles per corp."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from scrm.wecom import tenancy
from scrm.wecom.models import CorpMembership
from scrm.wecom.sandbox.simulate import random_aes_key
from scrm.wecom.services import corp_create

pytestmark = pytest.mark.django_db

PASSWORD = "Tz8-kangaroo-lamp"


@pytest.fixture
def corps():
    return [
        corp_create(
            corp_id=corp_id,
            name=corp_id,
            secret="s" * 32,
            callback_token="t" * 16,
            encoding_aes_key=random_aes_key(),
        )
        for corp_id in ("wwcorpa", "wwcorpb")
    ]


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("scrm_user", *args, stdout=out)
    return out.getvalue()


def _roles(username: str) -> dict[str, str]:
    return dict(
        CorpMembership.objects.filter(user__username=username).values_list("corp__corp_id", "role")
    )


def test_add_creates_a_staff_user_with_a_role_in_each_corp(corps):
    _run("add", "li.lei", "--password", PASSWORD, "--role", "operator",
         "--corp", "wwcorpa", "--corp", "wwcorpb")  # fmt: skip
    user = get_user_model().objects.get(username="li.lei")
    assert user.is_staff
    assert not user.is_superuser
    assert user.check_password(PASSWORD)
    assert _roles("li.lei") == {"wwcorpa": "operator", "wwcorpb": "operator"}
    assert tenancy.corp_ids_for_user(user, tenancy.WRITE) == {c.pk for c in corps}


def test_add_again_changes_the_role_and_keeps_the_password(corps):
    _run("add", "han.mei", "--password", PASSWORD, "--role", "admin", "--corp", "wwcorpa")
    _run("add", "han.mei", "--role", "manager", "--corp", "wwcorpa", "--corp", "wwcorpb")
    assert _roles("han.mei") == {"wwcorpa": "manager", "wwcorpb": "manager"}
    assert get_user_model().objects.get(username="han.mei").check_password(PASSWORD)


def test_an_unknown_corp_is_a_clear_error_and_writes_nothing(corps):
    with pytest.raises(CommandError, match="wwnosuch"):
        _run("add", "x", "--password", PASSWORD, "--role", "admin",
             "--corp", "wwcorpa", "--corp", "wwnosuch")  # fmt: skip
    assert not get_user_model().objects.filter(username="x").exists()
    assert not CorpMembership.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "admin", "--corp", "wwcorpa"], "password"),  # a new user needs one
        (["--password", "123", "--role", "admin", "--corp", "wwcorpa"], "short"),
    ],
)
def test_add_refuses_a_missing_or_weak_password(corps, args, message):
    with pytest.raises(CommandError, match=message):
        _run("add", "weak", *args)
    assert not get_user_model().objects.filter(username="weak").exists()


def test_add_refuses_an_unknown_role(corps):
    with pytest.raises(CommandError, match="role"):
        _run("add", "x", "--password", PASSWORD, "--role", "owner", "--corp", "wwcorpa")


def test_list_shows_users_roles_and_superusers(corps):
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    _run("add", "ops", "--password", PASSWORD, "--role", "operator", "--corp", "wwcorpb")
    lines = _run("list").splitlines()
    assert "ops\t-\twwcorpb:operator" in lines
    assert "root\tsuperuser\t-" in lines
    assert _run("list", "--corp", "wwcorpa").strip() == ""
    with pytest.raises(CommandError, match="wwnosuch"):
        _run("list", "--corp", "wwnosuch")


def test_remove_from_one_corp_then_from_all(corps):
    _run("add", "ops", "--password", PASSWORD, "--role", "operator",
         "--corp", "wwcorpa", "--corp", "wwcorpb")  # fmt: skip
    _run("remove", "ops", "--corp", "wwcorpa")
    assert _roles("ops") == {"wwcorpb": "operator"}
    assert get_user_model().objects.get(username="ops").is_active
    _run("remove", "ops")
    assert _roles("ops") == {}
    assert not get_user_model().objects.get(username="ops").is_active
    # Added again: active, with the new role.
    _run("add", "ops", "--role", "manager", "--corp", "wwcorpa")
    user = get_user_model().objects.get(username="ops")
    assert user.is_active
    assert _roles("ops") == {"wwcorpa": "manager"}


def test_remove_an_unknown_user_or_corp_is_an_error(corps):
    with pytest.raises(CommandError, match="nobody"):
        _run("remove", "nobody")
    _run("add", "ops", "--password", PASSWORD, "--role", "operator", "--corp", "wwcorpa")
    with pytest.raises(CommandError, match="wwnosuch"):
        _run("remove", "ops", "--corp", "wwnosuch")
    assert _roles("ops") == {"wwcorpa": "operator"}
