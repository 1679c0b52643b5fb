"""Migration 0019 (ADR 0015): records written before it keep verifying and keep their patients,
and the way back restores `audit_patient`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from akson.store import audit_log
from akson.store.audit_log import ZERO_HASH, AuditEntry, record_hash
from akson.store.database import sqlalchemy_url
from akson.store.migrate import downgrade, upgrade
from tests.audit.conftest import KEY, opened, run
from tests.conftest import fresh_database

T0 = 1_760_000_000_000_000
PATIENTS = [("p1",), ("p2", "p1"), ()]  # an event may concern several patients, or none


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0018(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "akson_mig19") as url:
        upgrade(url, "0018")
        yield url


def _write_as_0018(url: str) -> None:
    """Three records on chain 0 as 0018 stored them: ids in `audit_patient` rows only."""
    engine = sa.create_engine(sqlalchemy_url(url))
    prev = ZERO_HASH
    with engine.begin() as conn:
        for seq, patients in enumerate(PATIENTS, start=1):
            entry = AuditEntry(content=b'{"n":%d}' % seq, recorded=T0 + seq, action="R",
                               subtype="read", purpose="TREAT", org="974589095",
                               agent="hpr:9144897", patients=tuple(sorted(patients)))
            digest = record_hash(0, seq, prev, entry)
            conn.execute(sa.text(
                "INSERT INTO audit_event (chain, seq, recorded, action, subtype, outcome, purpose,"
                " user_selected, org, unit, agent, content, prev_hash, hash) VALUES (0, :seq, :r,"
                " 'R', 'read', '0', 'TREAT', false, '974589095', NULL, 'hpr:9144897', :c, :ph,"
                " :h)"), {"seq": seq, "r": entry.recorded, "c": entry.content, "ph": prev,
                          "h": digest})
            for patient in patients:
                conn.execute(sa.text("INSERT INTO audit_patient VALUES (0, :seq, :p, :r)"),
                             {"seq": seq, "p": patient, "r": entry.recorded})
            prev = digest
        conn.execute(sa.text("INSERT INTO audit_chain VALUES (0, 3, :h, :mac, 0)"),
                     {"h": prev, "mac": audit_log._mac(KEY, 0, 3, prev)})
    engine.dispose()


def test_records_from_before_keep_their_patients_and_verify(at_0018: str) -> None:
    _write_as_0018(at_0018)
    upgrade(at_0018)

    async def after() -> None:
        async with opened(at_0018) as (db, _):
            report = await audit_log.verify(db, KEY)
            assert report.ok and report.events == 3, report.problems
            async with db.transaction(write=False) as tx:
                assert [r.seq for r in await audit_log.patient_log(tx, "p1")] == [2, 1]
                assert [r.seq for r in await audit_log.patient_log(tx, "p2")] == [2]
                two = await audit_log.read(tx, 0, 2)
                assert two is not None and two.entry.patients == ("p1", "p2")
    run(after())
    if not at_0018.startswith("sqlite"):  # a small pending list: a full one is merged by a write
        engine = sa.create_engine(sqlalchemy_url(at_0018))
        with engine.connect() as conn:
            options = conn.execute(sa.text("SELECT reloptions FROM pg_class "
                                           "WHERE relname = 'ix_audit_event_patients'")).scalar()
        engine.dispose()
        assert options == ["gin_pending_list_limit=512"]

    downgrade(at_0018, "0018")
    engine = sa.create_engine(sqlalchemy_url(at_0018))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT seq, patient_id FROM audit_patient "
                                    "ORDER BY seq, patient_id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "p1"), (2, "p1"), (2, "p2")]
