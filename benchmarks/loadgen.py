"""A raw asyncio HTTP/1.1 load generator: closed loop (saturation) or open loop (fixed rate).

One ``asyncio.Protocol`` per keep-alive connection, one pre-built GET request, responses parsed
by ``Content-Length`` (non-2xx, unframed responses and lost connections count as errors), in a
fresh uvloop event loop when uvloop is installed. Fast enough (tens of µs of CPU per request)
to load a FastAPI server on the same machine without becoming the bottleneck, which an HTTP
client library is not.

- Closed loop (``rate=None``): each connection sends its next request when the last one is
  answered; latency is counted from the send.
- Open loop (``rate`` req/s, as wrk2 does it): requests leave on a fixed schedule spread over
  the connections, and latency is counted from the *scheduled* send time, so a stall that
  delays later sends is charged to them (coordinated omission corrected); how late the
  generator itself sent is recorded as the send lag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

HOST = "127.0.0.1"


@dataclass
class Result:
    """What one load phase measured.

    Attributes:
        seconds: From the first send to the last response.
        latencies: Seconds per response (closed loop: from its send; open loop: from its
            scheduled send).
        lags: Open loop only: seconds each request was sent after its scheduled time.
        errors: Non-2xx responses, malformed responses and lost connections.
        client_cpu_s: CPU seconds this process spent generating the load.
    """

    seconds: float
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: int = 0
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        """Responses per second."""
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, on_response: Callable[[_Connection, int], None]) -> None:
        self.on_response = on_response
        self.on_lost: Callable[[_Connection], None] = lambda _: None
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.scheduled = 0.0  # when the request in flight was due (open loop) or sent
        self.busy = False
        self.closed = False  # no more sends: closing, or lost
        self.finished = False  # counted out of the phase

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.busy = True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].split(b"\r\n")
            length = -1
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length < 0 or not head[0].startswith(b"HTTP/1.1 "):
                # Chunked or otherwise unframed: not something these routes send.
                self.busy = False
                self.close()
                self.on_response(self, 0)
                return
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.busy = False
            self.on_response(self, int(head[0][9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.on_lost(self)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


def _request_bytes(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: */*\r\n\r\n".encode()


async def _drive(
    port: int, path: str, connections: int, seconds: float, rate: float | None
) -> Result:
    """Load ``path`` on ``port`` for ``seconds``: closed loop, or open loop at ``rate`` req/s."""
    loop = asyncio.get_running_loop()
    request = _request_bytes(path, port)
    clock = time.perf_counter
    result = Result(seconds=0.0)
    done = loop.create_future()
    active = connections
    period = connections / rate if rate else 0.0  # seconds between two sends on a connection
    deadline = 0.0
    last = 0.0

    def finish(conn: _Connection) -> None:
        nonlocal active
        conn.close()
        if conn.finished:
            return
        conn.finished = True
        active -= 1
        if active == 0 and not done.done():
            done.set_result(None)

    def send(conn: _Connection, due: float) -> None:
        if conn.closed:
            return
        if due >= deadline:
            finish(conn)
            return
        now = clock()
        if rate is None:
            conn.send(request, now)
        elif due > now:
            loop.call_later(due - now, send_due, conn, due)
        else:
            result.lags.append(now - due)
            conn.send(request, due)

    def send_due(conn: _Connection, due: float) -> None:
        if conn.closed:
            return
        now = clock()
        result.lags.append(max(0.0, now - due))
        conn.send(request, due)

    def on_response(conn: _Connection, status: int) -> None:
        nonlocal last
        now = last = clock()
        if 200 <= status < 300:
            result.latencies.append(now - conn.scheduled)
        else:
            result.errors += 1
        send(conn, conn.scheduled + period if rate else now)

    def on_lost(conn: _Connection) -> None:
        if conn.busy:
            result.errors += 1
            conn.busy = False
        finish(conn)

    conns: list[_Connection] = []
    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: _Connection(on_response), HOST, port)
        conn.on_lost = on_lost
        conns.append(conn)
    cpu0 = time.process_time()
    start = clock()
    deadline = start + seconds
    for i, conn in enumerate(conns):
        send(conn, start + i * period / connections if rate else start)
    try:
        await asyncio.wait_for(done, seconds + 30)
    finally:
        for conn in conns:
            conn.close()
    result.seconds = max(0.0, last - start)
    result.client_cpu_s = time.process_time() - cpu0
    return result


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def load(port: int, path: str, connections: int, seconds: float, rate: float | None) -> Result:
    """Run one load phase in a fresh event loop (uvloop when installed)."""
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        return runner.run(_drive(port, path, connections, seconds, rate))
