"""The shared replay guard: a DPoP proof accepted by one server process is refused by every
other on the same database (RFC 9449 §11.1), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from akson.store.replay_guard import DatabaseReplayCache
from tests.conftest import BACKENDS, fresh_database

NOW = 1_800_000_000.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_key_is_accepted_once_across_processes_until_it_expires(backend: str,
                                                                   tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "akson_replay", migrate=True) as url:
        worker_a, worker_b = DatabaseReplayCache(url), DatabaseReplayCache(url)
        try:
            assert worker_a.add("proof-1", NOW + 60, NOW) is True
            assert worker_b.add("proof-1", NOW + 60, NOW + 1) is False  # replayed elsewhere
            assert worker_a.add("proof-1", NOW + 60, NOW + 2) is False  # and here
            assert worker_b.add("proof-2", NOW + 60, NOW + 2) is True
            # Once a proof could no longer pass its time check, its key may be used again.
            assert worker_b.add("proof-1", NOW + 200, NOW + 61) is True
            assert worker_a.add("proof-1", NOW + 200, NOW + 62) is False
        finally:
            worker_a.close()
            worker_b.close()


def test_an_unreachable_database_refuses_rather_than_risks_a_replay(tmp_path: Path) -> None:
    guard = DatabaseReplayCache(f"sqlite:///{tmp_path / 'missing-dir' / 'none.db'}")
    assert guard.add("proof-1", NOW + 60, NOW) is False
