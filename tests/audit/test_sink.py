"""The gate's audit sink over the chained log (akson.access.audit.ChainedAuditSink), on SQLite and
PostgreSQL: reads in their own transaction, writes in theirs, denials surviving a rollback."""

from __future__ import annotations

import orjson
import pytest

from akson.access.audit import ChainedAuditSink, Source, citizen_view, entry_for_intent
from akson.access.gate import AuditIntent
from akson.store import audit_log
from tests.audit.conftest import opened, run

T0 = 1_760_000_000_000_000
SOURCE = Source(site="akson-test-node")


def intent(action: str, outcome: str = "allowed", *, patients: tuple[str, ...] = ("pat-1",),
           purpose: str | None = "TREAT", break_glass: bool = False,
           reason: str | None = None) -> AuditIntent:
    return AuditIntent(
        action=action, outcome=outcome, at=T0, kind="practitioner", subject="sub-1",
        client_id="epj", name="Kari Lege", hpr_number="9144897", orgnr_parent="974589095",
        orgnr_child="874716782", purpose=purpose, break_glass=break_glass, user_selected=False,
        reason=reason, policy_reason="TREAT: GP list", resource_type="Observation",
        resource_ids=("o1",), patients=patients)


@pytest.mark.parametrize(("action", "code", "subtype"), [
    ("read", "R", "read"), ("search", "R", "search-type"), ("history", "R", "history-instance"),
    ("everything", "E", "$everything"), ("create", "C", "create"), ("update", "U", "update"),
    ("delete", "D", "delete"),
])
def test_gate_intents_map_to_actions_and_subtypes(action: str, code: str, subtype: str) -> None:
    entry = entry_for_intent(intent(action), source=SOURCE)
    assert (entry.action, entry.subtype, entry.outcome) == (code, subtype, "0")
    assert entry.patients == ("pat-1",) and entry.agent == "hpr:9144897"
    event = orjson.loads(entry.content)
    assert {"reference": "Observation/o1"} in [e.get("what") for e in event["entity"]]


def test_a_denial_is_a_minor_failure_and_break_glass_stays_plain() -> None:
    assert entry_for_intent(intent("read", "denied"), source=SOURCE).outcome == "4"
    btg = entry_for_intent(intent("read", purpose="BTG", break_glass=True, reason="akutt"),
                           source=SOURCE)
    line = citizen_view(audit_log.AuditRecord(0, 1, btg, bytes(32), bytes(32)))
    assert line.break_glass and line.reason == "akutt" and line.who == "Kari Lege"


def test_the_sink_records_reads_alone_writes_in_their_transaction_and_denials_after(
        audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            sink = ChainedAuditSink(log, SOURCE)
            await sink.record(intent("read", patients=("r",)))  # a read session: own transaction
            with pytest.raises(RuntimeError):
                async with db.transaction(write=True) as tx:
                    await sink.record(intent("create", patients=("w",)), tx)
                    await sink.record(intent("update", "denied", patients=("d",)), tx)
                    raise RuntimeError("403: the transaction rolls back")
            await sink.flush()
            async with db.transaction(write=False) as tx:
                assert len(await audit_log.patient_log(tx, "r")) == 1
                assert await audit_log.patient_log(tx, "w") == []  # rolled back with its write
                denied = await audit_log.patient_log(tx, "d")
            assert [r.entry.outcome for r in denied] == ["4"]  # survived the rollback
            assert (await audit_log.verify(db, log.key)).ok

    run(go())

