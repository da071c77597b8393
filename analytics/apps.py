from importlib import import_module

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = _("Reports")

    def import_models(self) -> None:
        super().import_models()
        # The export job's model lives beside its service (analytics.export_models), not in
        # analytics.models (the rollups' module); Django registers models as their modules
        # are imported, so it is imported here, in the models phase of app loading.
        import_module(f"{self.name}.export_models")
