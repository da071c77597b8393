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

        if customer_channel_data not in compliance.export_providers:
            compliance.export_providers.append(customer_channel_data)
            compliance.erase_providers.append(customer_channel_data_erase)
