"""Audit-log append throughput on PostgreSQL: W concurrent writers appending in transactions of
their own (as reads are audited) over 1 chain and over N chains, and a small write with and
without its audit append in the same transaction (what auditing a write costs).

    .venv/bin/python bench/audit_bench.py [--writers 8] [--events 4000] [--chains 16]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Each run gets a scratch database (migrated, verified after, dropped); prints transactions/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import orjson
import psycopg

from akson.store.audit_log import AuditEntry, AuditLog, checkpoint_key, verify
from akson.store.database import connect
from akson.store.migrate import upgrade

KEY = checkpoint_key(b"bench secret")


def event(writer: int, n: int) -> AuditEntry:
    body = orjson.dumps({"resourceType": "AuditEvent", "action": "R", "writer": writer, "n": n,
                         "agent": [{"name": "Bench Lege", "requestor": True}],
                         "entity": [{"what": {"reference": f"Patient/p{n % 500}"}}]})
    return AuditEntry(content=body, recorded=time.time_ns() // 1000, action="R",
                      subtype="read", purpose="TREAT", org="974589095", unit="874716782",
                      agent=f"hpr:{1000 + writer}", patients=(f"p{n % 500}",))


async def run(url: str, writers: int, events: int, chains: int,
              mode: str) -> tuple[float, int]:
    """Transactions per second over `writers` concurrent writers. Modes: `own` (an append in a
    transaction of its own, as reads are audited), `write` (a small write without audit, the
    baseline) and `write+audit` (the same write with its append in the same transaction)."""
    db = connect(url, pool_size=writers)
    await db.open()
    log = AuditLog(db, key=KEY, chains=chains)
    per_writer = events // writers
    async with db.transaction(write=True) as tx:
        await tx.execute("CREATE TABLE IF NOT EXISTS bench_write (id BIGSERIAL PRIMARY KEY, "
                         "body BYTEA NOT NULL)")

    async def writer(w: int) -> None:
        for n in range(per_writer):
            route = f"{w}-{n}-{uuid.uuid4().hex}"
            if mode == "own":
                await log.record(event(w, n), route=route)
                continue
            async with db.transaction(write=True) as tx:
                await tx.execute("INSERT INTO bench_write (body) VALUES (%s)", (b"x" * 600,))
                if mode == "write+audit":
                    await log.append(tx, event(w, n), route=route)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - start
        report = await verify(db, KEY)
        assert report.ok, [p.describe() for p in report.problems]
        return per_writer * writers / elapsed, report.events
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--pg", default=os.environ.get(
        "AKSON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    server = args.pg.split("://", 1)[1].rsplit("/", 1)[0]
    runs = [("own", 1), ("own", args.chains), ("write", args.chains),
            ("write+audit", args.chains)]
    for mode, chains in runs:
        name = f"akson_audit_bench_{os.getpid()}"
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://{server}/{name}"
        try:
            upgrade(url)
            rate, walked = asyncio.run(run(url, args.writers, args.events, chains, mode))
            print(f"PostgreSQL, {args.writers} writers, {chains:>2} chain(s), {mode:<11}: "
                  f"{rate:,.0f} transactions/s ({walked} audit events, verify ok)")
        finally:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
