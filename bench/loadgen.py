"""Light raw-asyncio HTTP/1.1 keep-alive load generator with latency statistics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

STREAM_LIMIT = 16 * 1024 * 1024


@dataclass(slots=True)
class Response:
    """A parsed HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes


class HttpError(Exception):
    """Protocol-level failure while talking to the server."""


FHIR_JSON = "application/fhir+json"


#: Headers every request carries (http_bench sets `Authorization` to the system client's token).
EXTRA_HEADERS: dict[str, str] = {}


def build_request(
    method: str, path: str, host: str, body: bytes | None = None, accept: str = FHIR_JSON
) -> bytes:
    """Serialise one HTTP/1.1 keep-alive request to bytes."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in EXTRA_HEADERS.items())
    if body is None:
        return (head + "\r\n").encode("latin-1")
    head += f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


class Connection:
    """One persistent HTTP/1.1 connection; reconnects transparently when closed."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, limit=STREAM_LIMIT
        )
        self.reconnects += 1

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def send(self, raw: bytes, head_only: bool = False) -> Response:
        """Send a pre-built request and read the full response."""
        if self._writer is None:
            await self._connect()
        assert self._reader is not None and self._writer is not None
        try:
            self._writer.write(raw)
            return await self._read_response(self._reader, head_only)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, HttpError):
            await self.close()
            raise

    async def _read_response(self, reader: asyncio.StreamReader, head_only: bool) -> Response:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise HttpError("connection closed before response") from exc
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line: {lines[0]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        close = headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
        if head_only or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
            close = True
        if close:
            await self.close()
        return Response(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError("bad chunk terminator")


class Workload(Protocol):
    """Produces requests and consumes responses for one phase."""

    def next_request(self) -> tuple[bytes, Any]: ...

    def on_response(self, ctx: Any, resp: Response) -> str | None:
        """Handle a 2xx response; return a check-failure message or None."""
        ...


@dataclass
class PhaseStats:
    """Measured outcome of one phase."""

    name: str
    clients: int
    requests: int = 0
    errors: int = 0
    warmup_errors: int = 0
    first_error: str | None = None
    check_failures: int = 0
    first_check_failure: str | None = None
    warmup_requests: int = 0
    elapsed_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    resources_per_request: int = 1
    peak_rss_mb: float | None = None
    client_cpu_s: float = 0.0

    @property
    def req_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def resources_per_s(self) -> float:
        return self.req_per_s * self.resources_per_request

    def percentile_ms(self, pct: float) -> float:
        """Nearest-rank percentile of the recorded latencies, in milliseconds."""
        if not self.latencies_ns:
            return 0.0
        ordered = sorted(self.latencies_ns)
        rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
        return ordered[rank - 1] / 1e6

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ns
        return {
            "name": self.name,
            "clients": self.clients,
            "requests": self.requests,
            "warmup_requests": self.warmup_requests,
            "errors": self.errors,
            "warmup_errors": self.warmup_errors,
            "first_error": self.first_error,
            "check_failures": self.check_failures,
            "first_check_failure": self.first_check_failure,
            "elapsed_s": round(self.elapsed_s, 3),
            "req_per_s": round(self.req_per_s, 1),
            "resources_per_request": self.resources_per_request,
            "resources_per_s": round(self.resources_per_s, 1),
            "p50_ms": round(self.percentile_ms(50), 3),
            "p95_ms": round(self.percentile_ms(95), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "max_ms": round(max(lat) / 1e6, 3) if lat else 0.0,
            "mean_ms": round(sum(lat) / len(lat) / 1e6, 3) if lat else 0.0,
            "peak_rss_mb": self.peak_rss_mb,
            "client_cpu_pct": round(100 * self.client_cpu_s / self.elapsed_s, 1)
            if self.elapsed_s
            else 0.0,
            "client_cpu_us_per_req": round(1e6 * self.client_cpu_s / self.requests, 1)
            if self.requests
            else 0.0,
        }


async def run_phase(
    name: str,
    host: str,
    port: int,
    workload: Workload,
    clients: int,
    duration: float,
    warmup: float,
    count: int | None = None,
    resources_per_request: int = 1,
    on_measure_start: Callable[[], None] | None = None,
) -> PhaseStats:
    """Run `clients` keep-alive connections: warm up, then measure for `duration` s or `count`."""
    stats = PhaseStats(name, clients, resources_per_request=resources_per_request)
    clock = time.perf_counter
    start = clock()
    measure_start = start + warmup
    deadline = None if count else measure_start + duration
    issued = 0
    started_measuring = False
    cpu_start = time.process_time()
    finish_times: list[float] = []

    def record_error(desc: str, measuring: bool) -> None:
        if measuring:
            stats.errors += 1
        else:
            stats.warmup_errors += 1
        if stats.first_error is None:
            stats.first_error = desc

    async def client() -> None:
        nonlocal issued, started_measuring, cpu_start
        conn = Connection(host, port)
        try:
            while True:
                now = clock()
                measuring = now >= measure_start
                if measuring:
                    if not started_measuring:
                        started_measuring = True
                        cpu_start = time.process_time()
                        if on_measure_start is not None:
                            on_measure_start()
                    if deadline is not None and now >= deadline:
                        break
                    if count is not None:
                        if issued >= count:
                            break
                        issued += 1
                raw, ctx = workload.next_request()
                t0 = time.perf_counter_ns()
                try:
                    resp = await conn.send(raw)
                except (ConnectionError, OSError, asyncio.IncompleteReadError, HttpError) as exc:
                    stats.requests += int(measuring)
                    record_error(f"{type(exc).__name__}: {exc} ({raw[:80]!r})", measuring)
                    continue
                t1 = time.perf_counter_ns()
                if measuring:
                    stats.requests += 1
                    stats.latencies_ns.append(t1 - t0)
                else:
                    stats.warmup_requests += 1
                if not 200 <= resp.status < 300:
                    line = raw.split(b"\r\n", 1)[0].decode("latin-1")
                    text = resp.body[:800].decode(errors="replace")
                    record_error(f"{resp.status} for {line}: {text}", measuring)
                    continue
                problem = workload.on_response(ctx, resp)
                if problem is not None:
                    stats.check_failures += 1
                    if stats.first_check_failure is None:
                        stats.first_check_failure = problem
        finally:
            finish_times.append(clock())
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    stats.client_cpu_s = time.process_time() - cpu_start
    stats.elapsed_s = max(finish_times) - max(measure_start, start)
    return stats


def install_fast_loop() -> str:
    """Use uvloop for the client if available; return the loop name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
