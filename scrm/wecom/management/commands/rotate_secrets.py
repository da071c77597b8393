from django.core.management.base import BaseCommand

from scrm.wecom.services import corp_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every corp's secrets with the first key of SECRETS_KEY. To rotate: put the "
        "new key first in SECRETS_KEY (keep the old one after it), run this, then drop the old."
    )

    def handle(self, *args: object, **options: object) -> None:
        count = corp_secrets_rotate()
        self.stdout.write(f"Re-encrypted the secrets of {count} corps with the first key.")
