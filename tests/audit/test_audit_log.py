"""The audit log store on SQLite and PostgreSQL: append and read, chains under concurrency,
transactions, and the readers' queries (citizen log, privacy officer's report)."""

from __future__ import annotations

import asyncio
import sqlite3

import orjson
import psycopg
import pytest

from akson.store import audit_log
from akson.store.audit_log import AuditEntry, chain_for
from akson.store.database import Database, pg_conninfo
from tests.audit.conftest import opened, run

T0 = 1_760_000_000_000_000  # µs: 2025-10-09


def entry(n: int, *, patients: tuple[str, ...] = ("p1",), purpose: str | None = "TREAT",
          agent: str = "hpr:9144897", org: str = "974589095", recorded: int | None = None,
          user_selected: bool = False) -> AuditEntry:
    body = orjson.dumps({"resourceType": "AuditEvent", "n": n})
    return AuditEntry(content=body, recorded=T0 + n if recorded is None else recorded,
                      action="R", subtype="read", purpose=purpose, user_selected=user_selected,
                      org=org, unit="874716782", agent=agent, patients=patients)


def test_an_appended_event_reads_back_whole_and_chains_from_zero(audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            first = await log.record(entry(1, patients=("p2", "p1", "p1")), route="req-a")
            second = await log.record(entry(2), route="req-a")
            assert first.chain == second.chain == chain_for("req-a", 4)
            assert (first.seq, second.seq) == (1, 2)
            assert first.prev_hash == bytes(32) and second.prev_hash == first.hash
            async with db.transaction(write=False) as tx:
                got = await audit_log.read(tx, first.chain, 1)
                assert await audit_log.read(tx, first.chain, 3) is None
            assert got is not None
            assert got.entry == entry(1, patients=("p1", "p2"))  # deduplicated, sorted
            assert got.hash == first.hash
            report = await audit_log.verify(db, log.key)
            assert report.ok and report.events == 2 and report.chains == 1

    run(go())


def test_a_batch_appends_in_order_after_what_the_chain_holds(audit_url: str) -> None:
    """Group commit's batch: one head lock, consecutive sequence numbers, linked hashes."""
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            first = await log.record(entry(1), route="req-b")
            async with db.transaction(write=True) as tx:
                batch = await log.append_many(tx, [entry(n, patients=(f"p{n}",))
                                                   for n in range(2, 7)], route="req-b")
            assert [r.seq for r in batch] == [2, 3, 4, 5, 6]
            assert batch[0].prev_hash == first.hash
            assert all(b.prev_hash == a.hash for a, b in zip(batch, batch[1:], strict=False))
            async with db.transaction(write=False) as tx:
                assert await audit_log.read(tx, first.chain, 6) is not None
            report = await audit_log.verify(db, log.key)
            assert report.ok and report.events == 6

    run(go())


def test_concurrent_writers_keep_every_chain_gapless_and_valid(audit_url: str) -> None:
    tasks, per_task = 8, 15

    async def writer(log: audit_log.AuditLog, t: int) -> None:
        for i in range(per_task):
            await log.record(entry(t * 100 + i, patients=(f"p{t}",)), route=f"req-{t}-{i}")

    async def go() -> None:
        async with opened(audit_url, chains=3, pool_size=8) as (db, log):
            await asyncio.gather(*(writer(log, t) for t in range(tasks)))
            report = await audit_log.verify(db, log.key)
            assert report.ok, [p.describe() for p in report.problems]
            assert report.events == tasks * per_task
            heads = await audit_log.heads(db)
            assert sum(seq for seq, _ in heads.values()) == tasks * per_task

    run(go())


def test_an_append_rolled_back_with_its_write_leaves_no_record(audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            await log.record(entry(1), route="r")
            with pytest.raises(RuntimeError):
                async with db.transaction(write=True) as tx:
                    await log.append(tx, entry(2, patients=("p9",)), route="r")
                    raise RuntimeError("the audited write failed")
            committed = None
            async with db.transaction(write=True) as tx:
                committed = await log.append(tx, entry(3), route="r")
            assert committed.seq == 2  # the rolled-back append took no sequence number
            async with db.transaction(write=False) as tx:
                assert await audit_log.patient_log(tx, "p9") == []
            report = await audit_log.verify(db, log.key)
            assert report.ok and report.events == 2

    run(go())


def test_the_citizen_log_is_newest_first_and_keyset_paged(audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            for n in range(7):
                await log.record(entry(n, patients=("mine", "other") if n % 2 else ("mine",),
                                       recorded=T0 + 1000 * (n // 2)), route=f"r{n}")
            await log.record(entry(99, patients=("other",)), route="x")
            seen: list[int] = []
            before = None
            async with db.transaction(write=False) as tx:
                while True:
                    page = await audit_log.patient_log(tx, "mine", limit=3, before=before)
                    if not page:
                        break
                    seen.extend(orjson.loads(r.entry.content)["n"] for r in page)
                    assert all("mine" in r.entry.patients for r in page)
                    before = page[-1].cursor
            assert sorted(seen) == list(range(7)) and len(seen) == 7
            times = [T0 + 1000 * (n // 2) for n in seen]
            assert times == sorted(times, reverse=True)

    run(go())


def test_the_privacy_officer_sees_break_glass_self_declared_and_unusual_volumes(
        audit_url: str) -> None:
    org, other_org = "974589095", "921234567"

    async def go() -> None:
        async with opened(audit_url) as (db, log):
            await log.record(entry(1, purpose="BTG", patients=("a",)), route="1")
            await log.record(entry(2, user_selected=True, patients=("b",)), route="2")
            await log.record(entry(3, purpose="BTG", org=other_org), route="3")
            await log.record(entry(4, purpose="BTG", recorded=T0 + 10_000_000), route="4")
            for i in range(6):  # one nurse touches six patients; the GP two
                await log.record(entry(10 + i, agent="hpr:111", patients=(f"q{i}",)), route=f"n{i}")
            await log.record(entry(20, agent="hpr:222", patients=("q0", "q1")), route="gp")
            start, end = T0, T0 + 1_000_000
            async with db.transaction(write=False) as tx:
                btg = await audit_log.break_glass(tx, org, start, end)
                declared = await audit_log.self_declared(tx, org, start, end)
                volumes = await audit_log.unusual_volumes(tx, org, start, end, threshold=3)
            assert [r.entry.patients for r in btg] == [("a",)]  # not the other org's, not later
            assert [r.entry.patients for r in declared] == [("b",)]
            assert [(v.agent, v.patients, v.events) for v in volumes] == [("hpr:111", 6, 6)]

    run(go())


def test_the_database_refuses_update_delete_and_truncate(audit_url: str) -> None:
    """The append-only trigger (PostgreSQL; SQLite has one too): only a superuser who drops it
    can tamper, and `verify` catches that (test_tamper.py)."""
    async def append() -> None:
        async with opened(audit_url) as (_, log):
            await log.record(entry(1), route="r")

    run(append())
    attempts = ["UPDATE audit_event SET action = 'C'", "DELETE FROM audit_event"]
    if audit_url.startswith("sqlite"):  # and SQLite's patient index (ADR 0015)
        conn = sqlite3.connect(audit_url.split(":///", 1)[1])
        for sql in [*attempts, "UPDATE audit_event SET patients = '[]'", "DELETE FROM audit_patient",
                    "UPDATE audit_patient SET patient_id = 'other'"]:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        count = conn.execute("SELECT count(*) FROM audit_patient").fetchone()
        conn.close()
    else:
        with psycopg.connect(pg_conninfo(audit_url), autocommit=True) as conn:
            for sql in [*attempts, "UPDATE audit_event SET patients = '{}'",
                        "TRUNCATE audit_event CASCADE"]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                    conn.execute(sql)
            count = conn.execute("SELECT count(*) FROM audit_event "
                                 "WHERE patients @> ARRAY['p1']::varchar[]").fetchone()
    assert count == (1,)


def test_a_write_and_its_audit_record_commit_or_roll_back_together(audit_url: str) -> None:
    """The gate appends inside the session of the write it audits: a failed write leaves no
    record, and every committed write has one."""
    from akson.fhir.searchparams import SearchParamRegistry
    from akson.store.repository import ResourceStore

    async def go() -> None:
        async with opened(audit_url) as (db, log):
            store = ResourceStore(db, SearchParamRegistry.default())
            with pytest.raises(RuntimeError):
                async with store.session(write=True) as s:
                    await s.create("Patient", {"resourceType": "Patient"}, res_id="lost")
                    await log.append(s.tx, entry(1, patients=("lost",)), route="req-1")
                    raise RuntimeError("a later entry of the transaction Bundle failed")
            async with store.session(write=True) as s:
                await s.create("Patient", {"resourceType": "Patient"}, res_id="kept")
                await log.append(s.tx, entry(2, patients=("kept",)), route="req-2")
            async with store.session(write=False) as s:
                assert await s.read("Patient", "lost") is None
                assert await s.read("Patient", "kept") is not None
                assert await audit_log.patient_log(s.tx, "lost") == []
                assert len(await audit_log.patient_log(s.tx, "kept")) == 1
            assert (await audit_log.verify(db, log.key)).ok

    run(go())


def test_a_write_is_there_for_the_next_statement_and_a_refused_one_fails_its_transaction(
        audit_url: str) -> None:
    """On PostgreSQL a resource write is held and sent with the transaction's next statement
    or at its end (HeldWrites, ADR 0017): a read after it in the same transaction still sees
    it, a write at the end still commits, and a write the database refuses (an id taken)
    still fails its transaction, records and all."""
    from akson.fhir.searchparams import SearchParamRegistry
    from akson.store.database import is_retryable
    from akson.store.repository import ResourceStore

    async def go() -> None:
        async with opened(audit_url) as (db, log):
            store = ResourceStore(db, SearchParamRegistry.default())
            async with store.session(write=True) as s:
                await s.create("Patient", {"resourceType": "Patient"}, res_id="first")
                found = await s.read("Patient", "first")
                assert found is not None and found.version == 1
                await s.create("Patient", {"resourceType": "Patient"}, res_id="last")
                await log.append_many(s.tx, [entry(1, patients=("last",))], chain=0)
            with pytest.raises(Exception) as refused:  # the head is known: one statement
                async with store.session(write=True) as s:
                    await s.create("Patient", {"resourceType": "Patient"}, res_id="last")
                    await log.append_many(s.tx, [entry(2, patients=("last",))], chain=0,
                                          checked_at_commit=True)
            assert is_retryable(refused.value)
            log.forget(0)
            async with store.session(write=False) as s:
                assert await s.read("Patient", "last") is not None
                assert [r.seq for r in await audit_log.patient_log(s.tx, "last")] == [1]
            assert (await audit_log.verify(db, log.key)).ok

    run(go())


def test_an_append_checked_at_commit_fails_its_write_when_another_process_moved_the_chain(
        audit_url: str) -> None:
    """ADR 0017: a write that does not read its compare-and-set before COMMIT must still never
    commit without its record. When another process moved the chain's head, the transaction
    fails with the head-moved error and writes nothing — neither the resource nor the record;
    run again after `forget`, it takes the lock and lands after the other process's record.
    SQLite always takes the lock."""
    from akson.fhir.searchparams import SearchParamRegistry
    from akson.store.repository import ResourceStore

    async def go() -> None:
        async with opened(audit_url, chains=1) as (db, first), \
                opened(audit_url, chains=1) as (_, second):
            store = ResourceStore(db, SearchParamRegistry.default())

            async def write(n: int) -> audit_log.AuditRecord:
                async with store.session(write=True) as s:
                    await s.create("Patient", {"resourceType": "Patient"}, res_id=f"p{n}")
                    return (await first.append_many(s.tx, [entry(n, patients=(f"p{n}",))],
                                                    chain=0, checked_at_commit=True))[0]

            assert [(await write(n)).seq for n in (1, 2)] == [1, 2]  # the lock, then the head
            await second.record_many([entry(3, patients=("p3",))], chain=0)
            if db.dialect == "postgresql":
                with pytest.raises(psycopg.Error) as failed:
                    await write(4)
                assert audit_log.head_moved(failed.value)
                first.forget(0)
                async with store.session(write=False) as s:
                    assert await s.read("Patient", "p4") is None
                    assert await audit_log.patient_log(s.tx, "p4") == []
            fourth = await write(4)
            assert fourth.seq == 4
            async with db.transaction(write=False) as tx:
                assert [r.seq for r in await audit_log.patient_log(tx, "p4")] == [4]
            report = await audit_log.verify(db, first.key)
            assert report.ok and report.events == 4, [p.describe() for p in report.problems]

    run(go())


def test_two_processes_sharing_a_chain_lose_nothing_and_learn_that_it_moved(
        audit_url: str) -> None:
    """Each process's log remembers the head it last wrote (on PostgreSQL a batch is then one
    compare-and-set statement); an append by another process in between must make the next
    batch fall back to the chain lock, not fork the chain or overwrite a record."""
    async def go() -> None:
        async with opened(audit_url) as (db, first), opened(audit_url) as (_, second):
            a, moved = await first.record_many([entry(1), entry(2, patients=())], route="r")
            assert [r.seq for r in a] == [1, 2] and not moved
            b, moved = await first.record_many([entry(3, patients=("p2", "p3"))], route="r")
            assert [r.seq for r in b] == [3] and not moved  # its own head: no one else wrote
            c, moved = await second.record_many([entry(4, purpose=None)], route="r")
            assert [r.seq for r in c] == [4] and not moved  # a head it never knew
            d, moved = await first.record_many([entry(5), entry(6)], route="r")
            assert [r.seq for r in d] == [5, 6] and moved  # its known head (3) was stale
            assert d[0].prev_hash == c[0].hash
            async with db.transaction(write=False) as tx:
                got = await audit_log.read(tx, b[0].chain, 3)
                none = await audit_log.read(tx, b[0].chain, 4)
            assert got is not None and got.entry == entry(3, patients=("p2", "p3"))
            assert none is not None and none.entry == entry(4, purpose=None)
            report = await audit_log.verify(db, first.key)
            assert report.ok and report.events == 6, [p.describe() for p in report.problems]

    run(go())


def test_writes_of_two_processes_in_their_transactions_keep_a_shared_chain_whole(
        audit_url: str) -> None:
    """A write's records go in its own transaction; once a process knows its chain's head, on
    PostgreSQL that is one compare-and-set statement. Another process moving the head in
    between — committed, or still holding the chain while this one waits — makes it take the
    lock instead: nothing forks, nothing is lost, sequence numbers stay gap-free."""
    async def write(log: audit_log.AuditLog, db: Database, n: int) -> audit_log.AuditRecord:
        async with db.transaction(write=True) as tx:
            return (await log.append_many(tx, [entry(n)], chain=0))[0]

    async def go() -> None:
        async with opened(audit_url, chains=1) as (db, first), \
                opened(audit_url, chains=1) as (db2, second):
            assert [(await write(first, db, n)).seq for n in (1, 2)] == [1, 2]
            assert (await write(second, db2, 3)).seq == 3  # first's known head is now stale
            fourth = await write(first, db, 4)
            assert fourth.seq == 4
            if db.dialect == "postgresql":
                async with db2.transaction(write=True) as tx:
                    fifth = (await second.append_many(tx, [entry(5)], chain=0))[0]
                    waiting = asyncio.create_task(write(first, db, 6))
                    while not await _blocked(db):  # first waits for the chain's row
                        await asyncio.sleep(0.01)
                sixth = await waiting
                assert (fifth.seq, sixth.seq, sixth.prev_hash) == (5, 6, fifth.hash)
            report = await audit_log.verify(db, first.key)
            assert report.ok, [p.describe() for p in report.problems]
            assert report.events == (6 if db.dialect == "postgresql" else 4)

    run(go())


async def _blocked(db: Database) -> bool:
    async with db.transaction(write=False) as tx:
        row = await tx.fetchone(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid IN "
            "(SELECT pid FROM pg_stat_activity WHERE datname = current_database())")
    return bool(row and row[0])


def test_a_batch_naming_thousands_of_patients_lands_whole(audit_url: str) -> None:
    """A search page's record can name thousands of patients, and group commit joins records:
    the batch lands whole whatever its size."""
    many = tuple(f"p{n:05d}" for n in range(16_500))  # 66,000+ parameters in one statement

    async def go() -> None:
        async with opened(audit_url) as (db, log):
            await log.record(entry(1), route="r")
            (big,), moved = await log.record_many([entry(2, patients=many)], route="r")
            assert big.seq == 2 and not moved
            async with db.transaction(write=False) as tx:
                got = await audit_log.read(tx, big.chain, 2)
            assert got is not None and got.entry.patients == many
            assert (await audit_log.verify(db, log.key)).ok

    run(go())
