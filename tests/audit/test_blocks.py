"""Blocks (ADR 0014): routine reads' records written together are stored as one row, yet read,
paged, counted and verified as the records they hold, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from akson.access.audit import GroupCommit, routine
from akson.store import audit_log
from akson.store.audit_log import AuditEntry, block, blocks, unpack
from tests.audit.conftest import opened, run
from tests.audit.test_tamper import attack, fetch, verify

T0 = 1_760_000_000_000_000


def read(n: int, *patients: str, agent: str = "hpr:111", outcome: str = "0") -> AuditEntry:
    return AuditEntry(content=orjson.dumps({"format": 2, "n": n}), recorded=T0 + n, action="R",
                      subtype="read", outcome=outcome, purpose="TREAT", org="974589095",
                      unit="874716782", agent=agent, patients=patients or ("p",))


def numbers(records: list[audit_log.AuditRecord]) -> list[int]:
    return [orjson.loads(r.entry.content)["n"] for r in records]


def test_blocks_gather_entries_that_share_their_columns_and_keep_the_others_in_place() -> None:
    a1, a2, b1, a3 = read(1), read(2), read(3, agent="hpr:222"), read(4)
    denial = read(5, outcome="4")
    out = blocks([a1, b1, a2, denial, a3, read(6)], routine)
    assert [e.items for e in out] == [2, 1, 1, 2]  # (a1 a2) b1 | denial | (a3 6)
    assert out[1] == b1 and out[2] == denial
    assert out[0].recorded == a2.recorded and out[0].patients == ("p",)
    many = blocks([read(n, f"p{n}") for n in range(audit_log.BLOCK_ITEMS + 3)], routine)
    assert [e.items for e in many] == [audit_log.BLOCK_ITEMS, 3]
    with pytest.raises(ValueError):
        block([a1, b1])


def test_a_block_reads_back_as_its_records_by_id_and_in_the_citizens_log(audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url, chains=1) as (db, log):
            await log.record(read(1, "mine"), route="r")
            # A block: "mine" twice, apart; one record of another person's only.
            await log.record(block([read(2, "mine"), read(3, "other"), read(4, "mine", "kid"),
                                    read(5, "other")]), route="r")
            await log.record(read(6, "mine"), route="r")
            async with db.transaction(write=False) as tx:
                assert (await audit_log.read(tx, 0, 2)) is None  # a block is no event of its own
                third = await audit_log.read(tx, 0, 2, 3)
                assert third is not None and third.id == "0-2-3"
                assert numbers([third]) == [4] and third.entry.patients == ("mine", "kid")
                assert third.entry.recorded == T0 + 4 and third.entry.items == 1
                assert await audit_log.read(tx, 0, 2, 5) is None
                assert await audit_log.read(tx, 0, 1, 1) is None
                pages, before = [], None
                while page := await audit_log.patient_log(tx, "mine", limit=1, before=before):
                    pages.append(numbers(page))
                    before = page[-1].cursor
                assert pages == [[6], [4], [2], [1]]  # newest first, one by one through the block
                assert numbers(await audit_log.patient_log(tx, "other", limit=5)) == [5, 3]
                volumes = await audit_log.unusual_volumes(tx, "974589095", T0, T0 + 100, 2)
            assert [(v.agent, v.patients, v.events) for v in volumes] == [("hpr:111", 3, 6)]
            report = await audit_log.verify(db, log.key)
            assert report.ok and report.events == 6  # records, not rows

    run(go())


def test_routine_reads_written_together_land_in_one_block(audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url) as (db, log):
            group = GroupCommit(log, behind=3600.0)  # nothing is written unless asked
            for n in range(1, 4):
                await group.append([read(n, f"p{n}")], wait=False)
            await group.settle()
            async with db.transaction(write=False) as tx:
                records = await audit_log.patient_log(tx, "p2")
            assert [r.item for r in records] == [2] and records[0].entry.items == 1
            rows = fetch(audit_url, "SELECT items FROM audit_event")
            assert rows == [(3,)]

    run(go())


def test_a_blocks_count_and_its_records_cannot_be_edited_unseen(audit_url: str) -> None:
    async def go() -> None:
        async with opened(audit_url, chains=1) as (_, log):
            await log.record(block([read(1, "a"), read(2, "b")]), route="r")
            await log.record(read(3, "c"), route="r")
    run(go())
    assert verify(audit_url) == set()
    attack(audit_url, ("UPDATE audit_event SET items = 1 WHERE seq = 1", ()))
    assert verify(audit_url) == {(1, "hash-mismatch")}
    attack(audit_url, ("UPDATE audit_event SET items = 1 WHERE seq = 2", ()))  # unchanged
    attack(audit_url, ("UPDATE audit_event SET items = 2 WHERE seq = 1", ()))
    assert verify(audit_url) == set()
    content = bytes(fetch(audit_url, "SELECT content FROM audit_event WHERE seq = 1")[0][0])
    attack(audit_url, ("UPDATE audit_event SET content = %s WHERE seq = 1",
                       (content.replace(b'"n":2', b'"n":9'),)))
    assert verify(audit_url) == {(1, "hash-mismatch")}


def test_unpack_leaves_a_record_that_is_no_block_alone() -> None:
    record = audit_log.AuditRecord(0, 1, read(1), bytes(32), bytes(32))
    assert unpack(record) == [record]
    assert replace(record, item=2).id == "0-1-2" and record.id == "0-1"
