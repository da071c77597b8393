"""`manage.py scrm_user add|list|remove`: console users and their roles per corp.

scrm_user add USERNAME --password PASSWORD --role admin|operator|manager --corp CORP_ID [...]
scrm_user list [--corp CORP_ID]
scrm_user remove USERNAME [--corp CORP_ID ...]   (without --corp: every corp, deactivated)
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scrm.wecom.memberships import corps_by_corp_id, scrm_user_add, scrm_user_remove
from scrm.wecom.models import Role


def _errors(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "\n".join(f"{field}: {'; '.join(m)}" for field, m in exc.message_dict.items())
    return "\n".join(exc.messages)


class Command(BaseCommand):
    help = (
        "Console users and their role in each corp: `add` (a staff user, never a superuser), "
        "`list`, `remove`. Superusers see every corp without a membership."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a user, or give an existing one a role")
        add.add_argument("username")
        add.add_argument("--password", help="required for a new user")
        add.add_argument("--role", required=True, choices=Role.values)
        add.add_argument("--corp", action="append", required=True, metavar="CORP_ID",
                         help="a WeCom corp ID; repeat for several corps")  # fmt: skip
        listing = sub.add_parser("list", help="list users with their corps and roles")
        listing.add_argument("--corp", metavar="CORP_ID", help="only this corp's members")
        remove = sub.add_parser(
            "remove", help="remove from corps; without --corp from every corp, deactivated"
        )
        remove.add_argument("username")
        remove.add_argument("--corp", action="append", metavar="CORP_ID")

    def handle(self, *args: object, **options: object) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except ValidationError as exc:
            raise CommandError(_errors(exc)) from exc

    def _add(self, options: dict) -> None:
        corps = corps_by_corp_id(corp_ids=options["corp"])
        user, created = scrm_user_add(
            username=options["username"], password=options["password"], role=options["role"],
            corps=corps,
        )  # fmt: skip
        verb = "Added" if created else "Updated"
        names = ", ".join(corp.corp_id for corp in corps)
        self.stdout.write(self.style.SUCCESS(f"{verb} {user.username}: {options['role']} "
                                             f"in {names}."))  # fmt: skip

    def _list(self, options: dict) -> None:
        users = (
            get_user_model().objects.order_by("username").prefetch_related("corp_memberships__corp")
        )
        if options["corp"]:
            corp = corps_by_corp_id(corp_ids=[options["corp"]])[0]
            users = users.filter(corp_memberships__corp=corp)
        else:  # the console's users: staff, or members of a corp
            users = users.filter(is_staff=True) | users.filter(corp_memberships__isnull=False)
        for user in users.distinct():
            roles = " ".join(
                f"{m.corp.corp_id}:{m.role}"
                for m in sorted(user.corp_memberships.all(), key=lambda m: m.corp.corp_id)
            )
            flags = ",".join(
                flag
                for flag, on in (("superuser", user.is_superuser), ("inactive", not user.is_active))
                if on
            )
            self.stdout.write("\t".join([user.username, flags or "-", roles or "-"]))

    def _remove(self, options: dict) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No such user: {options['username']}.")
        corps = corps_by_corp_id(corp_ids=options["corp"]) if options["corp"] else None
        removed = scrm_user_remove(user=user, corps=corps)
        if corps is None:
            self.stdout.write(f"Removed {user.username} from every corp ({removed}); deactivated.")
        else:
            self.stdout.write(f"Removed {user.username} from {removed} of the corps named.")
