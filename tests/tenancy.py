"""Test helpers for tenancy: give a user a role in corps (scrm.wecom.tenancy)."""

from __future__ import annotations

from typing import Any

from scrm.wecom import tenancy
from scrm.wecom.models import Corp, CorpMembership, Role


def member(user: Any, *corps: Corp, role: str = Role.OPERATOR) -> Any:
    """`user` with `role` in each of `corps` (a membership changed if there is one)."""
    for corp in corps:
        CorpMembership.objects.update_or_create(user=user, corp=corp, defaults={"role": role})
    tenancy.forget(user)
    return user
