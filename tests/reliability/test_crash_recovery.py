"""Crash recovery: SIGKILL the server while transactions are in flight, restart, check atomicity.

Principle 5 (a failed transaction leaves nothing behind) and the storage promise that an
acknowledged write survives a crash (SQLite `synchronous=FULL`, PostgreSQL commit). The server runs
as a real `akson serve` subprocess so the kill is a real process death, not a polite shutdown.

Every transaction Bundle carries 10 Patients; each Patient has the bundle's own identifier
(system TX_SYSTEM) and one of its own (system ENTRY_SYSTEM). After the restart:

- every acknowledged (200) transaction has all 10 Patients, findable by search;
- every attempted transaction has all 10 Patients or none (no half-written transaction);
- nothing exists that no client sent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import ServerAuth, fresh_database

TX_SYSTEM = "urn:uuid:6f0c7a8e-0000-4000-8000-00000000c0a5"  # identifies one transaction
ENTRY_SYSTEM = "urn:uuid:6f0c7a8e-0000-4000-8000-00000000e4e7"  # identifies one entry
WRITERS = 8
PER_BUNDLE = 10
KILL_AFTER = 40  # acknowledged transactions before the SIGKILL
STARTUP_TIMEOUT = 60.0
AKSON = Path(sys.executable).parent / "akson"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------- databases


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: a SQLite file, or a PostgreSQL database dropped after."""
    with fresh_database(request.param, tmp_path, "akson_crash") as url:
        yield url


# ---------------------------------------------------------------------------------- server


class ServerProcess:
    """`akson serve --workers 1` as a child process on a free port."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        # The provider's keys in a folder of the test's own, so a test client can get a token.
        self.key_dir = log.parent / "idp-keys"
        env = {**os.environ, "AKSON_DATABASE_URL": database_url,
               "AKSON_IDP_KEY_DIR": str(self.key_dir)}
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [str(AKSON), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self) -> ServerAuth:
        """Tokens of the server's built-in system client (system/*.*)."""
        return ServerAuth(self.url, self.key_dir)

    def wait_healthy(self) -> None:
        """Poll /health until it answers 200; fail fast if the process dies."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        pause = threading.Event()
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"akson serve exited with {self.proc.returncode}:\n{self._tail()}")
                try:
                    if http.get(self.url + "/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                pause.wait(0.05)
        self.kill()
        pytest.fail(f"akson serve was not healthy within {STARTUP_TIMEOUT}s:\n{self._tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log_file.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_file.close()

    def _tail(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-4000:]


# ---------------------------------------------------------------------------------- writers


def transaction_bundle(tag: str) -> dict:
    entries = []
    for i in range(PER_BUNDLE):
        entries.append({
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": TX_SYSTEM, "value": tag},
                               {"system": ENTRY_SYSTEM, "value": f"{tag}-{i}"}],
                "name": [{"family": "Krasj", "given": [f"Nr{i}"]}],
                "birthDate": "1970-01-01",
            },
            "request": {"method": "POST", "url": "Patient"},
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class Writers:
    """WRITERS threads posting transaction Bundles until the server dies or they are told to stop."""

    def __init__(self, url: str, auth: ServerAuth) -> None:
        self.url = url
        self.auth = auth
        self.lock = threading.Lock()
        self.attempted: set[str] = set()
        self.acked: set[str] = set()
        self.refused: list[tuple[str, int, str]] = []  # non-200 answers while the server lived
        self.stop = threading.Event()
        self.enough = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(WRITERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a writer thread hung after the server was killed"

    def _run(self) -> None:
        with httpx.Client(base_url=self.url + "/fhir", timeout=30, auth=self.auth,
                          headers={"Accept": "application/fhir+json"}) as http:
            while not self.stop.is_set():
                tag = uuid.uuid4().hex
                with self.lock:
                    self.attempted.add(tag)
                try:
                    resp = http.post("", json=transaction_bundle(tag))
                except httpx.TransportError:
                    return  # the server died with this request in flight
                with self.lock:
                    if resp.status_code == 200:
                        self.acked.add(tag)
                        if len(self.acked) >= KILL_AFTER:
                            self.enough.set()
                    else:
                        self.refused.append((tag, resp.status_code, resp.text[:500]))
                        self.enough.set()
                        return


# ----------------------------------------------------------------------------------- checks


def all_patients(http: httpx.Client) -> list[dict]:
    """Every live Patient, following `next` links."""
    out: list[dict] = []
    url: str | None = "/Patient?_count=1000"
    while url:
        resp = http.get(url)
        assert resp.status_code == 200, resp.text[:500]
        bundle = resp.json()
        out += [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"),
                   None)
        assert len(out) < 1_000_000
    return out


def identifier(patient: dict, system: str) -> str:
    values = [i["value"] for i in patient.get("identifier", []) if i.get("system") == system]
    assert len(values) == 1, patient
    return str(values[0])


def test_sigkill_mid_stream_keeps_transactions_whole(crash_db: str, tmp_path: Path) -> None:
    started = time.monotonic()
    env = {**os.environ, "AKSON_DATABASE_URL": crash_db}
    subprocess.run([str(AKSON), "db", "upgrade"], env=env, check=True, capture_output=True,
                   timeout=120)
    log = tmp_path / "server.log"

    first = ServerProcess(crash_db, log)
    try:
        first.wait_healthy()
        writers = Writers(first.url, first.auth())
        writers.start()
        assert writers.enough.wait(timeout=120), "writers made no progress"
        first.kill()  # SIGKILL: no shutdown hooks, no final commit, connections just vanish
    finally:
        first.stop()
    writers.join()

    assert not writers.refused, f"the live server refused transactions: {writers.refused[:3]}"
    attempted, acked = writers.attempted, writers.acked
    assert len(acked) >= KILL_AFTER
    # Each writer always has a request outstanding, so some were cut off by the kill.
    assert len(attempted) > len(acked), "no request was in flight when the server was killed"

    second = ServerProcess(crash_db, log)
    try:
        second.wait_healthy()
        with httpx.Client(base_url=second.url + "/fhir", timeout=30, auth=second.auth(),
                          headers={"Accept": "application/fhir+json"}) as http:
            patients = all_patients(http)
            by_tx: dict[str, set[str]] = {}
            for patient in patients:
                by_tx.setdefault(identifier(patient, TX_SYSTEM), set()).add(
                    identifier(patient, ENTRY_SYSTEM))

            unknown = set(by_tx) - attempted
            assert not unknown, f"{len(unknown)} transactions exist that no writer sent"
            partial = {tag: len(entries) for tag, entries in by_tx.items()
                       if len(entries) != PER_BUNDLE}
            assert not partial, f"half-written transactions after the crash: {partial}"
            for tag, entries in by_tx.items():
                assert entries == {f"{tag}-{i}" for i in range(PER_BUNDLE)}
            lost = acked - set(by_tx)
            assert not lost, f"{len(lost)} acknowledged transactions were lost in the crash"
            complete = set(by_tx)
            assert len(patients) == PER_BUNDLE * len(complete)
            assert acked <= complete <= attempted
            # In-flight transactions may have committed just before the kill; no more than that.
            assert len(complete) - len(acked) <= WRITERS

            # The search indexes were committed with the rows: each acknowledged transaction's
            # Patients are found through the identifier index, with an accurate total.
            for tag in sorted(acked):
                found = http.get("/Patient", params={"identifier": f"{TX_SYSTEM}|{tag}",
                                                     "_total": "accurate", "_count": "50"})
                assert found.status_code == 200, found.text[:500]
                assert found.json().get("total") == PER_BUNDLE, tag

            # The database is writable after recovery.
            again = http.post("", json=transaction_bundle("after-restart"))
            assert again.status_code == 200, again.text[:500]
    finally:
        second.stop()
    assert time.monotonic() - started < 240
