"""The results inbox (table `results_message`, migration 0010): every delivered message with its
receipt, state and bytes. Only `akson.results` uses it, through these functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from akson.store.repository import Session

#: States of a delivered message.
STORED = "stored"  # every report stored (or unchanged)
REJECTED = "rejected"  # could not be read or used: in quarantine for operators
UNMATCHED = "unmatched"  # a report's patient could not be matched: manual matching queue
RESERVED = "reserved"  # the patient has reserved against storage: nothing stored, bytes dropped
RESOLVED = "resolved"  # was unmatched; an operator named the patient and it was stored
DISCARDED = "discarded"  # an operator closed it without storing (with a reason)
STATES = (STORED, REJECTED, UNMATCHED, RESERVED, RESOLVED, DISCARDED)

_COLS = ("pk, received, format, sender, message_id, digest, state, reason, detail, patient_id, "
         "receipt, updated, client_id")


@dataclass(frozen=True)
class Message:
    """One row of the inbox, without its bytes (see `raw`)."""

    pk: int
    received: int
    format: str
    sender: str | None
    message_id: str | None
    digest: str
    state: str
    reason: str | None
    detail: str | None
    patient_id: str | None
    receipt: bytes
    updated: int
    client_id: str | None = None


def _message(row: Sequence[Any]) -> Message:
    pk, received, fmt, sender, message_id, digest, state, reason, detail, patient, receipt, \
        updated, client_id = row
    return Message(int(pk), int(received), fmt, sender, message_id, digest, state, reason,
                   detail, patient, bytes(receipt) if receipt is not None else b"", int(updated),
                   client_id)


async def lock(s: Session, name: str) -> None:
    """Hold a lock on `name` until the transaction ends (PostgreSQL advisory lock; SQLite write
    transactions run one at a time anyway). Deliveries lock their bytes' digest, their reports
    and their patients, always in that order and each kind sorted."""
    if s.dialect == "postgresql":
        await s.tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))


async def add(s: Session, *, received: int, format: str, sender: str | None,
              client_id: str, message_id: str | None, digest: str, state: str,
              reason: str | None, detail: str | None, patient_id: str | None, receipt: bytes,
              raw: bytes | None) -> int:
    """Record a delivered message; returns its key."""
    row = await s.tx.fetchone(
        "INSERT INTO results_message (received, format, sender, client_id, message_id, digest, "
        "state, reason, detail, patient_id, receipt, raw, updated) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING pk",
        (received, format, _cut(sender, 200), _cut(client_id, 200), _cut(message_id, 200),
         digest, state, reason, detail, patient_id, receipt, raw, received))
    assert row is not None
    return int(row[0])


async def by_digest(s: Session, digest: str) -> Message | None:
    """The first delivery of exactly these bytes, if any (re-deliveries change nothing)."""
    row = await s.tx.fetchone(
        f"SELECT {_COLS} FROM results_message WHERE digest = %s ORDER BY pk LIMIT 1", (digest,))
    return _message(row) if row else None


async def get(s: Session, pk: int, *, for_update: bool = False) -> Message | None:
    lock = " FOR UPDATE" if for_update and s.dialect == "postgresql" else ""
    row = await s.tx.fetchone(f"SELECT {_COLS} FROM results_message WHERE pk = %s{lock}", (pk,))
    return _message(row) if row else None


async def raw(s: Session, pk: int) -> bytes | None:
    """The bytes as delivered; None once purged (a reservation) or never kept."""
    row = await s.tx.fetchone("SELECT raw FROM results_message WHERE pk = %s", (pk,))
    return bytes(row[0]) if row and row[0] is not None else None


async def listing(s: Session, state: str, *, client_id: str | None = None, after: int = 0,
                  limit: int = 100) -> list[Message]:
    """Messages in one state (of one delivering client, unless None), oldest first, keyset-paged
    by key."""
    mine = " AND client_id = %s" if client_id is not None else ""
    rows = await s.tx.fetchall(
        f"SELECT {_COLS} FROM results_message WHERE state = %s{mine} AND pk > %s "
        "ORDER BY pk LIMIT %s",
        (state, *([client_id] if client_id is not None else []), after, limit))
    return [_message(r) for r in rows]


async def counts(s: Session, *, client_id: str | None = None) -> dict[str, int]:
    mine = " WHERE client_id = %s" if client_id is not None else ""
    rows = await s.tx.fetchall(f"SELECT state, COUNT(*) FROM results_message{mine} "
                               "GROUP BY state", (client_id,) if client_id is not None else ())
    return {str(state): int(n) for state, n in rows}


async def set_state(s: Session, pk: int, state: str, *, now: int, receipt: bytes | None = None,
                    patient_id: str | None = None, detail: str | None = None,
                    drop_raw: bool = False) -> None:
    """Move a delivery to `state`; `drop_raw` forgets its bytes (it no longer waits)."""
    raw = ", raw = NULL" if drop_raw else ""
    await s.tx.execute(
        f"UPDATE results_message SET state = %s, updated = %s{raw}, "
        "receipt = COALESCE(%s, receipt), patient_id = COALESCE(%s, patient_id), "
        "detail = COALESCE(%s, detail) WHERE pk = %s",
        (state, now, receipt, patient_id, detail, pk))


def _cut(value: str | None, n: int) -> str | None:
    return value[:n] if value is not None else None
