"""The floor: CPU of N adds in one process with Celery eager, on one database connection.

    python -m bench.e2e.floor N     (run by bench/e2e/run.py on the run's database)

Each add goes the whole way (callback view, inbox, pipeline, details, welcome, tags, every
WeCom call to the in-process sandbox) with no broker, no process hops and no reconnects: what
an add costs when nothing but its own statements and calls is paid. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import suppress

import django


def in_process(cache: str) -> None:
    """Django in this process on the run's database: Celery eager (no broker), a cache of the
    process's own, no landing Redis."""
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ["CACHE_URL"] = f"locmemcache://{cache}"
    os.environ.pop("LANDING_REDIS_URL", None)
    django.setup()


def client_poster() -> Callable[[str, dict[str, str], str], int]:
    """A sandbox poster that hands each callback to the callback view in this process."""
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")

    def poster(url: str, params: dict[str, str], body: str) -> int:
        path = url.split("://", 1)[1].split("/", 1)[1]
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return client.post(f"/{path}?{query}", body, content_type="text/xml").status_code

    return poster


def backend_pid() -> int:
    """The process id of this process's PostgreSQL backend (one connection throughout)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def backend_cpu(pid: int) -> float:
    """CPU seconds of that backend so far."""
    from bench.e2e import probes

    return probes.proc_cpu(pid) or 0.0


def main() -> None:
    adds = int(sys.argv[1])
    in_process("floor")
    from bench.e2e.scenario import CORP_ID
    from channels_app.models import LiveCode
    from scrm.wecom.sandbox.simulate import simulate_adds

    poster = client_poster()
    backend = backend_pid()
    marks: dict[str, float] = {}

    def progress(index: int, _total: int) -> None:
        if index == 1:  # the first add warms the caches: counted from the second
            marks["cpu"] = time.process_time()
            marks["pg"] = backend_cpu(backend)
            marks["wall"] = time.monotonic()

    state = LiveCode.objects.get(slug="live-e2e").state
    report = simulate_adds(corp_id=CORP_ID, adds=adds + 1, states=[state], seed=99,
                           poster=poster, progress=progress)  # fmt: skip
    cpu = time.process_time() - marks["cpu"]
    pg = backend_cpu(backend) - marks["pg"]
    calls = wecom_calls_alone(adds)
    print(json.dumps({
        "adds": adds, "answered_200": report.answered_200 - 1,
        "cpu_ms_per_add": round(1000 * (cpu + pg) / adds, 2),
        "python_ms_per_add": round(1000 * cpu / adds, 2),
        "postgres_ms_per_add": round(1000 * pg / adds, 2),
        "wall_ms_per_add": round(1000 * (time.monotonic() - marks["wall"]) / adds, 2),
        # The three WeCom calls of an add alone (client, call log row, in-process sandbox).
        "wecom_calls_ms_per_add": calls,
    }))  # fmt: skip


def wecom_calls_alone(adds: int) -> float:
    """CPU of externalcontact/get, send_welcome_msg and mark_tag for `adds` new customers,
    through the client as the pipeline calls them (python and the database backend)."""
    import random

    from bench.e2e.scenario import CORP_ID
    from contacts.models import Tag
    from scrm.wecom.client import WeComClient, WeComError
    from scrm.wecom.models import Corp
    from scrm.wecom.sandbox.models import SandboxCorp
    from scrm.wecom.sandbox.simulate import sandbox_customer_add

    corp = Corp.objects.get(corp_id=CORP_ID)
    sandbox = SandboxCorp.objects.get(corp_id=CORP_ID)
    tag_id = Tag.objects.filter(corp=corp).values_list("tag_id", flat=True).first()
    rng = random.Random(7)
    customers = [sandbox_customer_add(corp=sandbox, userid="staff01", rng=rng) for _ in range(adds)]
    client = WeComClient(corp)
    client.external_contact_get(customers[0][0].external_userid)  # the token, outside the count

    backend = backend_pid()
    cpu0, pg0 = time.process_time(), backend_cpu(backend)
    for customer, follow, code in customers:
        client.external_contact_get(customer.external_userid)
        with suppress(WeComError):  # a code that aged past 20 s on a slow machine
            client.send_welcome_msg({"welcome_code": code, "text": {"content": "您好"}})
        client.mark_tag(userid=follow.userid, external_userid=customer.external_userid,
                        add=[tag_id], remove=[])  # fmt: skip
    return round(1000 * (time.process_time() - cpu0 + backend_cpu(backend) - pg0) / adds, 2)


if __name__ == "__main__":
    main()
