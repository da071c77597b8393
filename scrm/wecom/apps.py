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
        from scrm.wecom.services import corp_cache_clear

        def clear(sender: type, instance: Corp, **kwargs: object) -> None:
            corp_cache_clear(instance.corp_id)
            corp_zones_changed()  # the time zones of the corps (scrm.days)

        post_save.connect(clear, sender=Corp, dispatch_uid="wecom-corp-cache")
        post_delete.connect(clear, sender=Corp, dispatch_uid="wecom-corp-cache-delete")
