"""What the project's management commands share: a corp named on the command line, and a
progress bar that also reads well in a log file."""

from __future__ import annotations

from django.core.management.base import CommandError, OutputWrapper

from scrm.wecom.models import Corp

BAR_WIDTH = 30


def corp_from_argument(value: str) -> Corp:
    """The corp by its WeCom corp ID, or by our database id; CommandError when none."""
    corp = Corp.objects.filter(corp_id=value).first()
    if corp is None and value.isdigit():
        corp = Corp.objects.filter(pk=int(value)).first()
    if corp is None:
        raise CommandError(f"No corp {value}: see `manage.py wecom_corp list`.")
    return corp


class ProgressBar:
    """`bar(done, total)` redraws one line: at most about a hundred updates, also when the
    output is a log file."""

    def __init__(self, stdout: OutputWrapper, unit: str = "") -> None:
        self.stdout, self.unit, self.percent = stdout, unit, -1

    def __call__(self, done: int, total: int) -> None:
        percent = min(100, done * 100 // total) if total else 100
        if percent == self.percent:
            return
        self.percent = percent
        filled = BAR_WIDTH * percent // 100
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        unit = f" {self.unit}" if self.unit else ""
        self.stdout.write(f"\r[{bar}] {percent:3d}% ({done}/{total}{unit})", ending="")
        self.stdout.flush()
