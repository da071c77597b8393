import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from scrm.wecom.models import Corp
from scrm.wecom.sandbox.models import SandboxCorp
from scrm.wecom.sandbox.simulate import (
    SimulationReport,
    callback_url_for,
    sandbox_corp_setup,
    simulate_adds,
    simulate_scans,
)
from scrm.wecom.services import corp_create

HELP = "The sandbox (a fake WeCom): set up a corp, or simulate customers adding staff."
SIMULATE_HELP = """\
Customers add staff members in the sandbox, and each add reaches the app as WeCom's encrypted
callback over HTTP, exactly as WeCom would send it.

Where to: --url, or else the address the running demo (`make run`) saved for its corp, or else
http://127.0.0.1:8000. The command says which URL it used, and fails (exit status 1) when the
app could not be reached or nothing was delivered.

Through a live code (--code SLUG): each simulated visitor opens the code's link /l/SLUG/, reads
the QR code the page shows (a landing code: the member the app assigned; a native code: its
one QR), and adds that member; the add's callback carries the code's state, so the customer is
attributed to the code and its channel. Without --code, customers add a random member directly
(add_way: scan, search, card...), with a state from --state if given: a state is the string the
app put into a contact way (see a live code's page in the admin); a made-up one attributes to
nothing (the customer arrives without a channel).

examples (beside the demo's `make run`, from the project's directory):
  make manage ARGS="wecom_sandbox simulate --code xhs-618 --adds 20"
  make manage ARGS="wecom_sandbox simulate --adds 200 --rate 20 --duplicates 0.1 --shuffle"
  make manage ARGS="wecom_sandbox simulate --code xhs-618 --scans 50 --no-add 0.3 \\
      --url http://127.0.0.1:9000"
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description's examples as written, every option with its default (an option
    without one says in its help what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        return super().create_parser(prog_name, subcommand, formatter_class=_Formatter, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        setup = sub.add_parser(
            "setup",
            help="create a sandbox corp and register it in the app",
            formatter_class=_Formatter,
            description="Create a sandbox corp with members and register it in the app.\n\n"
            'example:\n  make manage ARGS="wecom_sandbox setup --corp wwsandbox0001"',
        )
        setup.add_argument("--corp", required=True, help="corp ID (e.g. wwsandbox0001)")
        setup.add_argument("--name", default="沙箱示例企业", help="the corp's name")
        setup.add_argument("--members", type=int, default=5, help="staff members to create")
        sim = sub.add_parser(
            "simulate",
            help="send encrypted add callbacks to the app",
            formatter_class=_Formatter,
            description=SIMULATE_HELP,
        )
        sim.add_argument(
            "--corp", default=None,
            help="sandbox corp ID (default: the only one, the demo's after make run)",
        )  # fmt: skip
        sim.add_argument(
            "--adds",
            type=int,
            default=0,
            help="customers who add a member (with --code: visitors, if no --scans)",
        )
        sim.add_argument(
            "--code",
            default=None,
            metavar="SLUG",
            help="live code slug: visitors scan /l/SLUG/ and add whom it shows",
        )
        sim.add_argument(
            "--scans",
            type=int,
            default=None,
            help="with --code: visitors (default: as many as --adds)",
        )
        sim.add_argument(
            "--no-add",
            type=float,
            default=0.0,
            help="with --code: the share of visitors who leave without adding",
        )
        sim.add_argument(
            "--rate", type=float, default=0.0, help="deliveries per second (0: as fast as possible)"
        )
        sim.add_argument(
            "--duplicates",
            type=float,
            default=0.0,
            help="chance an event is delivered again, as WeCom's retries do",
        )
        sim.add_argument("--shuffle", action="store_true", help="deliver in random order")
        sim.add_argument(
            "--drop",
            type=float,
            default=0.0,
            help="chance an add's callback is lost (for calibration to find)",
        )
        sim.add_argument(
            "--url",
            default=None,
            help="the app's base URL or its callback URL "
            "(default: the demo's saved address, else http://127.0.0.1:8000)",
        )
        sim.add_argument(
            "--state",
            action="append",
            default=None,
            help="without --code: a contact way state, repeatable (default: none)",
        )
        sim.add_argument(
            "--seed",
            type=int,
            default=None,
            help="random seed, for a replay (default: a new one each time)",
        )

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

    def _sandbox_corp(self, corp_id: str | None) -> SandboxCorp:
        try:
            return self._sandbox_corp_find(corp_id)
        except DatabaseError as exc:  # a fresh checkout: no tables yet
            raise CommandError(
                f"The database is not set up ({exc}): run `make run` first (it migrates and "
                "creates the demo's sandbox corp)."
            ) from exc

    def _sandbox_corp_find(self, corp_id: str | None) -> SandboxCorp:
        if corp_id:
            corp = SandboxCorp.objects.filter(corp_id=corp_id).first()
            if corp is None:
                raise CommandError(
                    f"No sandbox corp {corp_id}: run `make run` (the demo's corp) or "
                    f"`wecom_sandbox setup --corp {corp_id}`."
                )
            return corp
        corps = list(SandboxCorp.objects.order_by("pk")[:10])
        if len(corps) == 1:
            return corps[0]
        if not corps:
            raise CommandError("No sandbox corp yet: run `make run` (the demo creates one) or "
                               "`wecom_sandbox setup --corp CORP_ID`.")  # fmt: skip
        raise CommandError(
            "Several sandbox corps: choose one with --corp ("
            + ", ".join(corp.corp_id for corp in corps)
            + ")."
        )

    def _simulate(self, options: dict) -> None:
        corp = self._sandbox_corp(options["corp"])
        if options["adds"] < 0 or not 0 <= options["duplicates"] < 1:
            raise CommandError("--adds must be >= 0 and --duplicates in [0, 1).")
        if not 0 <= options["drop"] <= 1:
            raise CommandError("--drop must be in [0, 1].")
        self.stdout.write(f"Delivering to {callback_url_for(corp, options['url'])}")

        def progress(done: int, total: int) -> None:
            if sys.stdout.isatty() or done == total:
                self.stdout.write(f"\r{done}/{total} deliveries", ending="")
                self.stdout.flush()

        if options["code"]:
            scans = options["scans"] if options["scans"] is not None else options["adds"]
            if scans < 0 or not 0 <= options["no_add"] <= 1:
                raise CommandError("--scans must be >= 0 and --no-add in [0, 1].")
            report = simulate_scans(
                corp_id=corp.corp_id, slug=options["code"], scans=scans,
                no_add=options["no_add"], rate=options["rate"], url=options["url"],
                seed=options["seed"], progress=progress, drop=options["drop"],
            )  # fmt: skip
            self.stdout.write("")
            unreachable = (
                f"{report.unreachable} found no page (no answer from the app); "
                if report.unreachable
                else ""
            )
            self.stdout.write(
                f"{unreachable}{report.scans} scans, {report.scans_without_add} left without "
                f"adding, {report.scans_without_code} showed no code; {len(report.customers)} "
                f"customers added ({report.dropped} callbacks dropped), {report.answered_200} "
                f"callbacks answered 200, {report.failed} failed."
            )
            self._verdict(report, requested=scans, slug=options["code"])
            return
        try:
            report = simulate_adds(
                corp_id=corp.corp_id,
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
        self._verdict(report, requested=options["adds"])

    def _verdict(self, report: SimulationReport, *, requested: int, slug: str = "") -> None:
        """Exit non-zero, saying why, when the app was not there or nothing got through."""
        base = report.target.split("/wecom/callback/", 1)[0]
        if report.unreachable:
            raise CommandError(
                f"{report.unreachable} requests could not connect to {base}: is the app running "
                f"(`make run`)? Pass its address with --url."
            )
        if slug and report.page_statuses:
            reasons = {404: "no live code with this slug", 410: "paused or not yet published",
                       503: "no staff member available"}  # fmt: skip
            found = ", ".join(
                f"{count} x HTTP {status} ({reasons.get(status, 'unexpected')})"
                for status, count in sorted(report.page_statuses.items())
            )
            message = f"The page {base}/l/{slug}/ answered {found}."
            if not report.customers:
                raise CommandError(message)
            self.stderr.write(message)
        if report.failed:
            raise CommandError(f"{report.failed} deliveries were not answered with HTTP 200.")
        if requested and not (report.deliveries or report.dropped or report.scans_without_add):
            raise CommandError("Nothing was delivered.")
