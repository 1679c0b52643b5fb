"""Run the ASGI app in N worker processes, each accepting on a listening socket of its own.

Why not uvicorn's `--workers`: its workers share one listening socket, and a worker that wakes
for a new connection accepts every connection waiting. A client or reverse proxy that opens its
keep-alive pool at once (the usual case) then lands on one worker, and the other cores idle —
in `bench/http_bench.py` one of two workers did all the work. Here each worker binds its own
socket with `SO_REUSEPORT`, so the kernel spreads new connections over the workers.

Each worker learns its number (0, 1, …) from `AKSON_WORKER` in its environment (`worker_index`):
the app gives each worker audit chains of its own (akson.store.audit_log), so two workers'
writes never wait for each other's commits on a chain.

A worker that dies is started again on the same socket (a socket without a worker would hold
the connections the kernel gives it), unless it failed while starting (the app cannot start, so
every restart would fail alike): then every worker is stopped and `run` returns False.
SIGINT/SIGTERM stop every worker and return True.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from multiprocessing.context import SpawnProcess

from uvicorn import Config, Server
from uvicorn._subprocess import get_subprocess
from uvicorn.config import STARTUP_FAILURE

#: The environment variable that tells a worker process its number.
WORKER_ENV = "AKSON_WORKER"


def worker_index() -> int | None:
    """This process's worker number when `Workers` started it, else None."""
    value = os.environ.get(WORKER_ENV, "")
    return int(value) if value.isascii() and value.isdigit() else None


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, so several can listen on one port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class Workers:
    """N uvicorn servers for `config`, one process and one SO_REUSEPORT socket each."""

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        first = reuse_port_socket(config.host, config.port)
        port = first.getsockname()[1]  # the port the first bound, if 0 was asked for
        self.sockets = [first] + [reuse_port_socket(config.host, port)
                                  for _ in range(workers - 1)]
        self.processes: list[SpawnProcess] = []
        self.stop = threading.Event()

    def _start(self, index: int) -> SpawnProcess:
        server = Server(config=self.config)
        process = get_subprocess(self.config, server.run, [self.sockets[index]])
        os.environ[WORKER_ENV] = str(index)  # a spawned process starts with this environment
        try:
            process.start()
        finally:
            del os.environ[WORKER_ENV]
        return process

    def run(self) -> bool:
        """Start the workers and keep them running until a signal (True) or a worker that
        failed to start (False); then stop them all."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        self.processes = [self._start(i) for i in range(len(self.sockets))]
        try:
            while not self.stop.wait(0.5):
                for index, process in enumerate(self.processes):
                    if process.is_alive():
                        continue
                    process.join()
                    if process.exitcode == STARTUP_FAILURE:
                        return False
                    self.processes[index] = self._start(index)
            return True
        finally:
            for process in self.processes:
                process.terminate()
            for process in self.processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
            for sock in self.sockets:
                sock.close()
