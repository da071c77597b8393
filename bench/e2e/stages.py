"""Where an add's CPU goes, stage by stage: N adds in one process on one database connection
(as the floor), in chunks of 20, each stage of a chunk run apart and measured.

    python -m bench.e2e.stages N     (run by bench/e2e/run.py --stages N on the run's database)

1. callback: the callback view stores the encrypted event (its processing held back);
2. inbox: one inbox drain records the adds (history, attribution, first touch, timeline) and
   queues their welcomes and follow-ups (held back);
3. welcome: each add's welcome task sends it, received 6 s before (past the details-first
   window, as under a burst);
4. follow-up: each add's details (externalcontact/get) and tags (mark_tag).

The native code's user-list sync, debounced to one per code every few seconds, is left out.

The welcome's critical path is stages 1 to 3. Per stage: CPU ms per add of this process
(Python, the in-process sandbox included) and of its PostgreSQL backend, and statements per
add, ours and the sandbox's (WeCom's side) apart. The first chunk warms the caches and is not
counted. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.e2e.floor import backend_cpu, backend_pid, client_poster, in_process

CHUNK = 20
STAGES = ("callback", "inbox", "welcome", "follow_up")


def main() -> None:
    adds = int(sys.argv[1])
    in_process("stages")
    from django.db import connection

    from bench.e2e.scenario import CORP_ID
    from channels_app.models import LiveCode
    from channels_app.tasks import live_code_sync_task
    from scrm import tasks
    from scrm.pipeline import after_add
    from scrm.wecom import services as inbox
    from scrm.wecom.sandbox.simulate import simulate_adds

    poster = client_poster()
    held: list[tuple] = []
    # The stages' hand-offs, held back instead of queued: the inbox's processing and the
    # after-add tasks (welcome, then details and tags).
    inbox.callback_event_enqueue = lambda **kwargs: None
    tasks.after_add_task.apply_async = lambda args, **options: held.append(tuple(args))
    # The native code's user-list sync is debounced to one per code every few seconds, a
    # countdown task that eager Celery would run at once after every add: left out.
    live_code_sync_task.apply_async = lambda args, **options: None

    cpu: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    statements: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    stage_now = [""]

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements[stage_now[0]]["wecom_sandbox_" in sql] += 1
        return execute(sql, params, many, context)

    backend = backend_pid()

    def measured(stage: str, counted: bool, work: Any) -> Any:
        stage_now[0] = stage if counted else "warm-up"
        py0, pg0 = time.process_time(), backend_cpu(backend)
        result = work()
        cpu[stage if counted else "warm-up"][0] += time.process_time() - py0
        cpu[stage if counted else "warm-up"][1] += backend_cpu(backend) - pg0
        return result

    state = LiveCode.objects.get(slug="live-e2e").state
    chunks = -(-adds // CHUNK) + 1  # the first warms up
    with connection.execute_wrapper(count):
        for chunk in range(chunks):
            counted = chunk > 0
            measured("callback", counted, lambda c=chunk: simulate_adds(
                corp_id=CORP_ID, adds=CHUNK, states=[state], seed=1000 + c, poster=poster,
            ))  # fmt: skip
            held.clear()
            measured("inbox", counted, inbox.callback_events_drain)
            # The add queues its welcome and its follow-up (details, tags) when it commits.
            welcomes = [args for args in held if args[1]]
            follow_ups = [args for args in held if not args[1]]
            held.clear()
            received = datetime.now(UTC) - timedelta(seconds=6)

            def welcome_all(
                welcomes: list[tuple] = welcomes, received: datetime = received
            ) -> None:
                for attribution_id, code, _ts, fetch in welcomes:
                    after_add(attribution_id=attribution_id, welcome_code=code,
                              received_at=received, fetch_details=fetch)  # fmt: skip

            measured("welcome", counted, welcome_all)

            def follow_up_all(follow_ups: list[tuple] = follow_ups) -> None:
                for attribution_id, code, ts, fetch in follow_ups:
                    after_add(attribution_id=attribution_id, welcome_code=code,
                              received_at=datetime.fromtimestamp(ts, UTC),
                              fetch_details=fetch)  # fmt: skip

            measured("follow_up", counted, follow_up_all)
    n = (chunks - 1) * CHUNK
    per_stage = {
        stage: {
            "python_ms_per_add": round(1000 * cpu[stage][0] / n, 2),
            "postgres_ms_per_add": round(1000 * cpu[stage][1] / n, 2),
            "cpu_ms_per_add": round(1000 * sum(cpu[stage]) / n, 2),
            "statements_per_add": round(statements[stage][0] / n, 1),
            "sandbox_statements_per_add": round(statements[stage][1] / n, 1),
        }
        for stage in STAGES
    }
    critical = sum(per_stage[s]["cpu_ms_per_add"] for s in ("callback", "inbox", "welcome"))
    total = critical + per_stage["follow_up"]["cpu_ms_per_add"]
    print(json.dumps({"adds": n, "stages": per_stage,
                      "welcome_path_cpu_ms_per_add": round(critical, 2),
                      "total_cpu_ms_per_add": round(total, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
