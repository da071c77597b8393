from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WecomConfig(AppConfig):
    name = "scrm.wecom"
    label = "wecom"
    verbose_name = _("WeCom gateway")

    def ready(self) -> None:
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
