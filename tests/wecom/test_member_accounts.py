"""A corp's admin manages its people, not only their roles: creates its members' accounts and
sets the passwords of the accounts in its care (members of its corps only). Never another
corp's account, a superuser's or its own through these pages; operators and managers not at
all."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from scrm.wecom.memberships import accounts_in_care_of
from scrm.wecom.models import CorpMembership, Role
from tests.factories import CorpFactory

pytestmark = pytest.mark.django_db

NEW = reverse("admin:wecom_corpmembership_account_add")
STRONG = "a-long-passphrase-2026"


def _user(name: str, *memberships, superuser: bool = False):
    users = get_user_model().objects
    make = users.create_superuser if superuser else users.create_user
    user = make(username=name, password="old-passphrase-1", is_staff=True)
    for corp, role in memberships:
        CorpMembership.objects.create(user=user, corp=corp, role=role)
    return user


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def corps():
    return CorpFactory(name="甲企业"), CorpFactory(name="乙企业")


@pytest.fixture
def admin_a(corps):
    return _user("adm-a", (corps[0], Role.ADMIN))


def _password_url(user, corp) -> str:
    membership = CorpMembership.objects.get(user=user, corp=corp)
    return reverse("admin:wecom_corpmembership_password", args=[membership.pk])


def test_a_corp_admin_creates_a_member_account_in_its_corp(corps, admin_a):
    corp_a, _corp_b = corps
    client = _client(admin_a)
    page = client.get(NEW)
    assert page.status_code == 200
    assert list(page.context["form"].fields["corp"].queryset) == [corp_a]
    response = client.post(NEW, {"username": "li.lei", "password1": STRONG, "password2": STRONG,
                                 "corp": corp_a.pk, "role": Role.MANAGER})  # fmt: skip
    assert response.status_code == 302
    created = get_user_model().objects.get(username="li.lei")
    assert (created.is_staff, created.is_superuser, created.is_active) == (True, False, True)
    assert created.check_password(STRONG)
    assert list(created.corp_memberships.values_list("corp", "role")) == [(corp_a.pk, "manager")]
    assert Client().login(username="li.lei", password=STRONG)
    listing = client.get(reverse("admin:wecom_corpmembership_changelist")).content.decode()
    assert NEW in listing


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"username": "x1", "password1": STRONG, "password2": STRONG + "!"}, "password2"),
        ({"username": "x2", "password1": "123", "password2": "123"}, "password2"),
        ({"username": "bad name!", "password1": STRONG, "password2": STRONG}, "username"),
        ({"username": "TAKEN", "password1": STRONG, "password2": STRONG}, "username"),
        ({"username": "x3", "password1": STRONG, "password2": STRONG, "corp_b": True}, "corp"),
    ],
)
def test_a_bad_account_is_refused_with_its_reason_and_nothing_written(corps, admin_a, data, field):
    corp_a, corp_b = corps
    taken = _user("taken", (corp_b, Role.OPERATOR))  # another corp's member: not taken over
    before = set(get_user_model().objects.values_list("username", "password"))
    corp = corp_b if data.pop("corp_b", False) else corp_a
    response = _client(admin_a).post(NEW, {**data, "corp": corp.pk, "role": Role.ADMIN})
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors[field]
    assert set(get_user_model().objects.values_list("username", "password")) == before
    assert list(taken.corp_memberships.values_list("corp", flat=True)) == [corp_b.pk]


def test_a_corp_admin_sets_the_password_of_accounts_in_its_care_only(corps, admin_a):
    corp_a, corp_b = corps
    own_member = _user("own", (corp_a, Role.OPERATOR))
    shared = _user("shared", (corp_a, Role.OPERATOR), (corp_b, Role.OPERATOR))
    root = _user("root", (corp_a, Role.MANAGER), superuser=True)
    b_member = _user("b-only", (corp_b, Role.MANAGER))
    assert set(accounts_in_care_of(admin_a)) == {own_member}
    client = _client(admin_a)
    data = {"new_password1": STRONG, "new_password2": STRONG}
    assert client.post(_password_url(own_member, corp_a), data).status_code == 302
    own_member.refresh_from_db()
    assert own_member.check_password(STRONG)
    # Shared with a corp it does not administer, a superuser, itself: refused.
    for user in (shared, root, admin_a):
        assert client.post(_password_url(user, corp_a), data).status_code == 403
        user.refresh_from_db()
        assert not user.check_password(STRONG)
    # Another corp's membership: not there at all.
    assert client.post(_password_url(b_member, corp_b), data).status_code == 404
    # A weak password: the validators' reason, nothing changed.
    weak = client.post(_password_url(own_member, corp_a), {"new_password1": "1234",
                                                            "new_password2": "1234"})  # fmt: skip
    assert weak.status_code == 200
    assert weak.context["form"].errors["new_password2"]


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.MANAGER])
def test_operators_and_managers_manage_no_accounts(corps, role):
    corp_a, _corp_b = corps
    member = _user("m", (corp_a, role))
    colleague = _user("colleague", (corp_a, Role.OPERATOR))
    client = _client(member)
    assert client.get(NEW).status_code == 403
    data = {"username": "sneaky", "password1": STRONG, "password2": STRONG, "corp": corp_a.pk,
            "role": Role.ADMIN}  # fmt: skip
    assert client.post(NEW, data).status_code == 403
    assert not get_user_model().objects.filter(username="sneaky").exists()
    response = client.post(_password_url(colleague, corp_a),
                           {"new_password1": STRONG, "new_password2": STRONG})  # fmt: skip
    assert response.status_code in (403, 404)
    colleague.refresh_from_db()
    assert not colleague.check_password(STRONG)
