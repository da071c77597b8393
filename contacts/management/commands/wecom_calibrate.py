from datetime import date

from django.core.management.base import BaseCommand, CommandError, CommandParser

from contacts.calibration import CalibrationAlreadyRunning, calibrate
from contacts.models import CalibrationRun
from scrm.command_line import ProgressBar, corp_from_argument
from scrm.wecom.client import WeComError

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
        corp = corp_from_argument(str(options["corp"]))
        try:
            run = calibrate(
                corp=corp,
                since=options["since"],
                triggered_by="manage.py wecom_calibrate",
                progress=ProgressBar(self.stdout),
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
