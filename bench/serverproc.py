"""Benchmark database lifecycle, server subprocess control and /proc RSS sampling."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH_DB = "akson_bench"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class PgTarget:
    """Where the local PostgreSQL lives."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"


def _pg_admin(pg: PgTarget, sql: str) -> None:
    import psycopg

    with psycopg.connect(pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def pg_version(pg: PgTarget) -> tuple[str, str]:
    """(short, full) PostgreSQL server version strings."""
    import psycopg

    with psycopg.connect(pg.conninfo("postgres")) as conn:
        full = conn.execute("SELECT version()").fetchone()
        short = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {short[0] if short else '?'}", str(full[0] if full else "unknown")


@contextlib.contextmanager
def bench_database(kind: str, pg: PgTarget, name: str = BENCH_DB) -> Iterator[str]:
    """Create a fresh benchmark database, yield its URL, drop it afterwards."""
    if kind == "postgres":
        _pg_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _pg_admin(pg, f'CREATE DATABASE "{name}"')
        try:
            yield pg.url(name)
        finally:
            _pg_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        with tempfile.TemporaryDirectory(prefix="akson-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / (name + '.db')}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_upgrade(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([*cmd, "db", "upgrade"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"db upgrade failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _health_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            request = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode())
            data = sock.recv(64)
    except OSError:
        return False
    return data.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


class ServerProcess:
    """The server under test, started in its own process group."""

    def __init__(self, cmd: list[str], env: dict[str, str], host: str, port: int, workers: int):
        self.host, self.port = host, port
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="akson-bench-server-", suffix=".log", delete=False
        )
        argv = [*cmd, "serve", "--host", host, "--port", str(port), "--workers", str(workers)]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, chars: int = 4000) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-chars:]

    def wait_healthy(self, attempts: int = 600, interval: float = 0.1) -> float:
        """Poll GET /health a bounded number of times; return seconds until healthy."""
        start = time.perf_counter()
        for _ in range(attempts):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if _health_ok(self.host, self.port):
                return time.perf_counter() - start
            time.sleep(interval)
        raise RuntimeError(f"server not healthy after {attempts} attempts:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stray workers left in the group
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def process_tree(root: int) -> list[int]:
    """The pid and all its descendants, from /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes `pids` have used (from /proc/<pid>/stat); a pid
    that has gone counts nothing."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def tree_rss_bytes(root: int) -> int:
    """Sum of resident set sizes of a process tree (from /proc/<pid>/statm)."""
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


class RssSampler:
    """Background thread sampling the server tree's RSS; tracks overall and per-phase peaks."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root, self.interval = root, interval
        self.peak = self.phase_peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        rss = tree_rss_bytes(self.root)
        self.last = rss
        self.peak = max(self.peak, rss)
        self.phase_peak = max(self.phase_peak, rss)
        return rss

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def new_phase(self) -> None:
        self.phase_peak = self.last

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
