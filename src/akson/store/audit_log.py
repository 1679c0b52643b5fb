"""The append-only, hash-chained audit log: append, read, report and verify (the SQL side).

Tables (migration 0006): `audit_event` holds each event's stored bytes (the facts its AuditEvent is
rendered from, ADR 0013; before it, the AuditEvent JSON), the ids of the patients it concerns
(`patients`, migration 0019) and the columns the readers' reports need; `audit_chain` one head
row per chain. A citizen's access log (`AuditEvent?patient=`) finds a patient's events through a
GIN index on `patients` on PostgreSQL, and through `audit_patient` (one row per patient an event
concerns, written beside it) on SQLite, which has no GIN (ADR 0015). Nothing in this module
updates or deletes an event; PostgreSQL (and SQLite) refuse it with a trigger.

**Chains.** Events are spread over N independent chains (default 16) so auditing does not
serialise the server: a writer picks a chain from a routing key (request id, connection) and
appends under that chain's lock only — `SELECT … FOR UPDATE` on the chain's head row on
PostgreSQL; a SQLite write transaction is exclusive already. The lock is held until the
enclosing transaction ends, so sequence numbers are gap-free in commit order. Append inside the
transaction of the write being audited (a rollback removes both, a commit keeps both), as late in
it as possible (the chain stays locked until commit); reads are audited by `record()`, which
opens a transaction of its own.

**Hashes.** `hash = SHA-256(canonical(chain, seq, prev_hash, recorded, action, subtype, outcome,
purpose, user_selected, org, unit, agent, sorted patient ids, JSON bytes))`, every field length-
prefixed so no two records encode alike; `prev_hash` of seq 1 is 32 zero bytes. Editing any
field, the JSON or a patient id, deleting or reordering records breaks a recomputed hash, a link
or the sequence.

**Checkpoints (truncation).** Deleting the newest records of a chain leaves a valid, shorter
chain. The head row holds (seq, hash) and a MAC (HMAC-SHA-256) under a key derived from the
installation secret, which is not in the database: an attacker with database access alone can
delete a tail but cannot write a head that verifies for the shorter chain. Restoring an old copy
of the head row (from a backup) would pass, so operators who need that too export `heads()` to
storage outside the database now and then and pass them to `verify(anchors=…)`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import orjson

from akson.fhir.dates import now_us
from akson.store.database import Database, HeldWrites, Row, Tx

DEFAULT_CHAINS = 16
#: Chains of a process's own for its write transactions (AuditLog.hold_chain).
OWN_CHAINS = 4
#: A process's lane: its write chains and, after them, the chain of its batched records.
LANE_CHAINS = OWN_CHAINS + 1
ZERO_HASH = bytes(32)
_NONE = (2**64 - 1).to_bytes(8, "big")  # length prefix of an absent field (distinct from "")
_VERSION = b"akson-audit-v1"

_EVENT_COLS = ("e.chain, e.seq, e.recorded, e.action, e.subtype, e.outcome, e.purpose, "
               "e.user_selected, e.org, e.unit, e.agent, e.content, e.prev_hash, e.hash, e.items, "
               "e.patients")
_INTO_EVENT = ("INSERT INTO audit_event (chain, seq, recorded, action, subtype, outcome, purpose, "
               "user_selected, org, unit, agent, content, prev_hash, hash, items, patients)")
_INSERT_EVENT = _INTO_EVENT + " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
#: How a block's stored bytes begin (`block`): `{"block":[[recorded,[patient ids],facts],…]}`.
BLOCK_PREFIX = b'{"block":['
#: Records in one block at most, so a citizen's log reads (and decompresses) small rows.
BLOCK_ITEMS = 100
#: SQLite's patient index (PostgreSQL's is GIN on audit_event.patients; ADR 0015).
_INSERT_PATIENT = "INSERT INTO audit_patient (chain, seq, patient_id, recorded) VALUES (%s,%s,%s,%s)"

#: PostgreSQL: append a batch to a chain only if its head is still (known seq, known hash), in
#: one statement (`AuditLog.record_many`). The inserts read the head update's RETURNING, so
#: nothing is inserted when it matched no row. The rows come as one JSON array per table (hashes
#: in hex): the text is the same for any batch, so it is parsed and planned once per
#: connection, and encoding them is one C call (a VALUES list has more parameters than the
#: driver caches conversions for, and arrays are dumped element by element in Python). The
#: stored bytes come apart, as one binary `bytea` of them all that each row takes its slice of
#: (offset `o`, length `l`): in the JSON, as hex, a block's 12 kB were parsed twice over (the
#: cast, then the rows), ~1 µs per record in it; as a `bytea[]` psycopg's list dumper cost
#: 9 µs per statement, which a write pays alone.
#: Parameters (named `a_…`, apart from a held write's, `HeldWrites`): the new head's seq, hash,
#: mac and time; the chain and its known seq and hash; the contents and the event rows.
_APPEND_CTES = (
    "WITH head AS (UPDATE audit_chain SET seq = %(a_seq)s, hash = %(a_hash)s, mac = %(a_mac)s, "
    "updated = %(a_updated)s WHERE chain = %(a_chain)s AND seq = %(a_known_seq)s "
    "AND hash = %(a_known_hash)s RETURNING chain), "
    f"ev AS ({_INTO_EVENT} SELECT %(a_chain)s::int, e.s, e.r, e.a, e.st, e.o, e.p, e.us, e.org, "
    "e.unit, e.ag, substring(%(a_contents)s::bytea FROM e.co FOR e.cl), decode(e.ph, 'hex'), "
    "decode(e.h, 'hex'), e.n, e.pa FROM json_to_recordset(%(a_rows)s::json) AS e(s bigint, "
    "r bigint, a text, st text, "
    "o text, p text, us boolean, org text, unit text, ag text, co int, cl int, ph text, h text, "
    "n int, pa varchar(64)[]) WHERE EXISTS (SELECT FROM head) RETURNING 1)")
_APPEND_IF_HEAD = _APPEND_CTES + " SELECT (SELECT count(*) FROM head), (SELECT count(*) FROM ev)"
#: The same append's last SELECT for a write transaction that does not read its result before
#: COMMIT (`AuditLog.append_many(checked_at_commit=True)`): a head that moved fails the
#: statement with HEAD_MOVED (migration 0020), so the transaction cannot commit without its
#: records. It joins the transaction's held write (HeldWrites): one statement for both.
_OR_FAIL = "SELECT CASE WHEN EXISTS (SELECT FROM head) THEN 1 ELSE akson_audit_head_moved() END"
#: SQLSTATE of `akson_audit_head_moved()` (class 40, transaction rollback).
HEAD_MOVED = "40A01"
_EVENT_KEYS = ("s", "r", "a", "st", "o", "p", "us", "org", "unit", "ag")


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, 1.3 µs
# for 18 fields against 0.17, and one is made per access. Nothing changes one once made.
@dataclass(slots=True)
class AuditEntry:
    """One event to record: its stored bytes (the facts its AuditEvent is rendered from, ADR
    0013) and the columns the readers' queries use.

    Build it with `akson.access.audit`; `patients` are Patient logical ids (never national ids).
    """

    content: bytes
    recorded: int  # µs since epoch, UTC
    action: str  # C R U D E (http://hl7.org/fhir/R4/valueset-audit-event-action.html)
    subtype: str  # read, vread, search-type, create, …, login, export, break-glass, $everything
    outcome: str = "0"  # 0 success, 4 minor failure, 8 serious failure, 12 major failure
    purpose: str | None = None  # TREAT, ETREAT, COC, BTG
    user_selected: bool = False  # a self-declared care relationship (decision_ref.user_selected)
    org: str | None = None  # the actor's legal entity (orgnr)
    unit: str | None = None  # the actor's point of care (orgnr)
    agent: str | None = None  # non-personal actor key: "hpr:…", "sub:…", "client:…"
    patients: tuple[str, ...] = ()
    items: int = 1  # > 1: a block of that many records (`block`)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An entry as stored: its place in its chain and its hashes. A record of a block (`item`
    from 1) shares the block's place and hashes; `placed` is the block's `recorded`."""

    chain: int
    seq: int
    entry: AuditEntry
    prev_hash: bytes
    hash: bytes
    item: int = 0
    placed: int | None = None

    @property
    def id(self) -> str:
        """The AuditEvent's logical id as served: `<chain>-<seq>`, or `<chain>-<seq>-<item>` for
        a record of a block; stable and unique."""
        return f"{self.chain}-{self.seq}-{self.item}" if self.item else f"{self.chain}-{self.seq}"

    @property
    def cursor(self) -> tuple[int, int, int, int]:
        """The keyset position of this record in a newest-first log (`patient_log`)."""
        placed = self.entry.recorded if self.placed is None else self.placed
        return (placed, self.chain, self.seq, self.item)


@dataclass(frozen=True, slots=True)
class Volume:
    """One principal's access volume in a period: distinct patients and events."""

    agent: str
    patients: int
    events: int


@dataclass(frozen=True, slots=True)
class Problem:
    """A place where a chain fails verification. Holds positions only, never personal data."""

    chain: int
    seq: int
    kind: str  # see KINDS

    def describe(self) -> str:
        return f"chain {self.chain} seq {self.seq}: {KINDS[self.kind]}"


KINDS = {
    "hash-mismatch": "record altered (its hash does not match its content)",
    "broken-link": "record does not link to the previous one (deleted, inserted or reordered)",
    "gap": "records missing before this sequence (deleted)",
    "truncated": "records missing at the end of the chain (truncated after this sequence)",
    "beyond-checkpoint": "records after the signed head (inserted without the key)",
    "checkpoint-invalid": "the chain head's signature does not verify (head edited)",
    "checkpoint-mismatch": "the chain head's hash differs from the record it names",
    "head-missing": "events exist but the chain head is missing (head deleted)",
    "anchor-mismatch": "record differs from the externally kept anchor",
    "patients-mismatch": "patient index row disagrees with its event",
}


@dataclass
class VerifyReport:
    """What `verify` found: chains and events walked, and every problem (empty when intact)."""

    chains: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- hashing


def chain_for(route: str, chains: int) -> int:
    """The chain a routing key (request id, connection id) appends to: a stable hash mod N."""
    digest = hashlib.blake2b(route.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % chains


def _field(h: hashlib._Hash, value: bytes | None) -> None:
    if value is None:
        h.update(_NONE)
    else:
        h.update(len(value).to_bytes(8, "big"))
        h.update(value)


def record_hash(chain: int, seq: int, prev_hash: bytes, entry: AuditEntry) -> bytes:
    """SHA-256 over the canonical encoding of a record (module docstring)."""
    h = hashlib.sha256(_VERSION)
    h.update(chain.to_bytes(8, "big", signed=True))
    h.update(seq.to_bytes(8, "big", signed=True))
    _field(h, prev_hash)
    h.update(entry.recorded.to_bytes(8, "big", signed=True))
    for text in (entry.action, entry.subtype, entry.outcome, entry.purpose):
        _field(h, None if text is None else text.encode())
    h.update(b"\x01" if entry.user_selected else b"\x00")
    for text in (entry.org, entry.unit, entry.agent):
        _field(h, None if text is None else text.encode())
    h.update(len(entry.patients).to_bytes(8, "big"))
    for patient in sorted(entry.patients):
        _field(h, patient.encode())
    _field(h, entry.content)
    if entry.items != 1 or entry.content.startswith(BLOCK_PREFIX):
        # Only blocks hash their count, so every other record's hash is as before ADR 0014;
        # a block's bytes say it is one, so its count cannot be edited to 1 unseen either.
        h.update(entry.items.to_bytes(8, "big"))
    return h.digest()


def checkpoint_key(secret: bytes) -> bytes:
    """The checkpoint MAC key, derived from an installation secret (e.g. AKSON_SECRET_KEY)."""
    return hmac.new(secret, b"akson audit checkpoint", hashlib.sha256).digest()


def _mac(key: bytes, chain: int, seq: int, head_hash: bytes) -> bytes:
    msg = _VERSION + chain.to_bytes(8, "big", signed=True) + seq.to_bytes(8, "big") + head_hash
    return hmac.digest(key, msg, "sha256")


# ---------------------------------------------------------------- blocks (ADR 0014)


def _columns(entry: AuditEntry) -> tuple[Any, ...]:
    return (entry.action, entry.subtype, entry.outcome, entry.purpose, entry.user_selected,
            entry.org, entry.unit, entry.agent)


def block(entries: Sequence[AuditEntry]) -> AuditEntry:
    """Entries with the same columns, each holding JSON (the facts, ADR 0013), as one entry: a
    block whose bytes hold each one's time, patients and facts in order, stored, chained and
    hashed as one record. Its time is the latest of theirs and its patients all of theirs."""
    first = entries[0]
    columns = _columns(first)
    if len(entries) < 2 or any(_columns(e) != columns for e in entries[1:]):
        raise ValueError("a block holds two or more entries with the same columns")
    content = orjson.dumps({"block": [[e.recorded, e.patients, orjson.Fragment(e.content)]
                                      for e in entries]})
    return replace(first, content=content,
                   recorded=max(e.recorded for e in entries),
                   patients=tuple(sorted({p for e in entries for p in e.patients})),
                   items=len(entries))


def blocks(entries: Sequence[AuditEntry], packable: Callable[[AuditEntry], bool]
           ) -> list[AuditEntry]:
    """`entries` with the `packable` ones that share their columns gathered into blocks of at
    most `BLOCK_ITEMS`. An entry that is not packable keeps its place: a block holds only
    entries from between two such, so nothing moves past one."""
    out: list[AuditEntry] = []
    groups: dict[tuple[Any, ...], list[AuditEntry]] = {}

    def gathered() -> None:
        for group in groups.values():
            for start in range(0, len(group), BLOCK_ITEMS):
                part = group[start:start + BLOCK_ITEMS]
                out.append(block(part) if len(part) > 1 else part[0])
        groups.clear()

    for entry in entries:
        if packable(entry):
            groups.setdefault(_columns(entry), []).append(entry)
        else:
            gathered()
            out.append(entry)
    gathered()
    return out


def unpack(record: AuditRecord) -> list[AuditRecord]:
    """The records a block holds, in order (item 1, 2, …); a record that is no block, alone."""
    if record.entry.items == 1:
        return [record]
    doc = orjson.loads(record.entry.content)
    return [AuditRecord(record.chain, record.seq,
                        replace(record.entry, content=orjson.dumps(facts), recorded=int(recorded),
                                patients=tuple(patients), items=1),
                        record.prev_hash, record.hash, item=n, placed=record.entry.recorded)
            for n, (recorded, patients, facts) in enumerate(doc["block"], start=1)]


# ---------------------------------------------------------------- appending


def _chained(chain: int, seq: int, prev: bytes, entries: Sequence[AuditEntry]
             ) -> tuple[list[AuditRecord], list[tuple[Any, ...]]]:
    """`entries` as records after (seq, prev) on `chain`, with their event rows (the patient
    ids last, sorted)."""
    out: list[AuditRecord] = []
    events: list[tuple[Any, ...]] = []
    for entry in entries:
        seq += 1
        patients = tuple(sorted(set(entry.patients)))
        if patients != entry.patients:
            entry = replace(entry, patients=patients)
        digest = record_hash(chain, seq, prev, entry)
        e = entry
        events.append((chain, seq, e.recorded, e.action, e.subtype, e.outcome, e.purpose,
                       e.user_selected, e.org, e.unit, e.agent, e.content, prev, digest, e.items,
                       patients))
        out.append(AuditRecord(chain, seq, entry, prev, digest))
        prev = digest
    return out, events


class AuditLog:
    """Appends to N chains; `key` signs the chain heads (see `checkpoint_key`)."""

    def __init__(self, db: Database, *, key: bytes, chains: int = DEFAULT_CHAINS,
                 lane: int | None = None) -> None:
        if chains < 1:
            raise ValueError("the audit log needs at least one chain")
        self.db = db
        self.key = key
        self.chains = chains
        self._heads: dict[int, tuple[int, bytes]] = {}  # chain → (seq, hash) last appended here
        # Write transactions append to a few chains of this process's own, whose heads it then
        # usually knows (the compare-and-set below); another process that uses one too only
        # costs a fallback to the lock, and each waits for the other's commits. `lane` (the
        # server's worker number, akson.serving) gives the workers of one server chains apart
        # (16 chains: three workers' lanes never meet); other processes start at random.
        # `_holding` counts this process's transactions holding each of its chains, so
        # concurrent writes take different ones (hold_chain).
        self._own = (lane * LANE_CHAINS if lane is not None else secrets.randbelow(chains)) % chains
        self._turn = itertools.count()
        self._holding: dict[int, int] = {}

    def hold_chain(self) -> int:
        """One of this process's own chains for a write transaction's records: the one fewest of
        its transactions hold now (ties in turn). A chain stays locked from a transaction's
        append until it ends, so two concurrent writes on one chain would queue on each other's
        commit. Pass it to `append_many` and give it back with `release_chain` once the
        transaction has ended."""
        start = next(self._turn)
        own = [(self._own + (start + k) % OWN_CHAINS) % self.chains for k in range(OWN_CHAINS)]
        chain = min(own, key=lambda c: self._holding.get(c, 0))
        self._holding[chain] = self._holding.get(chain, 0) + 1
        return chain

    def batch_chain(self) -> int:
        """The chain for this process's batched records (`record_many`): the last of its lane,
        beside its write chains."""
        return (self._own + OWN_CHAINS) % self.chains

    def held_chains(self) -> dict[int, int]:
        """Chains this process's write transactions hold now, with how many hold each."""
        return dict(self._holding)

    def release_chain(self, chain: int) -> None:
        """The transaction that held `chain` (hold_chain) has ended."""
        left = self._holding.get(chain, 0) - 1
        if left > 0:
            self._holding[chain] = left
        else:
            self._holding.pop(chain, None)

    async def append(self, tx: Tx, entry: AuditEntry, *, route: str) -> AuditRecord:
        """Append `entry` inside the caller's write transaction `tx`; it commits or rolls back
        with it. Locks the chain picked by `route` until `tx` ends.

        Call it as the last statement(s) of `tx`, and with one `route` per transaction (the
        request id): the chain lock is then always the last lock a transaction takes, and only
        one, so audit appends can never be part of a deadlock cycle.
        """
        return (await self.append_many(tx, [entry], route=route))[0]

    async def append_many(self, tx: Tx, entries: Sequence[AuditEntry], *,
                          route: str | None = None, chain: int | None = None,
                          checked_at_commit: bool = False) -> list[AuditRecord]:
        """`append` for several entries, in order, on one chain: the head is locked, read and
        written once and the rows go in as one batch. The chain is the one `route` picks, else
        `chain` (a write transaction's, from `hold_chain`). On PostgreSQL, when this process
        knows that chain's head, it is one statement: the compare-and-set of `record_many`,
        inside `tx` — it waits for a transaction holding the chain and, when that moved the
        head, writes nothing and takes the lock instead (READ COMMITTED re-reads the row it
        waited for).

        `checked_at_commit=True` does not read the compare-and-set's result, so a pipelined
        write sends it with its COMMIT in one flush: a head that moved then fails the
        transaction with an error `head_moved` recognises, and the caller runs the whole write
        again without this flag (ADR 0017). It applies when this process's transactions hold
        the chain once at most (`hold_chain`); a chain shared by two of them is appended to as
        without it. If the transaction ends without committing for any reason, call
        `forget(chain)`: the head this assumed was not written.
        """
        if not entries:
            return []
        chain = self._chain(route, chain)
        known = self._heads.get(chain)
        if known is not None and tx.dialect == "postgresql":
            # Only while no other transaction of this process holds the chain: one that does
            # may not have reached the server with the head this one chains on.
            if checked_at_commit and self._holding.get(chain, 0) <= 1:
                return await self._append_unless_moved(tx, chain, known, entries)
            out = await self._append_if_head(tx, chain, known, entries)
            if out is not None:
                return out
        return (await self._append_locked(tx, chain, entries))[0]

    def forget(self, chain: int) -> None:
        """A transaction that appended to `chain` did not commit: its head is not known."""
        self._heads.pop(chain, None)

    def _chain(self, route: str | None, chain: int | None) -> int:
        """The chain `route` picks, else `chain`; one of them is needed."""
        if route is not None:
            return chain_for(route, self.chains)
        if chain is None:
            raise ValueError("an append needs a route or a chain")
        return chain

    async def _append_locked(self, tx: Tx, chain: int, entries: Sequence[AuditEntry]
                             ) -> tuple[list[AuditRecord], tuple[int, bytes]]:
        """Append under the chain's lock; also returns the head found."""
        seq, prev = await self._lock_head(tx, chain)
        out, events = _chained(chain, seq, prev, entries)
        if tx.dialect == "postgresql":
            await tx.executemany(_INSERT_EVENT, [(*e[:15], list(e[15])) for e in events])
        else:
            await tx.executemany(_INSERT_EVENT, [(*e[:15], orjson.dumps(e[15]).decode())
                                                 for e in events])
            await tx.executemany(_INSERT_PATIENT, [(chain, e[1], p, e[2])
                                                   for e in events for p in e[15]])
        head = out[-1]
        await tx.execute(
            "UPDATE audit_chain SET seq = %s, hash = %s, mac = %s, updated = %s WHERE chain = %s",
            (head.seq, head.hash, _mac(self.key, chain, head.seq, head.hash), now_us(), chain),
        )
        self._heads[chain] = (head.seq, head.hash)  # a hint for record_many, checked on use
        return out, (seq, prev)

    async def record(self, entry: AuditEntry, *, route: str) -> AuditRecord:
        """Append `entry` in a transaction of its own (reads, logins: nothing else to commit)."""
        return (await self.record_many([entry], route=route))[0][0]

    async def record_many(self, entries: Sequence[AuditEntry], *, route: str | None = None,
                          chain: int | None = None) -> tuple[list[AuditRecord], bool]:
        """Append `entries` in a transaction of their own, on the chain `route` picks, else
        `chain`; also says whether the chain had moved since this process last appended to it
        (another writer uses it: pick another).

        On PostgreSQL, when this process knows the chain's head from its last append, the batch
        is one statement that writes only if the head is still that one — a compare-and-set on
        the head row, which also waits for and then sees any transaction holding the chain's
        lock — instead of lock, read, insert, update and commit in two round trips. A stale head
        writes nothing and falls back to the locking path.
        """
        if not entries:
            return [], False
        chain = self._chain(route, chain)
        known = self._heads.get(chain)
        if known is not None and self.db.dialect == "postgresql":
            # Autocommit (a "read" connection): the statement is its own transaction, durable
            # when it returns; a head that moved matches no row, so nothing at all is written.
            async with self.db.transaction(write=False) as tx:
                out = await self._append_if_head(tx, chain, known, entries)
            if out is not None:
                return out, False
        async with self.db.transaction(write=True) as tx:
            out, found = await self._append_locked(tx, chain, entries)
        return out, known is not None and known != found

    async def _append_if_head(self, tx: Tx, chain: int, known: tuple[int, bytes],
                              entries: Sequence[AuditEntry]) -> list[AuditRecord] | None:
        out, params = self._if_head(chain, known, entries)
        row = await tx.fetchone(_APPEND_IF_HEAD, params)
        if not row or not row[0]:
            self._heads.pop(chain, None)
            return None
        self._heads[chain] = (out[-1].seq, out[-1].hash)
        return out

    async def _append_unless_moved(self, tx: Tx, chain: int, known: tuple[int, bytes],
                                   entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        out, params = self._if_head(chain, known, entries)
        await cast(HeldWrites, tx).execute_with_held(_APPEND_CTES, _OR_FAIL, params)
        # Assumed until the commit says otherwise (`forget`): a later transaction of this
        # process on this chain chains on, and its compare-and-set waits for this one's commit.
        self._heads[chain] = (out[-1].seq, out[-1].hash)
        return out

    def _if_head(self, chain: int, known: tuple[int, bytes], entries: Sequence[AuditEntry]
                 ) -> tuple[list[AuditRecord], dict[str, object]]:
        """The records `entries` become after head `known`, and the compare-and-set's
        parameters."""
        out, events = _chained(chain, known[0], known[1], entries)
        head = out[-1]
        event_rows, start = [], 1
        for e in events:
            event_rows.append({**dict(zip(_EVENT_KEYS, e[1:11], strict=True)), "co": start,
                               "cl": len(e[11]), "ph": e[12].hex(), "h": e[13].hex(), "n": e[14],
                               "pa": e[15]})
            start += len(e[11])
        params: dict[str, object] = {
            "a_seq": head.seq, "a_hash": head.hash,
            "a_mac": _mac(self.key, chain, head.seq, head.hash), "a_updated": now_us(),
            "a_chain": chain, "a_known_seq": known[0], "a_known_hash": known[1],
            "a_contents": b"".join(e[11] for e in events),
            "a_rows": orjson.dumps(event_rows).decode()}
        return out, params

    async def _lock_head(self, tx: Tx, chain: int) -> tuple[int, bytes]:
        lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
        sql = f"SELECT seq, hash FROM audit_chain WHERE chain = %s{lock}"
        row = await tx.fetchone(sql, (chain,))
        if row is None:  # the chain's first event: create its head (a racing writer waits here)
            await tx.execute(
                "INSERT INTO audit_chain (chain, seq, hash, mac, updated) VALUES (%s, 0, %s, %s, %s) "
                "ON CONFLICT (chain) DO NOTHING",
                (chain, ZERO_HASH, _mac(self.key, chain, 0, ZERO_HASH), now_us()),
            )
            row = await tx.fetchone(sql, (chain,))
            assert row is not None
        return int(row[0]), bytes(row[1])


# ---------------------------------------------------------------- reading


def head_moved(exc: BaseException) -> bool:
    """Did a write fail because its audit append found its chain's head moved (an append
    checked at commit, `AuditLog.append_many`)? Running it again takes the chain's lock."""
    return getattr(exc, "sqlstate", None) == HEAD_MOVED


def _patients(value: Any) -> tuple[str, ...]:
    """`audit_event.patients` as read: an array on PostgreSQL, JSON text on SQLite."""
    return tuple(orjson.loads(value) if isinstance(value, str) else value)


def _record(row: Row) -> AuditRecord:
    entry = AuditEntry(content=bytes(row[11]), recorded=int(row[2]), action=row[3], subtype=row[4],
                       outcome=row[5], purpose=row[6], user_selected=bool(row[7]), org=row[8],
                       unit=row[9], agent=row[10], patients=_patients(row[15]),
                       items=int(row[14]))
    return AuditRecord(int(row[0]), int(row[1]), entry, bytes(row[12]), bytes(row[13]))


async def read(tx: Tx, chain: int, seq: int, item: int = 0) -> AuditRecord | None:
    """One record by its place (and, in a block, its item from 1), or None."""
    row = await tx.fetchone(f"SELECT {_EVENT_COLS} FROM audit_event e "
                            "WHERE e.chain = %s AND e.seq = %s", (chain, seq))
    if row is None:
        return None
    record = _record(row)
    if record.entry.items == 1:
        return record if item == 0 else None
    records = unpack(record)
    return records[item - 1] if 1 <= item <= len(records) else None


async def patient_log(tx: Tx, patient_id: str, *, limit: int = 50,
                      before: tuple[int, int, int, int] | None = None) -> list[AuditRecord]:
    """The events concerning `patient_id`, newest first: the citizen's access log, with the
    records of a block that concern the patient in place of the block.

    Keyset-paged: pass the last record's `cursor` as `before` for the next page (a page may
    end inside a block: its earlier records open the next).
    """
    params: list[object] = [patient_id]
    # PostgreSQL finds the patient's events by the GIN index on their ids and sorts them;
    # SQLite walks its patient index in order (ADR 0015).
    if tx.dialect == "postgresql":
        t, source = "e", "audit_event e WHERE e.patients @> ARRAY[%s]::varchar(64)[]"
    else:
        t, source = "p", ("audit_patient p JOIN audit_event e ON e.chain = p.chain "
                          "AND e.seq = p.seq WHERE p.patient_id = %s")
    after, rows_wanted = "", limit
    if before is not None:
        recorded, chain, seq, item = before
        # Inside a block, its records before `item` are still to come: read that row again
        # (one more, as it may hold none of this patient's).
        op = "<=" if item > 1 else "<"
        after = f" AND ({t}.recorded, {t}.chain, {t}.seq) {op} (%s, %s, %s)"
        params += [recorded, chain, seq]
        rows_wanted += op == "<="
    params.append(rows_wanted)
    rows = await tx.fetchall(
        f"SELECT {_EVENT_COLS} FROM {source}{after} "
        f"ORDER BY {t}.recorded DESC, {t}.chain DESC, {t}.seq DESC LIMIT %s",
        params,
    )
    out: list[AuditRecord] = []
    for record in map(_record, rows):
        for rec in reversed(unpack(record)):  # a block's records newest first
            if patient_id in rec.entry.patients and (
                    before is None or rec.cursor[1:3] != before[1:3] or 0 < rec.item < before[3]):
                out.append(rec)
    return out[:limit]


async def _org_events(tx: Tx, org: str, start: int, end: int, condition: str,
                      limit: int) -> list[AuditRecord]:
    rows = await tx.fetchall(
        f"SELECT {_EVENT_COLS} FROM audit_event e WHERE e.org = %s AND e.recorded >= %s "
        f"AND e.recorded < %s AND {condition} ORDER BY e.recorded, e.chain, e.seq LIMIT %s",
        (org, start, end, limit),
    )
    return [_record(r) for r in rows]


async def break_glass(tx: Tx, org: str, start: int, end: int, *,
                      limit: int = 1000) -> list[AuditRecord]:
    """Accesses by `org` (orgnr) in [start, end) µs whose purpose was BTG, oldest first."""
    return await _org_events(tx, org, start, end, "e.purpose = 'BTG'", limit)


async def self_declared(tx: Tx, org: str, start: int, end: int, *,
                        limit: int = 1000) -> list[AuditRecord]:
    """Accesses by `org` in [start, end) µs on a self-declared (user_selected) care relationship."""
    return await _org_events(tx, org, start, end, "e.user_selected", limit)


async def unusual_volumes(tx: Tx, org: str, start: int, end: int,
                          threshold: int) -> list[Volume]:
    """Principals of `org` whose events in [start, end) µs concern more than `threshold`
    distinct patients, the most first."""
    ids, patient = (("unnest(e.patients) AS p(id)", "p.id") if tx.dialect == "postgresql"
                    else ("json_each(e.patients) AS p", "p.value"))
    rows = await tx.fetchall(
        f"SELECT e.agent, COUNT(DISTINCT {patient}) FROM audit_event e, {ids} "
        "WHERE e.org = %s AND e.recorded >= %s AND e.recorded < %s AND e.agent IS NOT NULL "
        f"GROUP BY e.agent HAVING COUNT(DISTINCT {patient}) > %s "
        f"ORDER BY COUNT(DISTINCT {patient}) DESC, e.agent",
        (org, start, end, threshold),
    )
    events = await tx.fetchall(
        "SELECT e.agent, SUM(e.items) FROM audit_event e WHERE e.org = %s AND e.recorded >= %s "
        "AND e.recorded < %s AND e.agent IS NOT NULL GROUP BY e.agent",
        (org, start, end),
    )
    per_agent = {agent: int(n) for agent, n in events}
    return [Volume(agent, int(n), per_agent.get(agent, 0)) for agent, n in rows]


async def installed(db: Database) -> bool:
    """True when the database has the audit tables (migration 0006 applied)."""
    async with db.transaction(write=False) as tx:
        if tx.dialect == "postgresql":
            row = await tx.fetchone("SELECT to_regclass('audit_chain') IS NOT NULL")
            return bool(row and row[0])
        row = await tx.fetchone("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'audit_chain'")
        return row is not None


async def heads(db: Database) -> dict[int, tuple[int, bytes]]:
    """Every chain's head (seq, hash): export these off the database as verification anchors."""
    async with db.transaction(write=False) as tx:
        rows = await tx.fetchall("SELECT chain, seq, hash FROM audit_chain ORDER BY chain")
    return {int(c): (int(s), bytes(h)) for c, s, h in rows}


# ---------------------------------------------------------------- verification


async def verify(db: Database, key: bytes, *,
                 anchors: Mapping[int, tuple[int, bytes]] | None = None,
                 batch: int = 2000) -> VerifyReport:
    """Walk every chain, recompute every hash and link, and check each chain's signed head
    (and the external `anchors`, chain → (seq, hash), if given). Read-only; safe while the
    server appends (a head is read after the events it covers, see `_walk`)."""
    report = VerifyReport()
    anchors = anchors or {}
    async with db.transaction(write=False) as tx:
        found = await tx.fetchall("SELECT chain FROM audit_chain UNION SELECT DISTINCT chain "
                                  "FROM audit_event")
        for chain in sorted({int(r[0]) for r in found} | set(anchors)):
            report.chains += 1
            await _verify_chain(tx, key, chain, anchors.get(chain), batch, report)
    return report


class _Walk:
    """The state of walking one chain in sequence order."""

    def __init__(self, chain: int, report: VerifyReport, anchor_seq: int | None) -> None:
        self.chain = chain
        self.report = report
        self.last = 0  # highest sequence seen
        self.prev = ZERO_HASH  # hash of the record at `last`, as stored
        self.anchor_seq = anchor_seq
        self.anchor_hash: bytes | None = None  # the stored hash at `anchor_seq`

    def check(self, rec: AuditRecord, index_rows: list[tuple[str, int]] | None) -> None:
        """Judge `rec`; `index_rows` are its rows in SQLite's patient index (None: no such
        index to check, PostgreSQL's GIN is the database's own)."""
        problems, chain, seq = self.report.problems, self.chain, rec.seq
        if index_rows is not None and (
                sorted(p for p, _ in index_rows) != sorted(set(rec.entry.patients))
                or any(recorded != rec.entry.recorded for _, recorded in index_rows)):
            problems.append(Problem(chain, seq, "patients-mismatch"))
        if seq != self.last + 1:
            problems.append(Problem(chain, seq, "gap"))
        elif rec.prev_hash != self.prev:
            problems.append(Problem(chain, seq, "broken-link"))
        if record_hash(chain, seq, rec.prev_hash, rec.entry) != rec.hash:
            problems.append(Problem(chain, seq, "hash-mismatch"))
        # Judge the next record against this one as stored, so one tampered record is
        # reported once rather than as a cascade.
        self.last, self.prev = seq, rec.hash
        if seq == self.anchor_seq:
            self.anchor_hash = rec.hash
        self.report.events += rec.entry.items


async def _walk(tx: Tx, walk: _Walk, batch: int, upto: int | None = None) -> None:
    bound = "" if upto is None else " AND e.seq <= %s"
    while True:
        params: tuple[int, ...] = (walk.chain, walk.last) + (() if upto is None else (upto,))
        rows = await tx.fetchall(
            f"SELECT {_EVENT_COLS} FROM audit_event e WHERE e.chain = %s AND e.seq > %s{bound} "
            f"ORDER BY e.seq LIMIT {int(batch)}", params)
        if not rows:
            return
        index = (None if tx.dialect == "postgresql" else
                 await _patients_between(tx, walk.chain, walk.last, int(rows[-1][1])))
        for row in rows:
            walk.check(_record(row), None if index is None else index.get(int(row[1]), []))


async def _verify_chain(tx: Tx, key: bytes, chain: int, anchor: tuple[int, bytes] | None,
                        batch: int, report: VerifyReport) -> None:
    problems = report.problems
    walk = _Walk(chain, report, anchor[0] if anchor else None)
    await _walk(tx, walk, batch)
    # The head is read after the walk: a head and its event commit together, so a head read
    # now covers at least every event seen; events appended meanwhile are walked up to it.
    head = await tx.fetchone("SELECT seq, hash, mac FROM audit_chain WHERE chain = %s", (chain,))
    if head is None:
        if walk.last:
            problems.append(Problem(chain, walk.last, "head-missing"))
    else:
        head_seq, head_hash, mac = int(head[0]), bytes(head[1]), bytes(head[2])
        if not hmac.compare_digest(mac, _mac(key, chain, head_seq, head_hash)):
            problems.append(Problem(chain, head_seq, "checkpoint-invalid"))
        if walk.last > head_seq:
            problems.append(Problem(chain, head_seq + 1, "beyond-checkpoint"))
        else:
            await _walk(tx, walk, batch, upto=head_seq)
            if walk.last < head_seq:
                problems.append(Problem(chain, walk.last, "truncated"))
            elif head_seq and walk.prev != head_hash:
                problems.append(Problem(chain, head_seq, "checkpoint-mismatch"))
    if anchor is not None:
        anchor_seq, anchor_hash = anchor
        if anchor_seq > walk.last:
            problems.append(Problem(chain, walk.last, "truncated"))
        elif anchor_seq and walk.anchor_hash != anchor_hash:
            problems.append(Problem(chain, anchor_seq, "anchor-mismatch"))


async def _patients_between(tx: Tx, chain: int, after: int,
                            upto: int) -> dict[int, list[tuple[str, int]]]:
    """SQLite's patient index rows of `chain` in (after, upto]: seq → [(patient, recorded)]."""
    rows = await tx.fetchall(
        "SELECT seq, patient_id, recorded FROM audit_patient WHERE chain = %s AND seq > %s "
        "AND seq <= %s ORDER BY seq, patient_id", (chain, after, upto))
    out: dict[int, list[tuple[str, int]]] = {}
    for seq, patient, recorded in rows:
        out.setdefault(int(seq), []).append((patient, int(recorded)))
    return out


__all__ = ["AuditEntry", "AuditLog", "AuditRecord", "Problem", "VerifyReport", "Volume",
           "block", "blocks", "break_glass", "chain_for", "checkpoint_key", "heads", "installed",
           "patient_log", "read", "record_hash", "self_declared", "unpack", "unusual_volumes",
           "verify"]
