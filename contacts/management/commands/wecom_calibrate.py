from datetime import date

from django.core.management.base import BaseCommand, CommandError, CommandParser

from contacts.calibration import CalibrationAlreadyRunning, calibrate
from contacts.models import CalibrationRun
from scrm.wecom.client import WeComError
from scrm.wecom.models import Corp

BAR_WIDTH = 30
DEVIATIONS_SHOWN = 20


class Command(BaseCommand):
    help = (
        "Calibrate a corp against WeCom: backfill customers no callback announced and compare "
        "daily new-customer counts per staff member with WeCom's statistics."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--corp", required=True, help="WeCom corp ID (or our database id)")
        parser.add_argument(
            "--since", type=date.fromisoformat, default=None,
            help="compare from this day, YYYY-MM-DD (default: 7 days ago; WeCom keeps 180)",
        )  # fmt: skip
        parser.add_argument("--compare-only", action="store_true", help="do not backfill")

    def handle(self, *args: object, **options: object) -> None:
        corp = self._corp(str(options["corp"]))
        self._percent = -1
        try:
            run = calibrate(
                corp=corp,
                since=options["since"],
                triggered_by="manage.py wecom_calibrate",
                progress=self._progress,
                backfill=not options["compare_only"],
            )
        except CalibrationAlreadyRunning as exc:
            raise CommandError(f"A calibration of {corp.corp_id} is already running.") from exc
        except WeComError as exc:  # transient: the run is stored as failed
            self.stdout.write("")
            raise CommandError(f"Calibration failed: {exc}") from exc
        self.stdout.write("")
        self._summary(run)
        if run.status == CalibrationRun.Status.FAILED:
            raise CommandError(f"Calibration failed: {run.error}")

    @staticmethod
    def _corp(value: str) -> Corp:
        corp = Corp.objects.filter(corp_id=value).first()
        if corp is None and value.isdigit():
            corp = Corp.objects.filter(pk=int(value)).first()
        if corp is None:
            raise CommandError(f"No corp {value}: see `manage.py wecom_corp list`.")
        return corp

    def _progress(self, done: int, total: int) -> None:
        percent = min(100, done * 100 // total) if total else 100
        if percent == self._percent:
            return  # at most about a hundred updates, also when written to a log file
        self._percent = percent
        filled = BAR_WIDTH * percent // 100
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stdout.write(f"\r[{bar}] {percent:3d}% ({done}/{total})", ending="")
        self.stdout.flush()

    def _summary(self, run: CalibrationRun) -> None:
        self.stdout.write(
            f"Calibration #{run.pk} {run.status}: {run.staff_count} staff, "
            f"{run.contacts_seen} relations seen, {run.relations_backfilled} relations and "
            f"{run.first_sources_backfilled} first sources backfilled, "
            f"{run.deviations} staff-days differing from WeCom since {run.since:%Y-%m-%d}."
        )
        rows = run.rows.select_related("staff").order_by("day", "staff__userid")
        for row in rows[:DEVIATIONS_SHOWN]:
            self.stdout.write(
                f"  {row.day:%Y-%m-%d} {row.staff.userid}: ours {row.ours}, WeCom {row.wecom}"
            )
        if run.deviations > DEVIATIONS_SHOWN:
            self.stdout.write(f"  ... and {run.deviations - DEVIATIONS_SHOWN} more (see the admin)")
