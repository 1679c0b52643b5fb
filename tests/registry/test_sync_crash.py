"""Crash-resume: SIGKILL `akson registry sync` mid-feed, restart it, and get a clean run's state.

The consumer runs as a real subprocess so the kill is a real process death (no shutdown hooks,
no final commit). The test polls the recorded position and kills once it has passed a third of
the feed. Afterwards:

- at the kill the store is at a clean event boundary: every person's Patient is exactly the
  latest of their records at or below the recorded position;
- the restarted run handles each remaining event exactly once (its applied + rejected counts
  are the events above that position) and ends at the last sequence;
- the final state equals an uninterrupted run's: every person once, with the latest record,
  the same versions, the same rejections (none repeated, not even of the line with no sequence).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.registry.test_sync import (
    event,
    feed_events,
    nins,
    patients_by_nin,
    person,
    rejections,
    run_sync,
    state,
    street,
    write_feed,
)
from tests.registry.test_sync_state import fresh_database, open_store

from akson.registry.feed import FileFeed
from akson.store import sync_state
from akson.store.migrate import upgrade

PERSONS = 700
VERSIONS = 3  # each person's records are spread over the feed (shuffled per round)
KILL_AT = 700  # position to pass before the SIGKILL
TIMEOUT = 180.0
AKSON = Path(sys.executable).parent / "akson"


def sync_command(path: Path) -> list[str]:
    """`akson registry sync` once the lead has wired it into the CLI; the module until then."""
    from akson.cli import main

    args = ["--file", str(path), "--once", "--no-progress"]
    registry = getattr(main, "commands", {}).get("registry")
    if "sync" in getattr(registry, "commands", {}):
        return [str(AKSON), "registry", "sync", *args]
    return [sys.executable, "-m", "akson.registry_sync_cli", *args]


def crash_feed() -> list[Any]:
    """PERSONS × VERSIONS good events plus bad ones before and after the kill point."""
    events: list[Any] = feed_events(nins(PERSONS), VERSIONS, shuffle=11)
    bad_nin = events[0]["nin"][:-1] + str((int(events[0]["nin"][-1]) + 1) % 10)
    events[99] = event(100, person(bad_nin, 1))  # rejected before the kill
    events[1499]["record"] = None  # rejected after the kill
    events.insert(1800, b'{"sequence": 1801, "record": {')  # no sequence can be read: unplaced
    return events


def expected_at(events: list[Any], position: int) -> dict[str, str]:
    """Each person's street after applying the good events at or below `position`."""
    people = set(nins(PERSONS))
    out: dict[str, str] = {}
    for ev in events:
        if isinstance(ev, dict) and ev["sequence"] <= position and ev["record"] \
                and ev["nin"] in people:
            out[ev["nin"]] = ev["record"]["address"]["lines"][0]
    return out


@pytest.fixture(scope="module")
def feed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_feed(tmp_path_factory.mktemp("feed") / "events.jsonl", crash_feed())


@pytest.fixture(scope="module")
def clean_run(feed_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run's outcome (SQLite, in-process): the reference for both backends."""
    with fresh_database("sqlite", tmp_path_factory.mktemp("clean"), "clean") as url:
        upgrade(url)
        result = run_sync(url, FileFeed(feed_file))
        return {"result": result, "state": state(url), "rejections": rejections(url)}


class PositionPoller:
    """Reads the recorded position through one open database, from the test's own loop."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.store_cm = open_store(url)
        self.store = self.loop.run_until_complete(self.store_cm.__aenter__())

    def position(self) -> int:
        async def read() -> int:
            async with self.store.session(write=False) as s:
                return await sync_state.position(s.tx, "freg")

        return self.loop.run_until_complete(read())

    def close(self) -> None:
        self.loop.run_until_complete(self.store_cm.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "crash") as url:
        upgrade(url)
        yield url


def test_sigkill_mid_feed_then_restart_equals_a_clean_run(
        crash_url: str, feed_file: Path, clean_run: dict[str, Any], tmp_path: Path) -> None:
    events = crash_feed()
    last = max(e["sequence"] for e in events if isinstance(e, dict))
    env = {**os.environ, "AKSON_DATABASE_URL": crash_url}
    log = tmp_path / "sync.log"

    with log.open("ab") as out:
        proc = subprocess.Popen(sync_command(feed_file), env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    poller = PositionPoller(crash_url)
    try:
        pause = threading.Event()
        deadline = time.monotonic() + TIMEOUT
        while poller.position() < KILL_AT:
            assert proc.poll() is None, f"sync exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "sync made no progress"
            pause.wait(0.02)  # poll interval, not a wait for something to happen
        proc.send_signal(signal.SIGKILL)  # no shutdown hooks, no final commit
        assert proc.wait(timeout=30) == -signal.SIGKILL
        at_kill = poller.position()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        poller.close()
    assert KILL_AT <= at_kill < last, "the kill did not land mid-feed"

    # A clean event boundary: each Patient is exactly its latest record at or below the position.
    patients = patients_by_nin(state(crash_url))
    assert {nin: street(p) for nin, p in patients.items()} == expected_at(events, at_kill)

    done = subprocess.run(sync_command(feed_file), env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = re.search(r"Applied (\d+), rejected (\d+), skipped \d+; position (\d+)\.",
                        done.stdout)
    assert summary, done.stdout[-2000:]
    applied, rejected, final_position = map(int, summary.groups())
    remaining = sum(1 for e in events if isinstance(e, dict) and e["sequence"] > at_kill)
    unplaced = 1  # the line with no sequence, which sits after the kill point
    assert (applied + rejected, final_position) == (remaining + unplaced, last)

    final = state(crash_url)
    assert patients_by_nin(final) == patients_by_nin(clean_run["state"])
    assert {nin: street(p) for nin, p in patients_by_nin(final).items()} == \
        expected_at(events, last)  # the latest good record of each person
    assert len(patients_by_nin(final)) == PERSONS  # every person once
    assert _versions(final) == _versions(clean_run["state"])  # nothing applied twice
    assert rejections(crash_url) == clean_run["rejections"]
    assert [seq for seq, _ in clean_run["rejections"]] == [100, 1500, None]
    assert clean_run["result"].position == last


def _versions(versions: list[tuple[str, str, int, bool, Any]]) -> list[tuple[str, int]]:
    """Each resource's version numbers, keyed by type (ids are random per run), sorted."""
    return sorted((res_type, version) for res_type, _, version, _, _ in versions)
