import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scrm.wecom.models import Corp
from scrm.wecom.sandbox.models import SandboxCorp
from scrm.wecom.sandbox.simulate import sandbox_corp_setup, simulate_adds, simulate_scans
from scrm.wecom.services import corp_create


class Command(BaseCommand):
    help = "The sandbox (a fake WeCom): set up a corp, or simulate customers adding staff."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        setup = sub.add_parser("setup", help="create a sandbox corp and register it in the app")
        setup.add_argument("--corp", required=True, help="corp ID")
        setup.add_argument("--name", default="沙箱示例企业")
        setup.add_argument("--members", type=int, default=5)
        sim = sub.add_parser("simulate", help="send encrypted add callbacks to the app")
        sim.add_argument("--corp", required=True)
        sim.add_argument("--adds", type=int, default=0, help="customers adding staff directly")
        sim.add_argument("--code", default=None, help="landing code slug: scan /l/SLUG/ first")
        sim.add_argument("--scans", type=int, default=None, help="with --code (default --adds)")
        sim.add_argument("--no-add", type=float, default=0.0, help="with --code: scan, no add")
        sim.add_argument("--rate", type=float, default=0.0, help="deliveries per second (0: max)")
        sim.add_argument("--duplicates", type=float, default=0.0, help="chance of re-delivery")
        sim.add_argument("--shuffle", action="store_true", help="deliver in random order")
        sim.add_argument("--drop", type=float, default=0.0, help="chance a callback is lost")
        sim.add_argument("--url", default=None, help="callback URL or the app's base URL")
        sim.add_argument("--state", action="append", default=None, help="State values to use")
        sim.add_argument("--seed", type=int, default=None)

    def handle(self, *args: object, **options: object) -> None:
        if options["action"] == "setup":
            self._setup(options)
        else:
            self._simulate(options)

    def _setup(self, options: dict) -> None:
        corp = sandbox_corp_setup(
            corp_id=options["corp"], name=options["name"], members=options["members"]
        )
        if not Corp.objects.filter(corp_id=corp.corp_id).exists():
            corp_create(
                corp_id=corp.corp_id,
                name=corp.name,
                secret=corp.secret,
                callback_token=corp.callback_token,
                encoding_aes_key=corp.encoding_aes_key,
            )
        self.stdout.write(self.style.SUCCESS(f"Sandbox corp {corp.corp_id} is ready."))

    def _simulate(self, options: dict) -> None:
        if not SandboxCorp.objects.filter(corp_id=options["corp"]).exists():
            raise CommandError(f"No sandbox corp {options['corp']}: run `wecom_sandbox setup`.")
        if options["adds"] < 0 or not 0 <= options["duplicates"] < 1:
            raise CommandError("--adds must be >= 0 and --duplicates in [0, 1).")
        if not 0 <= options["drop"] <= 1:
            raise CommandError("--drop must be in [0, 1].")

        def progress(done: int, total: int) -> None:
            if sys.stdout.isatty() or done == total:
                self.stdout.write(f"\r{done}/{total} deliveries", ending="")
                self.stdout.flush()

        if options["code"]:
            scans = options["scans"] if options["scans"] is not None else options["adds"]
            if scans < 0 or not 0 <= options["no_add"] <= 1:
                raise CommandError("--scans must be >= 0 and --no-add in [0, 1].")
            report = simulate_scans(
                corp_id=options["corp"], slug=options["code"], scans=scans,
                no_add=options["no_add"], rate=options["rate"], url=options["url"],
                seed=options["seed"], progress=progress,
            )  # fmt: skip
            self.stdout.write("")
            self.stdout.write(
                f"{report.scans} scans, {report.scans_without_add} left without adding, "
                f"{report.scans_without_code} showed no code; {len(report.customers)} customers "
                f"added, {report.answered_200} callbacks answered 200, {report.failed} failed."
            )
            if report.failed:
                raise CommandError(f"{report.failed} deliveries were not answered with HTTP 200.")
            return
        try:
            report = simulate_adds(
                corp_id=options["corp"],
                adds=options["adds"],
                rate=options["rate"],
                duplicates=options["duplicates"],
                shuffle=options["shuffle"],
                url=options["url"],
                states=options["state"],
                seed=options["seed"],
                progress=progress,
                drop=options["drop"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("")
        self.stdout.write(
            f"{len(report.customers)} customers added ({report.dropped} callbacks dropped), "
            f"{report.deliveries} deliveries, "
            f"{report.answered_200} answered 200, {report.failed} failed."
        )
        if report.failed:
            raise CommandError(f"{report.failed} deliveries were not answered with HTTP 200.")
