import logging
import os
import random
import socket
import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from analytics.refresh import rollups_refresh
from analytics.tasks import quality_scores_compute_task, surge_check_task
from channels_app.models import Channel, LiveCode
from channels_app.services.live_codes import live_code_create
from channels_app.services.publishing import live_code_publish
from contacts.models import ExternalContact, Staff
from contacts.services import staff_get_or_create
from contacts.tasks import staff_reply_times_refresh_task
from scrm.demo_history import demo_history_seed, demo_late_orders_import
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.models import SandboxCorp, SandboxMember
from scrm.wecom.sandbox.simulate import sandbox_corp_setup, simulate_adds, simulate_scans
from scrm.wecom.services import corp_create

DEMO_CORP = "wwdemo5a1b2c3d4e5f"
DEMO_USER = "operator"
DEMO_PASSWORD = "scrm-demo-2026"  # noqa: S105 - a local demo login, printed on purpose
DEMO_WELCOME = "您好 {customer_name}，我是{staff_name}，很高兴为您服务！"
HISTORY_THREAD = "demo-history"
FIRST_BURST = 40  # customers added at the first start
# The late orders (dated weeks back) arrive this long after the history: the reports revise
# those days while the demo runs.
LATE_ORDERS_AFTER = 60.0
# Between the history's transactions, the live callbacks and landing visits take their turn.
HISTORY_PAUSE = 0.1
# (name, code, type, utm_source, [(code name, slug, mode, daily caps per staff)])
DEMO_CHANNELS = [
    ("朋友圈广告 0012", "pyq_0012", Channel.Type.AD, "pyq",
     [("朋友圈 12 月素材 A", "pyq-0012-a", "native", [40, 40, 20])]),
    ("小红书 618 笔记", "xhs_618", Channel.Type.AD, "xhs",
     [("小红书笔记落地页", "xhs-618", "landing", [30, 30, None])]),
    ("抖音信息流 07", "dy_ad_07", Channel.Type.AD, "douyin",
     [("抖音 07 号计划", "dy-ad-07", "native", [50, 50, 50])]),
    ("南京路门店收银台", "store_nj01", Channel.Type.STORE, "store",
     [("收银台立牌", "store-nj01", "native", [None, None])]),
]  # fmt: skip


ROLLUPS_THREAD = "demo-report-rollups"
ROLLUPS_EVERY = 60  # seconds, as the beat's analytics refresh


class Command(BaseCommand):
    help = (
        "Serve the demo: an operator login, a sandbox corp with channels and live codes, and "
        "customers flowing in through real encrypted callbacks (SQLite, Celery eager)."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report_lock = threading.Lock()  # the report work of two threads, one at a time
        self._ranked_hour: datetime | None = None

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument(
            "--initial", type=int, default=None,
            help=f"customers in a burst at start (default: {FIRST_BURST} on the first start, "
            "none once the demo has customers)",
        )  # fmt: skip
        parser.add_argument("--every", type=float, default=8.0, help="seconds between adds")
        parser.add_argument(
            "--no-history", action="store_true", help="skip the four weeks of past activity"
        )

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            # Its superuser's password is printed here and in the README: never on a
            # deployment (DEBUG is off unless set; `make run` sets it).
            raise CommandError(
                f"The demo creates the superuser {DEMO_USER!r} with a published password and "
                "runs only with DEBUG on (DEBUG=true, as `make run` sets it). Nothing was "
                "created."
            )
        _quiet_console()
        addr = str(options["addr"])
        host, port = addr.rsplit(":", 1)
        if "WECOM_SANDBOX_PUBLIC_URL" not in os.environ:
            # The sandbox's QR URLs must point at this server, whatever port it serves on.
            settings.WECOM_SANDBOX_PUBLIC_URL = f"http://{addr}"
        # Every simulated visitor of the demo comes from this machine: one IP, many people.
        for limit in ("LANDING_RATE_LIMIT_PER_IP", "LANDING_RATE_LIMIT_PER_IP_24H"):
            if limit not in os.environ:
                setattr(settings, limit, 0)
        self._operator()
        url = f"http://{addr}/wecom/callback/{DEMO_CORP}/"
        corp = self._corp(callback_url=url)
        landing, states = self._channels(corp)
        if not options["no_history"]:
            threading.Thread(
                target=self._history, args=(host, int(port), corp), name=HISTORY_THREAD,
                daemon=True,
            ).start()  # fmt: skip
        initial = options["initial"]
        if initial is None:  # a second start finds its customers: no second burst
            has_customers = ExternalContact.objects.filter(corp=corp).exists()
            initial = 0 if has_customers else FIRST_BURST
        self.banner = banner = self._banner(addr, landing, url)
        feeder = threading.Thread(
            target=self._feed,
            args=(host, int(port), f"http://{addr}", landing, states, int(initial),
                  float(options["every"]), banner),
            daemon=True,
        )  # fmt: skip
        feeder.start()
        threading.Thread(target=self._rollups, args=(host, int(port), corp), name=ROLLUPS_THREAD,
                         daemon=True).start()  # fmt: skip
        call_command("runserver", addr, use_reloader=False)

    def _banner(self, addr: str, landing: str, url: str) -> str:
        """The login and the URLs, framed: printed once the server answers (so they come
        after the server's own start lines), again when the history is written."""
        lines = [
            f"演示 Demo:     http://{addr}/admin/",
            f"登录 Login:    {DEMO_USER} / {DEMO_PASSWORD}",
            f"报表 Reports:  http://{addr}/reports/",
            f"落地页 Landing: http://{addr}/l/{landing}/",
            f"API:          http://{addr}/api/v1/  (docs: /api/docs/)",
            f"Callbacks:    {url}",
            f'More customers: make manage ARGS="wecom_sandbox simulate --code {landing} --adds 20"',
        ]
        rule = "=" * 78
        return self.style.SUCCESS("\n".join(["", rule, *(f"  {line}" for line in lines), rule, ""]))

    def _operator(self) -> None:
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(DEMO_PASSWORD)
        user.is_staff = user.is_superuser = True
        user.save()

    def _corp(self, *, callback_url: str) -> Corp:
        sandbox = sandbox_corp_setup(corp_id=DEMO_CORP, name="示例企业（沙箱）", members=5)
        # Where `wecom_sandbox simulate` delivers by default: this server, on whatever address.
        SandboxCorp.objects.filter(pk=sandbox.pk).update(callback_url=callback_url)
        corp = Corp.objects.filter(corp_id=DEMO_CORP).first() or corp_create(
            corp_id=sandbox.corp_id, name=sandbox.name, secret=sandbox.secret,
            callback_token=sandbox.callback_token, encoding_aes_key=sandbox.encoding_aes_key,
        )  # fmt: skip
        for member in SandboxMember.objects.filter(corp=sandbox):
            staff = staff_get_or_create(corp=corp, userid=member.userid)
            if not staff.name:
                Staff.objects.filter(pk=staff.pk).update(
                    name=member.name, department=member.department
                )
        return corp

    def _channels(self, corp: Corp) -> tuple[str, list[str]]:
        staff = list(Staff.objects.filter(corp=corp).order_by("userid"))
        landing, states = "", []
        for name, code, kind, utm, codes in DEMO_CHANNELS:
            channel, _ = Channel.objects.get_or_create(
                corp=corp, code=code,
                defaults={"name": name, "channel_type": kind, "utm_source": utm},
            )  # fmt: skip
            for index, (code_name, slug, mode, caps) in enumerate(codes):
                live_code = LiveCode.objects.filter(slug=slug).first()
                if live_code is None:
                    chosen = staff[index : index + len(caps)] if mode == "native" else staff[2:5]
                    pool = [{"staff": s, "daily_cap": cap}
                            for s, cap in zip(chosen, caps, strict=False)]  # fmt: skip
                    live_code = live_code_create(corp=corp, channel=channel, name=code_name,
                                                 slug=slug, mode=mode, welcome_text=DEMO_WELCOME,
                                                 pool=pool)  # fmt: skip
                if live_code.status != LiveCode.Status.ACTIVE:
                    live_code = live_code_publish(live_code=live_code)
                if mode == "landing":
                    landing = slug
                else:
                    states.append(live_code.state)
        return landing, states

    def _history(self, host: str, port: int, corp: Corp) -> None:
        """Once the server answers (the history takes longer than starting it): four weeks of
        the past through the services (scrm.demo_history), written once per database; a
        minute later, the orders that reach the business's system late."""
        _wait_for(host, port)
        quiet = _QuietThread(HISTORY_THREAD)
        for handler in logging.getLogger().handlers:
            handler.addFilter(quiet)  # its 1,000 API calls and tasks would drown the console
        try:
            self.stdout.write("Demo history: writing four weeks of the past...")
            report = demo_history_seed(
                corp=corp, pause=HISTORY_PAUSE,
                progress=lambda text: self.stdout.write(f"Demo history: {text}"),
            )  # fmt: skip
            if report.written:
                # The reports show the history by the time the banner says it is written,
                # not at the next minute's refresh.
                self._report_round(corp)
                self.stdout.write(self.style.SUCCESS(f"Demo history written: {report}"))
                self.stdout.write(self.banner)  # again, below the history's lines
            else:
                self.stdout.write(f"Demo history already there ({report.first_day}.."
                                  f"{report.last_day})")  # fmt: skip
            time.sleep(LATE_ORDERS_AFTER)
            late = demo_late_orders_import(corp=corp)
            if late:
                self._report_round(corp)  # the revised days, before the console says so
                self.stdout.write(f"Demo history: {late} late orders arrived (dated days ago)")
                self.stdout.write(self.banner)  # the login stays the last thing on the console
        except Exception as exc:  # the demo's history must never take the server down
            self.stderr.write(f"demo history stopped: {exc!r}")
        finally:
            connection.close()

    def _rollups(self, host: str, port: int, corp: Corp) -> None:
        """The beat's report work, in-process (the demo runs no beat): the rollups' refresh (the
        last month at once, then every minute the days that changed), the minute's surge check
        and the hourly channel quality ranking with its tag action."""
        _wait_for(host, port)
        quiet = _QuietThread(ROLLUPS_THREAD)
        for handler in logging.getLogger().handlers:
            handler.addFilter(quiet)
        while True:
            try:
                self._report_round(corp)
            except Exception as exc:  # the reports must never take the server down
                self.stderr.write(f"demo report refresh failed: {exc!r}")
            finally:
                connection.close()
            time.sleep(ROLLUPS_EVERY)

    def _report_round(self, corp: Corp) -> None:
        """One round of the beat's report work: the rollups' refresh, the surge check and, hourly
        or whenever the figures moved (the history arriving, the live customers), the channel
        ranking, so the demo's ranking is never of empty rollups. One round at a time: the
        history's thread runs one as soon as its facts are written."""
        with self._report_lock:
            rebuilt = rollups_refresh(corp=corp)
            surge_check_task(corp.pk)
            hour = timezone.now().replace(minute=0, second=0, microsecond=0)
            if hour != self._ranked_hour:  # beat's daily refresh of WeCom's reply times
                staff_reply_times_refresh_task(corp.pk)
            if rebuilt or hour != self._ranked_hour:
                quality_scores_compute_task(corp.pk)
                self._ranked_hour = hour

    def _feed(self, host: str, port: int, base: str, landing: str, states: list[str],
              initial: int, every: float, banner: str) -> None:  # fmt: skip
        """Once the server answers: a burst of adds (duplicates, shuffled) and landing scans
        (the first start only), the banner, then one new customer every few seconds, as long
        as the server runs."""
        _wait_for(host, port)
        rng = random.Random()
        try:
            if initial:
                simulate_adds(corp_id=DEMO_CORP, adds=initial, duplicates=0.15, shuffle=True,
                              url=base, states=[*states, ""])  # fmt: skip
                simulate_scans(corp_id=DEMO_CORP, slug=landing, scans=initial // 2,
                               no_add=0.3, url=base)  # fmt: skip
                self.stdout.write(f"Demo: {initial} customers added through the sandbox.")
            else:
                self.stdout.write("Demo: customers already there, no new burst "
                                  "(make run DEMO_ARGS='--initial N' adds one).")  # fmt: skip
            self.stdout.write(banner)
            while every > 0:
                time.sleep(every)
                if rng.random() < 0.4:
                    simulate_scans(corp_id=DEMO_CORP, slug=landing, scans=1, no_add=0.3, url=base)
                else:
                    simulate_adds(corp_id=DEMO_CORP, adds=1, url=base, states=[*states, ""])
        except Exception as exc:  # the demo feed must never take the server down
            self.stderr.write(f"demo feed stopped: {exc}")


def _wait_for(host: str, port: int) -> None:
    for _ in range(600):
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)


def _quiet_console() -> None:
    """The demo's console shows what an operator needs (the banner, warnings, errors), not a
    line per WeCom call, task and request of the simulated traffic; LOG_LEVEL=INFO shows them."""
    if "LOG_LEVEL" in os.environ:
        return
    # In settings.LOGGING too: runserver's django.setup() configures logging again.
    loggers = settings.LOGGING.setdefault("loggers", {})
    for name in ("scrm.wecom.client", "celery.app.trace", "django.server"):
        loggers[name] = {**loggers.get(name, {}), "level": "WARNING"}
        logging.getLogger(name).setLevel(logging.WARNING)


class _QuietThread(logging.Filter):
    """Drops one thread's records below WARNING."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != self.thread_name or record.levelno >= logging.WARNING
