"""The gate's audit sink over the chained log (akson.access.audit.ChainedAuditSink), on SQLite and
PostgreSQL: reads in their own transaction, writes in theirs, denials surviving a rollback."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import orjson
import pytest

from akson.access.audit import (
    _INTENT_ACTIONS,
    ChainedAuditSink,
    GroupCommit,
    PatientRef,
    Source,
    _intent_principal,
    audit_entry,
    audit_event,
    citizen_view,
    entry_for_intent,
    routine,
)
from akson.access.gate import AuditIntent
from akson.store import audit_log
from akson.store.database import Database
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
    event = audit_event(entry)
    assert {"reference": "Observation/o1"} in [e.get("what") for e in event["entity"]]


@pytest.mark.parametrize("action", ["read", "search", "history", "everything", "create"])
@pytest.mark.parametrize("kind", ["practitioner", "system"])
def test_an_intents_entry_is_the_one_audit_entry_makes(action: str, kind: str) -> None:
    """`entry_for_intent` builds its entry directly (one per access); it is the entry the
    general `audit_entry` makes from the same facts, byte for byte."""
    for patients, ids, rtype in ((("b", "a", "a"), ("o1", "o2"), "Observation"), ((), (), None),
                                 (("a",), ("Patient/a", "Observation/o"), None)):
        it = replace(intent(action, patients=patients), kind=kind, resource_ids=ids,
                     resource_type=rtype)
        who = _intent_principal(it)
        code, subtype = _INTENT_ACTIONS[action]
        if subtype == "history":
            subtype = "history-instance" if ids else "history-type" if rtype else "history-system"
        expected = audit_entry(who, action=code, subtype=subtype, recorded=it.at, source=SOURCE,
                               patients=[PatientRef(p) for p in patients],
                               resources=[f"{rtype}/{i}" if rtype else i for i in ids])
        assert entry_for_intent(it, source=SOURCE, principal=who) == expected


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



# ------------------------------------------------------------------ routine reads' records


def _entry(subtype: str = "read", outcome: str = "0", purpose: str | None = "TREAT", *,
           user_selected: bool = False, patient: str = "p") -> audit_log.AuditEntry:
    return audit_log.AuditEntry(content=orjson.dumps({"subtype": subtype, "patient": patient}),
                                recorded=T0, action="R", subtype=subtype, outcome=outcome,
                                purpose=purpose, user_selected=user_selected, agent="hpr:1",
                                patients=(patient,))


def test_only_allowed_routine_reads_may_be_recorded_after_their_response() -> None:
    for subtype in ("read", "vread", "search-type", "history-instance", "$everything"):
        assert routine(_entry(subtype))
    assert routine(_entry(purpose=None))  # a system client
    assert not routine(_entry(outcome="4"))  # a denial
    assert not routine(_entry(purpose="BTG"))  # break-the-glass
    assert not routine(_entry(user_selected=True))  # a self-declared care relationship
    for subtype in ("create", "update", "delete", "export", "login", "break-glass"):
        assert not routine(_entry(subtype))


async def _logged(db: Database, patient: str) -> list[str]:
    async with db.transaction(write=False) as tx:
        return [r.entry.subtype for r in await audit_log.patient_log(tx, patient)]


def test_a_routine_record_is_written_after_the_call_returns_and_settle_waits_for_it(
        audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            group = GroupCommit(log, behind=3600.0)  # nothing is written unless asked
            await group.append([_entry()], wait=False)
            assert await _logged(db, "p") == []  # the response need not wait for it
            await group.settle()
            assert await _logged(db, "p") == ["read"]
            await group.append([_entry("search-type")], wait=False)
            await group.append([_entry("read", "4")])  # a denial waits, and takes it along
            async with db.transaction(write=False) as tx:
                assert [(r.entry.subtype, r.entry.outcome) for r in reversed(
                    await audit_log.patient_log(tx, "p"))] == [
                    ("read", "0"), ("search-type", "0"), ("read", "4")]
            await group.append([_entry("vread")], wait=False)
            await group.close()  # shutdown writes what is pending
            assert len(await _logged(db, "p")) == 4
            assert (await audit_log.verify(db, log.key)).ok

    run(go())


def test_without_a_delay_every_record_is_durable_when_the_call_returns(audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            await GroupCommit(log, behind=0.0).append([_entry()], wait=False)
            assert await _logged(db, "p") == ["read"]

    run(go())


class _Unavailable(audit_log.AuditLog):
    """The log while its database refuses writes: the first `failures` appends fail."""

    def __init__(self, log: audit_log.AuditLog, failures: int) -> None:
        super().__init__(log.db, key=log.key, chains=log.chains)
        self.failures = failures

    async def record_many(self, entries: Sequence[audit_log.AuditEntry], *,
                          route: str | None = None, chain: int | None = None
                          ) -> tuple[list[audit_log.AuditRecord], bool]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is not reachable")
        return await super().record_many(entries, route=route, chain=chain)


def test_routine_records_survive_a_failing_log_and_later_reads_wait_for_it(
        audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            group = GroupCommit(_Unavailable(log, failures=1), behind=3600.0)
            group.RETRY = 0.0
            await group.append([_entry(patient="a")], wait=False)
            with pytest.raises(ConnectionError):
                await group.settle()  # the attempt failed: whoever waits is told
            # The failed attempt's routine record was kept; while the log is failing a routine
            # read waits for its record like any other, so it is not acknowledged unwritten.
            await group.append([_entry(patient="b")], wait=False)
            assert await _logged(db, "a") == ["read"] and await _logged(db, "b") == ["read"]
            assert (await audit_log.verify(db, log.key)).ok

    run(go())


def test_past_the_backlog_routine_records_wait_like_the_rest(audit_url: str) -> None:
    """Memory holds at most BACKLOG routine records: past it a read waits for its record."""
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            group = GroupCommit(log, behind=3600.0)
            group.BACKLOG = 1
            await group.append([_entry(patient="a")], wait=False)
            assert await _logged(db, "a") == []  # held
            await group.append([_entry(patient="b")], wait=False)  # past the backlog: waits
            assert await _logged(db, "a") == ["read"] and await _logged(db, "b") == ["read"]

    run(go())


def test_concurrent_writes_of_one_process_append_to_different_chains(audit_url: str) -> None:
    """A write's records lock their chain until the write commits. A second write of the same
    process, while the first is still open, takes another of the process's chains: it commits
    without waiting for the first (on PostgreSQL it would wait for ever here, since the first
    commits only after it). Each chain is free again once its transaction has ended, committed
    or rolled back."""
    async def go() -> None:
        async with opened(audit_url, chains=16, pool_size=4) as (db, log):
            sink = ChainedAuditSink(log, SOURCE)
            first = sink.begin()
            async with db.transaction(write=True) as tx1:
                await first.record(intent("create"), tx1)
                await first.before_commit(tx1)
                held = log.held_chains()
                assert list(held.values()) == [1]
                if db.dialect == "postgresql":  # SQLite has one writer at a time anyway
                    second = sink.begin()
                    async with db.transaction(write=True) as tx2:
                        await second.record(intent("update"), tx2)
                        await second.before_commit(tx2)
                    await second.flush()
                    assert log.held_chains() == held
            await first.flush()
            assert log.held_chains() == {}
            rolled = sink.begin()
            with pytest.raises(RuntimeError):
                async with db.transaction(write=True) as tx3:
                    await rolled.record(intent("delete"), tx3)
                    await rolled.before_commit(tx3)
                    raise RuntimeError("the audited write failed")
            await rolled.flush()
            assert log.held_chains() == {}
            written = {chain: seq for chain, (seq, _) in (await audit_log.heads(db)).items()
                       if seq}
            assert sorted(written.values()) == ([1, 1] if db.dialect == "postgresql" else [1])
            assert (await audit_log.verify(db, log.key)).ok

    run(asyncio.wait_for(go(), 60))


def test_a_held_chain_is_passed_over_until_it_is_released(audit_url: str) -> None:
    """Chains are taken in turn, but never one a transaction of this process still holds while
    another is free."""
    async def go() -> None:
        async with opened(audit_url, chains=16) as (_, log):
            long_write = log.hold_chain()
            for _ in range(2 * audit_log.OWN_CHAINS):
                chain = log.hold_chain()
                assert chain != long_write
                log.release_chain(chain)
            log.release_chain(long_write)
            taken = [log.hold_chain() for _ in range(audit_log.OWN_CHAINS)]
            assert len(set(taken)) == audit_log.OWN_CHAINS  # all different while all held

    run(go())


def test_the_workers_of_one_server_write_to_chains_apart(audit_url: str) -> None:
    """Each worker of `akson serve` (akson.serving) has a lane: its write chains and the chain
    of its batched records. With 16 chains three workers' lanes never meet, so no worker waits
    for another's commits; a worker's batched records land on its lane's batch chain."""
    async def go() -> None:
        async with opened(audit_url, chains=16) as (db, log):
            workers = [audit_log.AuditLog(db, key=log.key, chains=16, lane=n) for n in range(3)]
            lanes = []
            for worker in workers:
                lane = {worker.hold_chain() for _ in range(audit_log.OWN_CHAINS)}
                lanes.append(lane | {worker.batch_chain()})
                assert len(lanes[-1]) == audit_log.LANE_CHAINS
            assert len(set().union(*lanes)) == 3 * audit_log.LANE_CHAINS
            await GroupCommit(workers[1]).append([_entry()])
            async with db.transaction(write=False) as tx:
                [record] = await audit_log.patient_log(tx, "p")
            assert record.chain == workers[1].batch_chain()

    run(go())
