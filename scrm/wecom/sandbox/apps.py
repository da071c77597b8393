from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SandboxConfig(AppConfig):
    name = "scrm.wecom.sandbox"
    label = "wecom_sandbox"
    verbose_name = _("WeCom sandbox")
