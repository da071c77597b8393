from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    # An explicit label, so it never clashes with the Django Channels package.
    label = "channels_app"
    verbose_name = _("Channels and live codes")

    def ready(self) -> None:
        from channels_app.services.compliance import (
            customer_channel_data,
            customer_channel_data_erase,
        )
        from contacts import compliance

        self._version_landing_configs_on_change()
        if customer_channel_data not in compliance.export_providers:
            compliance.export_providers.append(customer_channel_data)
            compliance.erase_providers.append(customer_channel_data_erase)

    def _version_landing_configs_on_change(self) -> None:
        """The landing page's config cache (selectors.landing_config) learns of a change to any
        model it is read from, saved or deleted or linked many-to-many: this process at once,
        every process through the version in the shared cache."""
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from channels_app import models
        from channels_app.selectors import landing_config_changed
        from contacts.models import Staff
        from scrm.wecom.models import Corp

        def changed(sender, instance=None, **_kwargs) -> None:
            if isinstance(instance, models.LiveCode):
                live_code_id = instance.pk
            else:  # a code's member, schedule, store or slot; else every code's
                live_code_id = getattr(instance, "live_code_id", None)
            landing_config_changed(live_code_id=live_code_id)

        senders = [models.LiveCode, models.Channel, models.PoolMember, models.ScheduleRule,
                   models.ScheduleOverride, models.Store, models.LandingSlot,
                   Staff, Corp]  # fmt: skip
        for sender in senders:
            for signal in (post_save, post_delete):
                signal.connect(changed, sender=sender, weak=False,
                               dispatch_uid=f"landing-config-{sender.__name__}")  # fmt: skip
        links = [models.ScheduleRule, models.ScheduleOverride, models.Store]  # .members
        for through in (model.members.through for model in links):
            m2m_changed.connect(changed, sender=through, weak=False,
                                dispatch_uid=f"landing-config-{through.__name__}")  # fmt: skip
