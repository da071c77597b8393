from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _


class WecomConfig(AppConfig):
    name = "scrm.wecom"
    label = "wecom"
    verbose_name = _("WeCom gateway")

    def ready(self) -> None:
        checks.register(secrets_key_check)
        from django.db.models.signals import post_delete, post_save

        from scrm.days import corp_zones_changed
        from scrm.wecom.models import Corp
        from scrm.wecom.services import corp_changed

        def clear(sender: type, instance: Corp, **kwargs: object) -> None:
            corp_changed()  # callback credentials, in every process
            corp_zones_changed()  # the time zones of the corps (scrm.days)

        # weak=False: a local function held only weakly dies with this frame (then no save
        # would reach the caches, depending on when the garbage collector runs).
        post_save.connect(clear, sender=Corp, weak=False, dispatch_uid="wecom-corp-cache")
        post_delete.connect(clear, sender=Corp, weak=False,
                            dispatch_uid="wecom-corp-cache-delete")  # fmt: skip


def secrets_key_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Say so when corp secrets are encrypted with a key derived from SECRET_KEY."""
    from scrm.wecom.vault import uses_derived_key, weak_keys

    weak = ", ".join(map(str, weak_keys()))
    if weak:
        return [
            checks.Error(
                f"SECRETS_KEY entry {weak} is too weak to encrypt corp secrets with.",
                hint="Use Fernet keys (see .env.example) or random strings of 32+ characters.",
                id="wecom.E001",
            )
        ]
    if not uses_derived_key():
        return []
    return [
        checks.Warning(
            "SECRETS_KEY is not set: corp secrets are encrypted with a key derived from "
            "SECRET_KEY.",
            hint="Set SECRETS_KEY to a Fernet key (see .env.example); then run "
            "`manage.py rotate_secrets` to re-encrypt the stored secrets with it.",
            id="wecom.W001",
        )
    ]
