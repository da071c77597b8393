from datetime import date

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from analytics.refresh import NIGHTLY_DAYS, rollups_rebuild_recent
from scrm import days
from scrm.command_line import ProgressBar, corp_from_argument


class Command(BaseCommand):
    help = (
        "Rebuild a corp's report rollups from the facts, day by day up to today (idempotent: "
        "each day is recomputed and replaced)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--corp", required=True, help="WeCom corp ID (or our database id)")
        parser.add_argument(
            "--since", type=date.fromisoformat, default=None,
            help=f"first local day to rebuild, YYYY-MM-DD (default: the last {NIGHTLY_DAYS} days)",
        )  # fmt: skip

    def handle(self, *args: object, **options: object) -> None:
        corp = corp_from_argument(str(options["corp"]))
        since = options["since"]
        if since is not None and since > days.today(corp):
            raise CommandError(f"--since {since} is after the corp's today.")
        started = timezone.now()
        progress = ProgressBar(self.stdout, unit="days")
        rebuilt = rollups_rebuild_recent(corp=corp, since=since, progress=progress)
        seconds = (timezone.now() - started).total_seconds()
        self.stdout.write("")
        self.stdout.write(f"{rebuilt} days of {corp.corp_id} rebuilt in {seconds:.1f} s.")
