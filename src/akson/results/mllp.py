"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 2) and an asyncio TCP server.

Spec: HL7 v2.5.1 Implementation Guide: Transport Specification, MLLP Release 2
(https://www.hl7.org/implement/standards/product_brief.cfm?product_id=55): a frame is
0x0B <message> 0x1C 0x0D. Bytes before a start block are ignored (line noise, keep-alives). The
server answers every frame with the handler's reply, framed, in order, on the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from akson.results.hl7v2 import ack

__all__ = ["END_BLOCK", "START_BLOCK", "FrameTooLarge", "Framer", "frame", "send", "serve"]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_READ_SIZE = 65536

log = logging.getLogger(__name__)


class FrameTooLarge(Exception):
    """A frame grew past the size limit before its end block arrived."""


def frame(message: bytes) -> bytes:
    """Wrap one message in the MLLP start and end blocks."""
    return START_BLOCK + message + END_BLOCK


class Framer:
    """Incremental deframer: `feed(bytes)` returns the messages completed by those bytes.

    Bytes outside a frame are dropped. A start block inside an unfinished frame starts the frame
    anew (the sender gave up on the first one). A frame whose content passes `max_frame` bytes
    raises `FrameTooLarge`; the connection cannot be resynchronised after that."""

    def __init__(self, max_frame: int = 10_000_000) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._in_frame = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            if not self._in_frame:
                start = self._buf.find(START_BLOCK)
                if start < 0:
                    self._buf.clear()  # noise: nothing here can become a frame
                    return out
                del self._buf[: start + 1]
                self._in_frame = True
            end = self._buf.find(END_BLOCK)
            restart = self._buf.find(START_BLOCK)
            if restart >= 0 and (end < 0 or restart < end):
                del self._buf[: restart + 1]
                continue
            if end < 0:
                # The last byte may be the first half of an end block.
                pending = len(self._buf) - (1 if self._buf.endswith(b"\x1c") else 0)
                if pending > self.max_frame:
                    raise FrameTooLarge(f"an MLLP frame passed {self.max_frame} bytes")
                return out
            if end > self.max_frame:
                raise FrameTooLarge(f"an MLLP frame passed {self.max_frame} bytes")
            out.append(bytes(self._buf[:end]))
            del self._buf[: end + len(END_BLOCK)]
            self._in_frame = False


Handler = Callable[[bytes], Awaitable[bytes]]


async def serve(handler: Handler, host: str, port: int, *,
                max_frame: int = 10_000_000, idle_seconds: float = 300.0) -> asyncio.Server:
    """Start an MLLP server; every frame is answered with `await handler(message)`, framed.

    Connections are independent; each answers its messages in order. A handler that raises is
    answered with an `AE` ACK saying "internal error" (no details leave the server) and the
    connection keeps serving. A frame larger than `max_frame` is answered with an `AR` NAK and
    the connection is closed. Port 0 picks a free port (see `server.sockets[0].getsockname()`).
    """

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer(max_frame)
        try:
            while True:
                try:  # an idle or stalled peer does not hold a connection for ever
                    data = await asyncio.wait_for(reader.read(_READ_SIZE), idle_seconds)
                except TimeoutError:
                    return
                if not data:
                    return
                try:
                    messages = framer.feed(data)
                except FrameTooLarge:
                    log.warning("MLLP frame over %d bytes; closing the connection", max_frame)
                    writer.write(frame(ack(None, accepted=False, code="AR",
                                           error="message too large")))
                    await writer.drain()
                    return
                for message in messages:
                    writer.write(frame(await _answer(handler, message)))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    return await asyncio.start_server(connection, host, port)


async def _answer(handler: Handler, message: bytes) -> bytes:
    try:
        return await handler(message)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the listener
        # The exception text may hold message content (personal data): log its type only.
        log.error("MLLP handler failed: %s", type(exc).__name__)
        return ack(message, accepted=False, code="AE", error="internal error")


async def send(host: str, port: int, message: bytes, *, timeout: float) -> bytes:
    """Send one message over a new connection and return the reply's content."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(frame(message))
            await writer.drain()
            framer = Framer()
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    raise ConnectionError("the server closed the connection without a reply")
                replies = framer.feed(data)
                if replies:
                    return replies[0]
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
