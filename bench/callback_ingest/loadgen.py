"""A closed-loop HTTP/1.1 load generator: a fixed number of keep-alive connections, asyncio.

Each connection sends one pre-built request, waits for the whole answer, and sends the next, until
the deadline or the request supply runs out. Requests are raw bytes built before the timed phase,
so the client spends its time on sockets only. Loopback only: it is a benchmark client, not a tool
to point at other hosts.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# A request answered after this long counts as an error (WeCom itself gives up after 5 s).
REQUEST_TIMEOUT = 10.0

NextRequest = Callable[[], bytes | None]


@dataclass
class RoundResult:
    label: str
    connections: int
    elapsed: float = 0.0
    status_counts: Counter[int] = field(default_factory=Counter)
    errors: int = 0  # connection errors and timeouts: no HTTP status at all
    exhausted: bool = False  # the request supply ran out before the deadline
    # CPU seconds spent by the server and by the database during the round, when measured.
    server_cpu: float | None = None
    db_cpu: float | None = None
    client_cpu: float | None = None
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def ok(self) -> int:
        return self.status_counts.get(200, 0)

    @property
    def non_200(self) -> int:
        return self.answered - self.ok + self.errors

    @property
    def rps(self) -> float:
        return self.answered / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1] * 1000

    def cpu_ms_per_request(self, seconds: float | None) -> float | None:
        if seconds is None or not self.answered:
            return None
        return round(seconds * 1000 / self.answered, 3)

    def summary(self) -> dict[str, object]:
        return {
            "label": self.label,
            "connections": self.connections,
            "elapsed_s": round(self.elapsed, 3),
            "requests": self.answered,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p90_ms": round(self.percentile_ms(90), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "max_ms": round(max(self.latencies, default=math.nan) * 1000, 2),
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "errors": self.errors,
            "non_200": self.non_200,
            "exhausted": self.exhausted,
            "server_cpu_ms_per_request": self.cpu_ms_per_request(self.server_cpu),
            "db_cpu_ms_per_request": self.cpu_ms_per_request(self.db_cpu),
            "client_cpu_ms_per_request": self.cpu_ms_per_request(self.client_cpu),
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole response; return (status, server closes the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    chunked = False
    close = head.startswith(b"HTTP/1.0")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            close = token == b"close" or (close and token != b"keep-alive")
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        if length:
            await reader.readexactly(length)
    else:
        await reader.read()  # no framing: the body ends with the connection
        close = True
    return status, close


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()


async def _connection(
    host: str,
    port: int,
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    next_request: NextRequest,
    deadline: float,
    result: RoundResult,
) -> None:
    reader, writer = stream if stream else (None, None)
    clock = time.perf_counter
    try:
        while clock() < deadline:
            request = next_request()
            if request is None:
                result.exhausted = True
                return
            started = clock()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    if writer is None:
                        reader, writer = await _open(host, port)
                    writer.write(request)
                    status, close = await _read_response(reader)
            except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                # The request is spent either way: a callback WeCom would have to retry.
                result.errors += 1
                _close(writer)
                reader = writer = None
                continue
            result.latencies.append(clock() - started)
            result.status_counts[status] += 1
            if close:  # e.g. gunicorn's sync worker answers "Connection: close"
                _close(writer)
                reader = writer = None
    finally:
        _close(writer)


async def _run(
    label: str, host: str, port: int, connections: int, duration: float, next_request: NextRequest
) -> RoundResult:
    result = RoundResult(label=label, connections=connections)
    # Connect everyone first, so the clock starts with all connections ready.
    streams = await asyncio.gather(
        *(_open(host, port) for _ in range(connections)), return_exceptions=True
    )
    ready = [s if isinstance(s, tuple) else None for s in streams]
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(_connection(host, port, s, next_request, deadline, result) for s in ready)
    )
    result.elapsed = time.perf_counter() - started
    return result


def run_round(
    *,
    label: str,
    host: str,
    port: int,
    connections: int,
    duration: float,
    requests: list[bytes] | None = None,
    repeat: bytes | None = None,
    max_requests: int | None = None,
) -> RoundResult:
    """Load `host:port` for `duration` seconds with `connections` connections.

    Either `requests` (each sent once, in order; the round ends early when they run out) or
    `repeat` (the same request every time, at most `max_requests` times).
    """
    if host not in LOOPBACK:
        raise ValueError("the benchmark client only talks to the loopback interface")
    if (requests is None) == (repeat is None):
        raise ValueError("give exactly one of requests or repeat")
    if requests is not None:
        supply = iter(requests)

        def next_request() -> bytes | None:
            return next(supply, None)

    else:
        remaining = [max_requests if max_requests is not None else math.inf]

        def next_request() -> bytes | None:
            if remaining[0] <= 0:
                return None
            remaining[0] -= 1
            return repeat

    cpu = time.process_time()
    result = asyncio.run(_run(label, host, port, connections, duration, next_request))
    result.client_cpu = time.process_time() - cpu
    return result
