"""`akson serve --workers N` (akson.serving): connections spread over the workers, a dead worker
is replaced, a worker that cannot start stops the server, and SIGTERM stops it cleanly.

The workers run a tiny app that answers with its process id (tests/reliability/pid_app.py), in
a real supervisor process on a real port.
"""

from __future__ import annotations

import http.client
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.reliability.test_crash_recovery import free_port

REPO = Path(__file__).resolve().parents[2]
CONNECTIONS = 32  # all on one worker by chance: 2 × 2^-32


def supervisor(app: str, port: int) -> subprocess.Popen[bytes]:
    code = ("import sys; from uvicorn import Config; from akson.serving import Workers; "
            f"config = Config({app!r}, host='127.0.0.1', port={port}, log_level='warning'); "
            "sys.exit(0 if Workers(config, 2).run() else 3)")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def answer(conn: http.client.HTTPConnection) -> tuple[int, str]:
    """The answering worker's process id and worker number."""
    conn.request("GET", "/")
    pid, number = conn.getresponse().read().decode().split()
    return int(pid), number


def pid_of(conn: http.client.HTTPConnection) -> int:
    return answer(conn)[0]


def until(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline, pause = time.monotonic() + timeout, threading.Event()
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        pause.wait(0.05)
    pytest.fail(f"not within {timeout}s: {what}")


def answering(port: int, workers: int = 1) -> bool:
    """Do `workers` distinct workers answer fresh connections?"""
    try:
        return len({pid_of(http.client.HTTPConnection("127.0.0.1", port, timeout=2))
                    for _ in range(CONNECTIONS)}) >= workers
    except OSError:
        return False


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = supervisor("tests.reliability.pid_app:app", port)
    try:
        until(lambda: answering(port, 2), "both workers answer")
        yield proc, port
    finally:
        # SIGTERM, so the supervisor stops its workers: killed, it left them serving.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def pool_at_once(port: int) -> list[http.client.HTTPConnection]:
    """CONNECTIONS keep-alive connections whose handshakes all start before any completes, as
    a client's or reverse proxy's pool opens at start."""
    socks = [socket.socket() for _ in range(CONNECTIONS)]
    with selectors.DefaultSelector() as ready:
        for sock in socks:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            ready.register(sock, selectors.EVENT_WRITE)
        while ready.get_map():
            events = ready.select(timeout=5)
            assert events, "connections not established within 5 s"
            for key, _ in events:
                ready.unregister(key.fileobj)
    pool = []
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(5)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.sock = sock
        pool.append(conn)
    return pool


def test_a_pool_of_connections_opened_at_once_reaches_every_worker(
        served: tuple[subprocess.Popen[bytes], int]) -> None:
    """With one shared listening socket the first worker to wake accepted the whole pool (one
    try in four here), and the other cores idled under load."""
    _, port = served
    for _ in range(5):
        pool = pool_at_once(port)
        pids = {pid_of(conn) for conn in pool}
        assert len(pids) == 2
        assert {pid_of(conn) for conn in pool} == pids  # kept alive: each stays on its worker
        for conn in pool:
            conn.close()


def test_a_killed_worker_is_replaced_on_its_socket(
        served: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = served
    pool = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(CONNECTIONS)]
    before = {pid_of(conn) for conn in pool}
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        try:
            pids = {pid_of(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
                    for _ in range(CONNECTIONS)}
        except OSError:
            return False
        return len(pids) == 2 and victim not in pids

    until(replaced, "a new worker answers in place of the killed one")
    # Each worker knows its number (its audit chains are its own), and a replacement takes
    # the number of the worker it replaces.
    numbers = {answer(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
               for _ in range(CONNECTIONS)}
    assert sorted(number for _, number in numbers) == ["0", "1"]


def test_sigterm_stops_the_workers_and_the_supervisor(
        served: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not answering(port)


def test_an_app_that_cannot_start_stops_the_server_instead_of_restarting_forever() -> None:
    proc = supervisor("tests.reliability.no_such_module:app", free_port())
    try:
        assert proc.wait(timeout=60) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
