"""Tampering with the audit log through raw SQL — as an attacker with database access, after
dropping the append-only triggers — is detected by `verify` and by `akson audit verify`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from akson.store import audit_log
from akson.store.audit_log import AuditEntry, record_hash
from akson.store.database import pg_conninfo
from tests.audit.conftest import KEY, opened, run

T0 = 1_760_000_000_000_000
EVENTS = 6  # on one chain: seq 1..6


def entry(n: int) -> AuditEntry:
    body = orjson.dumps({"resourceType": "AuditEvent", "n": n,
                         "agent": [{"name": "Kari Lege", "requestor": True}]})
    return AuditEntry(content=body, recorded=T0 + n, action="R", subtype="read", purpose="TREAT",
                      org="974589095", agent="hpr:9144897", patients=(f"patient-{n}",))


def fill(url: str, key: bytes = KEY) -> None:
    async def go() -> None:
        async with opened(url, chains=1) as (db, _):
            log = audit_log.AuditLog(db, key=key, chains=1)
            for n in range(1, EVENTS + 1):
                await log.record(entry(n), route=f"r{n}")
    run(go())


def attack(url: str, *statements: tuple[str, Sequence[Any]]) -> None:
    """Run raw SQL with the append-only triggers dropped first."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        for table in ("audit_event", "audit_patient"):  # audit_patient: SQLite's only
            for verb in ("update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        for sql, params in statements:
            conn.execute(sql.replace("%s", "?"), params)
        conn.close()
        return
    import psycopg

    with psycopg.connect(pg_conninfo(url), autocommit=True) as pg:
        pg.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        pg.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        for sql, params in statements:
            pg.execute(sql, params)


def fetch(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
        conn.close()
        return rows
    import psycopg

    with psycopg.connect(pg_conninfo(url)) as pg:
        return pg.execute(sql, params).fetchall()


def verify(url: str, anchors: dict[int, tuple[int, bytes]] | None = None) -> set[tuple[int, str]]:
    async def go() -> audit_log.VerifyReport:
        async with opened(url) as (db, _):
            return await audit_log.verify(db, KEY, anchors=anchors)
    return {(p.seq, p.kind) for p in run(go()).problems}


def test_an_untouched_log_verifies(audit_url: str) -> None:
    fill(audit_url)
    assert verify(audit_url) == set()


def test_an_edited_json_is_detected(audit_url: str) -> None:
    fill(audit_url)
    forged = orjson.dumps({"resourceType": "AuditEvent", "n": 3, "agent": []})
    attack(audit_url, ("UPDATE audit_event SET content = %s WHERE seq = 3", (forged,)))
    assert verify(audit_url) == {(3, "hash-mismatch")}


def test_an_edited_hash_is_detected(audit_url: str) -> None:
    fill(audit_url)
    attack(audit_url, ("UPDATE audit_event SET hash = %s WHERE seq = 4", (bytes(32),)))
    assert (4, "hash-mismatch") in verify(audit_url)


def test_an_edited_patient_id_is_detected(audit_url: str) -> None:
    fill(audit_url)
    other = "'[\"someone-else\"]'" if audit_url.startswith("sqlite") else "'{someone-else}'"
    attack(audit_url, (f"UPDATE audit_event SET patients = {other} WHERE seq = 2", ()))
    problems = verify(audit_url)
    # SQLite's patient index still names the old patient: it disagrees with the row, too.
    assert (2, "hash-mismatch") in problems and problems <= {(2, "hash-mismatch"),
                                                               (2, "patients-mismatch")}


def test_an_edited_or_deleted_patient_index_row_is_detected(sqlite_audit_url: str) -> None:
    """SQLite finds a citizen's events through `audit_patient` (ADR 0015): a row hidden from
    it, or pointing another patient at the event, is caught as well."""
    fill(sqlite_audit_url)
    attack(sqlite_audit_url,
           ("UPDATE audit_patient SET patient_id = 'someone-else' WHERE seq = 2", ()),
           ("DELETE FROM audit_patient WHERE seq = 3", ()))
    assert verify(sqlite_audit_url) == {(2, "patients-mismatch"), (3, "patients-mismatch")}


def test_a_deleted_record_is_detected(audit_url: str) -> None:
    fill(audit_url)
    attack(audit_url, ("DELETE FROM audit_event WHERE seq = 3", ()))
    assert verify(audit_url) == {(4, "gap")}


def test_two_swapped_records_are_detected(audit_url: str) -> None:
    fill(audit_url)
    attack(audit_url,
           ("UPDATE audit_event SET seq = -1 WHERE seq = 2", ()),
           ("UPDATE audit_event SET seq = 2 WHERE seq = 3", ()),
           ("UPDATE audit_event SET seq = 3 WHERE seq = -1", ()))
    problems = verify(audit_url)
    assert (2, "hash-mismatch") in problems and (3, "hash-mismatch") in problems


def test_a_rehashed_tail_is_caught_by_the_signed_head(audit_url: str) -> None:
    """An attacker who edits a record and recomputes every later hash (no secret needed for
    SHA-256) still cannot sign the chain head."""
    fill(audit_url)
    rows = fetch(audit_url, "SELECT seq, content, prev_hash FROM audit_event ORDER BY seq")
    statements: list[tuple[str, Sequence[Any]]] = []
    prev = bytes(rows[1][2])
    for seq, content, _ in rows[1:]:
        body = content if seq != 2 else orjson.dumps({"resourceType": "AuditEvent", "n": 2})
        digest = record_hash(0, seq, prev, replace(entry(seq), content=bytes(body)))
        statements.append(("UPDATE audit_event SET content = %s, prev_hash = %s, hash = %s "
                           "WHERE seq = %s", (bytes(body), prev, digest, seq)))
        prev = digest
    attack(audit_url, *statements)
    assert verify(audit_url) == {(EVENTS, "checkpoint-mismatch")}
    # ...and moving the head along without the key breaks its signature.
    attack(audit_url, ("UPDATE audit_chain SET hash = %s", (prev,)))
    assert verify(audit_url) == {(EVENTS, "checkpoint-invalid")}


def test_a_truncated_tail_is_detected(audit_url: str) -> None:
    fill(audit_url)
    attack(audit_url, ("DELETE FROM audit_event WHERE seq > 4", ()))
    assert verify(audit_url) == {(4, "truncated")}
    # Pointing the head at the new tail needs the key: a forged head is caught.
    h4 = fetch(audit_url, "SELECT hash FROM audit_event WHERE seq = 4")[0][0]
    attack(audit_url, ("UPDATE audit_chain SET seq = 4, hash = %s", (bytes(h4),)))
    assert verify(audit_url) == {(4, "checkpoint-invalid")}


def test_a_truncation_behind_a_restored_head_is_caught_by_anchors(audit_url: str) -> None:
    """The documented limit of the in-database checkpoint, and its remedy: an old head copied
    back from a backup verifies, but heads kept outside the database do not match."""
    fill(audit_url)
    old = fetch(audit_url, "SELECT seq, hash, mac FROM audit_chain")[0]  # the attacker's backup
    assert old[0] == EVENTS

    async def more() -> dict[int, tuple[int, bytes]]:
        async with opened(audit_url, chains=1) as (db, log):
            await log.record(entry(EVENTS + 1), route="late")
            return await audit_log.heads(db)  # exported off-site by the operator

    anchors = run(more())
    attack(audit_url, (f"DELETE FROM audit_event WHERE seq = {EVENTS + 1}", ()),
           ("UPDATE audit_chain SET seq = %s, hash = %s, mac = %s",
            (old[0], bytes(old[1]), bytes(old[2]))))
    assert verify(audit_url) == set()
    assert verify(audit_url, anchors) == {(EVENTS, "truncated")}


def test_a_deleted_chain_head_is_detected(audit_url: str) -> None:
    fill(audit_url)
    attack(audit_url, ("DELETE FROM audit_chain", ()))
    assert verify(audit_url) == {(EVENTS, "head-missing")}


def test_audit_verify_command_exits_1_and_names_chain_and_sequence(
        audit_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from akson.audit_cli import audit, audit_key

    monkeypatch.setenv("AKSON_DATABASE_URL", audit_url)
    monkeypatch.setenv("AKSON_SECRET_KEY", "cli test secret")
    fill(audit_url, key=audit_key(audit_url))
    runner = CliRunner()
    ok = runner.invoke(audit, ["verify"])
    assert ok.exit_code == 0, ok.output
    assert f"intact: 1 chains, {EVENTS} events" in ok.output
    heads = runner.invoke(audit, ["heads"])
    assert heads.exit_code == 0 and '"seq": 6' in heads.output

    forged = orjson.dumps({"resourceType": "AuditEvent", "n": 5})
    attack(audit_url, ("UPDATE audit_event SET content = %s WHERE seq = 5", (forged,)))
    bad = runner.invoke(audit, ["verify"])
    assert bad.exit_code == 1
    assert "chain 0 seq 5: record altered" in bad.output
    # Positions only: no patient id, no name, no content.
    for personal in ("patient-5", "Kari", "AuditEvent"):
        assert personal not in bad.output


def test_audit_verify_on_a_database_without_the_audit_log_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from akson.audit_cli import audit

    monkeypatch.setenv("AKSON_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("AKSON_SECRET_KEY", "cli test secret")
    result = CliRunner().invoke(audit, ["verify"])
    assert result.exit_code == 2 and "akson db upgrade" in result.output


def test_audit_verify_with_saved_heads_catches_a_restored_old_head(
        audit_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from akson.audit_cli import audit, audit_key

    monkeypatch.setenv("AKSON_DATABASE_URL", audit_url)
    monkeypatch.setenv("AKSON_SECRET_KEY", "cli test secret")
    key = audit_key(audit_url)
    fill(audit_url, key=key)
    old = fetch(audit_url, "SELECT seq, hash, mac FROM audit_chain")[0]

    async def one_more() -> None:
        async with opened(audit_url, chains=1) as (db, _):
            await audit_log.AuditLog(db, key=key, chains=1).record(entry(7), route="x")
    run(one_more())
    runner = CliRunner()
    saved = tmp_path / "heads.json"
    saved.write_text(runner.invoke(audit, ["heads"]).output)
    attack(audit_url, ("DELETE FROM audit_event WHERE seq = 7", ()),
           ("UPDATE audit_chain SET seq = %s, hash = %s, mac = %s",
            (old[0], bytes(old[1]), bytes(old[2]))))
    assert runner.invoke(audit, ["verify"]).exit_code == 0  # the limit of in-database heads
    caught = runner.invoke(audit, ["verify", "--anchors", str(saved)])
    assert caught.exit_code == 1 and "chain 0 seq 6: records missing at the end" in caught.output
    saved.write_text("[1, 2]")
    assert runner.invoke(audit, ["verify", "--anchors", str(saved)]).exit_code == 2
