from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scrm.wecom.models import Corp
from scrm.wecom.services import corp_create


class Command(BaseCommand):
    help = "Set up WeCom corps: `add` one, or `list` them (secrets are never shown)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register a corp")
        add.add_argument("--corp-id", required=True)
        add.add_argument("--name", required=True)
        add.add_argument("--secret", required=True, help="the self-built app's secret")
        add.add_argument("--token", required=True, help="callback Token")
        add.add_argument("--aes-key", required=True, help="callback EncodingAESKey (43 chars)")
        add.add_argument("--agent-id", default="")
        add.add_argument("--time-zone", default="Asia/Shanghai")
        sub.add_parser("list", help="list corps")

    def handle(self, *args: object, **options: object) -> None:
        if options["action"] == "list":
            for corp in Corp.objects.order_by("corp_id"):
                active = "active" if corp.is_active else "inactive"
                self.stdout.write(f"{corp.corp_id}\t{corp.name}\t{corp.time_zone}\t{active}")
            return
        try:
            corp = corp_create(
                corp_id=str(options["corp_id"]),
                name=str(options["name"]),
                secret=str(options["secret"]),
                callback_token=str(options["token"]),
                encoding_aes_key=str(options["aes_key"]),
                agent_id=str(options["agent_id"]),
                time_zone=str(options["time_zone"]),
            )
        except ValidationError as exc:
            lines = [f"{field}: {'; '.join(msgs)}" for field, msgs in exc.message_dict.items()]
            raise CommandError("\n".join(lines)) from exc
        self.stdout.write(self.style.SUCCESS(f"Added corp {corp.corp_id} ({corp.name})."))
        self.stdout.write(f"Callback URL path: /wecom/callback/{corp.corp_id}/")
