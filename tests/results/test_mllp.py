"""MLLP framing and the asyncio server: real TCP connections on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from akson.results.hl7v2 import ack
from akson.results.hl7v2_syntax import split_message
from akson.results.mllp import Framer, FrameTooLarge, frame, send, serve

DATA = Path(__file__).parent / "data" / "hl7v2"
LAB = (DATA / "no_lab_v251.hl7").read_bytes()
TIMEOUT = 10.0


def msa(reply: bytes) -> tuple[str, str]:
    seg = split_message(reply).segments[1]
    assert seg.name == "MSA"
    return seg.comp(1), seg.comp(2)


def message(control_id: str) -> bytes:
    return LAB.replace(b"|MSG-0001|", f"|{control_id}|".encode())


async def accept_all(data: bytes) -> bytes:
    return ack(data, accepted=True)


def run(handler: Callable[[bytes], Awaitable[bytes]],
        client: Callable[[str, int], Awaitable[Any]], **kwargs: Any) -> Any:
    """Start a server on a free port, run the client coroutine against it, stop the server."""

    async def main() -> Any:
        server = await serve(handler, "127.0.0.1", 0, **kwargs)
        try:
            host, port = server.sockets[0].getsockname()[:2]
            return await asyncio.wait_for(client(host, port), TIMEOUT)
        finally:
            server.close()
            # From Python 3.12 wait_closed also waits for open connections (a handler that
            # never returns keeps one): bound it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1)

    return asyncio.run(main())


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    framer = Framer()
    out: list[bytes] = []
    while len(out) < count:
        data = await reader.read(65536)
        if not data:
            break
        out += framer.feed(data)
    return out


# ------------------------------------------------------------------------------------ framing


def test_framer_extracts_frames_and_skips_noise() -> None:
    f = Framer()
    assert f.feed(b"noise\r\n" + frame(b"A") + b"junk" + frame(b"B")[:3]) == [b"A"]
    assert f.feed(frame(b"B")[3:] + frame(b"C")) == [b"B", b"C"]


def test_framer_end_block_split_across_reads() -> None:
    f = Framer()
    whole = frame(b"MSH|x")
    assert f.feed(whole[:-1]) == []
    assert f.feed(whole[-1:]) == [b"MSH|x"]


def test_framer_restarts_on_a_new_start_block() -> None:
    assert Framer().feed(b"\x0bhalf\x0bwhole\x1c\x0d") == [b"whole"]


def test_framer_size_limit() -> None:
    f = Framer(max_frame=10)
    assert f.feed(frame(b"0123456789")) == [b"0123456789"]
    with pytest.raises(FrameTooLarge):
        f.feed(b"\x0b" + b"x" * 11)
    with pytest.raises(FrameTooLarge):
        Framer(max_frame=10).feed(frame(b"x" * 11))


# ------------------------------------------------------------------------------------- server


def test_send_gets_the_ack() -> None:
    reply = run(accept_all, lambda h, p: send(h, p, LAB, timeout=TIMEOUT))
    assert msa(reply) == ("AA", "MSG-0001")


def test_many_messages_over_one_connection_answered_in_order() -> None:
    async def client(host: str, port: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        # All frames in one write, then a few more after the first replies arrive.
        writer.write(b"".join(frame(message(f"M{i}")) for i in range(5)))
        first = await read_replies(reader, 5)
        for i in range(5, 8):
            writer.write(frame(message(f"M{i}")))
        rest = await read_replies(reader, 3)
        writer.close()
        await writer.wait_closed()
        return first + rest

    replies = run(accept_all, client)
    assert [msa(r) for r in replies] == [("AA", f"M{i}") for i in range(8)]


def test_two_connections_at_once() -> None:
    release = asyncio.Event()
    arrived: list[str] = []

    async def handler(data: bytes) -> bytes:
        control_id = split_message(data).segments[0].comp(10)
        arrived.append(control_id)
        if len(arrived) == 2:
            release.set()
        # Each reply waits for both messages: only concurrent connections can finish.
        await release.wait()
        return ack(data, accepted=True)

    async def client(host: str, port: int) -> list[bytes]:
        return list(await asyncio.gather(send(host, port, message("A"), timeout=TIMEOUT),
                                         send(host, port, message("B"), timeout=TIMEOUT)))

    replies = run(handler, client)
    assert [msa(r) for r in replies] == [("AA", "A"), ("AA", "B")]


def test_frame_split_across_tcp_writes_and_junk_before_start_block() -> None:
    async def client(host: str, port: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        data = b"\r\n\x00keepalive" + frame(message("SPLIT"))
        for i in range(0, len(data), 7):
            writer.write(data[i:i + 7])
            await writer.drain()
        replies = await read_replies(reader, 1)
        writer.close()
        await writer.wait_closed()
        return replies

    (reply,) = run(accept_all, client)
    assert msa(reply) == ("AA", "SPLIT")


def test_oversized_frame_gets_a_nak_and_the_connection_closes() -> None:
    async def client(host: str, port: int) -> tuple[list[bytes], bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x0b" + b"x" * 5000)
        replies = await read_replies(reader, 1)
        rest = await reader.read()  # EOF: the server closed the connection
        writer.close()
        return replies, rest

    replies, rest = run(accept_all, client, max_frame=1000)
    assert len(replies) == 1
    assert msa(replies[0]) == ("AR", "")
    assert rest == b""


def test_handler_exception_answers_ae_and_keeps_serving() -> None:
    async def handler(data: bytes) -> bytes:
        if b"|BOOM|" in data:
            raise RuntimeError("secret detail 14838512047")
        return ack(data, accepted=True)

    async def client(host: str, port: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(frame(message("BOOM")) + frame(message("AFTER")))
        replies = await read_replies(reader, 2)
        writer.close()
        await writer.wait_closed()
        third = await send(host, port, message("NEW"), timeout=TIMEOUT)
        return [*replies, third]

    boom, after, new = run(handler, client)
    assert msa(boom) == ("AE", "BOOM")
    assert b"internal error" in boom and b"secret" not in boom and b"14838512047" not in boom
    assert msa(after) == ("AA", "AFTER")
    assert msa(new) == ("AA", "NEW")


def test_send_times_out_when_no_reply_comes() -> None:
    async def never(data: bytes) -> bytes:
        await asyncio.Event().wait()
        return b""

    with pytest.raises(TimeoutError):
        run(never, lambda h, p: send(h, p, LAB, timeout=0.2))
