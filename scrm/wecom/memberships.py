"""Writes of corp memberships: who belongs to which corp with which role (see tenancy.py),
and the accounts a corp's admin creates and answers for.

Used by `manage.py scrm_user` and the admin; each write is one transaction and logged (who,
corp, role), since a membership is a grant of access."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.translation import gettext as _

from scrm.wecom import tenancy
from scrm.wecom.models import Corp, CorpMembership, Role

logger = logging.getLogger("scrm.wecom.memberships")


def corps_by_corp_id(*, corp_ids: Iterable[str]) -> list[Corp]:
    """The corps named by their WeCom corp IDs, in the order given; ValidationError naming
    every unknown one (nothing is looked up twice)."""
    wanted = list(dict.fromkeys(corp_ids))
    found = {corp.corp_id: corp for corp in Corp.objects.filter(corp_id__in=wanted)}
    unknown = [corp_id for corp_id in wanted if corp_id not in found]
    if unknown:
        raise ValidationError(_("Unknown corp: %(ids)s.") % {"ids": ", ".join(unknown)})
    return [found[corp_id] for corp_id in wanted]


@transaction.atomic
def membership_set(*, user: Any, corp: Corp, role: str) -> CorpMembership:
    """Give `user` `role` in `corp` (a new membership, or the role of the existing one)."""
    if role not in Role.values:
        raise ValidationError(_("Unknown role: %(role)s.") % {"role": role})
    membership, created = CorpMembership.objects.get_or_create(
        user=user, corp=corp, defaults={"role": role}
    )
    if not created and membership.role != role:
        old = membership.role
        membership.role = role
        membership.full_clean()
        membership.save(update_fields=["role"])
        logger.info("membership %s@%s: %s -> %s", user, corp.corp_id, old, role)
    elif created:
        logger.info("membership %s@%s: %s", user, corp.corp_id, role)
    tenancy.forget(user)
    return membership


@transaction.atomic
def membership_remove(*, user: Any, corps: Iterable[Corp] | None = None) -> int:
    """Remove `user`'s memberships of `corps` (None: of every corp); returns how many."""
    memberships = CorpMembership.objects.filter(user=user)
    if corps is not None:
        memberships = memberships.filter(corp__in=[corp.pk for corp in corps])
    removed, _by_model = memberships.delete()
    logger.info("memberships of %s removed: %d", user, removed)
    tenancy.forget(user)
    return removed


@transaction.atomic
def scrm_user_add(
    *, username: str, password: str | None, role: str, corps: Iterable[Corp]
) -> tuple[Any, bool]:
    """Create (or update, reactivating) a console user with `role` in each of `corps`: staff
    (so they can sign in to the admin), never made a superuser. A new user needs a password,
    checked by the project's password validators; an existing one keeps theirs unless one is
    given. Returns (user, created)."""
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    created = user is None
    if created:
        if not password:
            raise ValidationError(_("A new user needs a password (--password)."))
        user = User(username=username, is_staff=True, is_superuser=False)
        user.full_clean(exclude=["password"])
    if password:
        validate_password(password, user=user)
        user.set_password(password)
    user.is_staff = True
    user.is_active = True  # added again after a `remove`
    user.save()
    for corp in corps:
        membership_set(user=user, corp=corp, role=role)
    return user, created


@transaction.atomic
def scrm_user_remove(*, user: Any, corps: Iterable[Corp] | None = None) -> int:
    """Remove `user` from `corps`; with None, from every corp, and deactivate the account (not
    deleted: what they did keeps its author). Returns the memberships removed."""
    removed = membership_remove(user=user, corps=corps)
    if corps is None and user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
        logger.info("user %s deactivated", user)
    return removed


def users_manageable_by(user: Any) -> QuerySet:
    """The accounts a corp admin may give a role in their corps: the other members of those
    corps (never a superuser, never themselves). A new account comes from
    member_account_create (or a superuser: User admin, `manage.py scrm_user add`)."""
    corp_ids = tenancy.corp_ids_for_user(user, tenancy.CREDENTIALS) or set()
    return (
        get_user_model()
        .objects.filter(is_active=True, is_superuser=False, corp_memberships__corp__in=corp_ids)
        .exclude(pk=user.pk)
        .distinct()
        .order_by("username")
    )


def accounts_in_care_of(actor: Any) -> QuerySet:
    """The accounts whose password `actor` may set: active, not superusers, not `actor`, and
    members of no corp but those where `actor` is an admin (an account that also belongs to
    another corp is that corp's too: only a superuser answers for it)."""
    corp_ids = tenancy.corp_ids_for_user(actor, tenancy.CREDENTIALS)
    accounts = get_user_model().objects.filter(is_active=True, is_superuser=False)
    if corp_ids is not None:  # a superuser: every such account
        elsewhere = CorpMembership.objects.filter(user=OuterRef("pk")).exclude(corp__in=corp_ids)
        accounts = accounts.filter(corp_memberships__corp__in=corp_ids).exclude(Exists(elsewhere))
    return accounts.exclude(pk=actor.pk).distinct()


@transaction.atomic
def member_account_create(*, actor: Any, username: str, password: str, corp: Corp,
                          role: str) -> Any:  # fmt: skip
    """A new console account with `role` in `corp`, created by one of `corp`'s admins (or a
    superuser). An existing username is refused: it may be another corp's member, whom a corp
    admin cannot take over. PermissionDenied when `actor` is not an admin of `corp`."""
    if not tenancy.may(actor, corp.pk, tenancy.CREDENTIALS):
        raise PermissionDenied
    if get_user_model().objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _("This username is taken; choose another.")})
    user, _created = scrm_user_add(username=username, password=password, role=role,
                                   corps=[corp])  # fmt: skip
    logger.info("account %s created by %s in %s as %s", user, actor, corp.corp_id, role)
    return user


@transaction.atomic
def member_password_set(*, actor: Any, user: Any, password: str) -> None:
    """Set `user`'s password, checked by the password validators; PermissionDenied unless
    `user` is in `actor`'s care (accounts_in_care_of)."""
    if not accounts_in_care_of(actor).filter(pk=user.pk).exists():
        raise PermissionDenied
    validate_password(password, user=user)
    user.set_password(password)
    user.save(update_fields=["password"])
    logger.info("password of %s set by %s", user, actor)
