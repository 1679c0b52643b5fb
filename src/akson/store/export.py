"""The SQL behind `$everything` and Bulk Data `$export`: compartment pages, type streams, job rows.

Everything here runs inside a `Session` of `akson.store.repository`, so what wraps sessions (the
access gate) sees these reads too. Result sets are keyset-paged on `resource.pk`: a page or a
chunk is one bounded query, never the whole result.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from akson.fhir.search import SearchQuery
from akson.store.repository import Page, Session, _stored
from akson.store.search_sql import Scope, Where, compile_where

#: Types a patient's resources point at that belong to nobody's record (shared base data):
#: `$everything` adds them one level deep. Other referenced types are either patient-owned
#: (then they are in the compartment already) or not part of a record.
SHARED_TYPES = ("Practitioner", "PractitionerRole", "Organization", "Location", "Medication",
                "Substance", "HealthcareService")

_COLS = "r.pk, r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content"
_SHARED_MARKS = ", ".join(["%s"] * len(SHARED_TYPES))


# ------------------------------------------------------------------ $everything


@dataclass(frozen=True)
class Members:
    """A set of resource pks as a SQL subquery (a UNION of indexed lookups) and its parameters.

    `ctes` are materialised first: the references of a record are collected from the record
    outwards. Left to itself, a planner may start from the other end (every reference to a
    popular GP) and read a large part of the reference index for one patient.
    """

    ctes: str
    cte_params: tuple[Any, ...]
    sql: str
    params: tuple[Any, ...]


def patient_members(patient_id: str) -> Members:
    """The Patient compartment of `patient_id` plus the shared resources it references.

    The compartment is `resource.patient_id` (set at write time); the references come from the
    `sp_reference` index of the compartment's resources, local references only (`url IS NULL`).
    """
    ctes = (
        "refs AS MATERIALIZED (SELECT DISTINCT ref.target_type, ref.target_id FROM resource o "
        "JOIN sp_reference ref ON ref.res_pk = o.pk WHERE o.patient_id = %s AND ref.url IS NULL "
        f"AND ref.target_type IN ({_SHARED_MARKS}))"
    )
    sql = (
        "SELECT pk FROM resource WHERE patient_id = %s"
        " UNION "
        "SELECT t.pk FROM refs JOIN resource t ON t.res_type = refs.target_type "
        "AND t.res_id = refs.target_id WHERE t.patient_id IS NULL"
    )
    return Members(ctes, (patient_id, *SHARED_TYPES), sql, (patient_id,))


def encounter_members(encounter_id: str) -> Members:
    """The Encounter, the resources that reference it, what it references, and the shared
    resources its referencers reference (one level each)."""
    ctes = (
        "own AS MATERIALIZED (SELECT ref.target_type, ref.target_id FROM resource e "
        "JOIN sp_reference ref ON ref.res_pk = e.pk WHERE e.res_type = 'Encounter' "
        "AND e.res_id = %s AND ref.url IS NULL), "
        "shared AS MATERIALIZED (SELECT DISTINCT ref.target_type, ref.target_id "
        "FROM sp_reference er JOIN sp_reference ref ON ref.res_pk = er.res_pk "
        "WHERE er.target_id = %s AND er.target_type = 'Encounter' AND er.url IS NULL "
        f"AND ref.url IS NULL AND ref.target_type IN ({_SHARED_MARKS}))"
    )
    sql = (
        "SELECT pk FROM resource WHERE res_type = 'Encounter' AND res_id = %s"
        " UNION "
        "SELECT res_pk FROM sp_reference WHERE target_id = %s AND target_type = 'Encounter' "
        "AND url IS NULL"
        " UNION "
        "SELECT t.pk FROM own JOIN resource t ON t.res_type = own.target_type "
        "AND t.res_id = own.target_id"
        " UNION "
        "SELECT t.pk FROM shared JOIN resource t ON t.res_type = shared.target_type "
        "AND t.res_id = shared.target_id WHERE t.patient_id IS NULL"
    )
    return Members(ctes, (encounter_id, encounter_id, *SHARED_TYPES), sql,
                   (encounter_id, encounter_id))


async def members_page(s: Session, members: Members, *, types: Sequence[str] | None,
                       since: int | None, cursor: int | None, count: int,
                       extra: Where | None = None) -> Page:
    """One page of live `members` in pk order (the `_cursor` of the next page is the last pk);
    `extra` is a predicate on alias `r` (the access gate's restriction)."""
    sql = (f"WITH {members.ctes} SELECT {_COLS} FROM resource r WHERE r.pk IN ({members.sql}) "
           "AND NOT r.deleted")
    params: list[Any] = [*members.cte_params, *members.params]
    if extra is not None and extra.sql:
        sql += " AND " + extra.render()
        params += extra.params
    if types:
        sql += f" AND r.res_type IN ({', '.join(['%s'] * len(types))})"
        params += types
    if since is not None:
        sql += " AND r.last_updated >= %s"
        params.append(since)
    if cursor is not None:
        sql += " AND r.pk > %s"
        params.append(cursor)
    rows = await s.tx.fetchall(sql + " ORDER BY r.pk LIMIT %s", (*params, count + 1))
    more = len(rows) > count
    rows = rows[:count]
    items = [_stored(r[1:]) for r in rows]
    next_cursor = int(rows[-1][0]) if more else None
    total = len(items) if cursor is None and not more else None
    return Page(items, next_cursor, None, total)


# ------------------------------------------------------------------ $export streams


@dataclass(frozen=True)
class ExportScope:
    """Which resources an export covers: all (system), every patient's, or a Group's members'.

    `until` is the job's transaction time: nothing changed after it is exported
    (Bulk Data IG, response `transactionTime`).
    """

    level: str  # system | patient | group
    group_pk: int | None = None
    since: int | None = None
    until: int | None = None
    #: The kick-off's `patient` list (POST, Patient and Group level): only these compartments.
    patients: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ExportAccess:
    """What an access policy adds to every export query, as in `Session.search(extra, scope)`.

    `extra` is ANDed to the exported rows (`r`) of every type. `scope(alias, type)` is called for
    the exported rows too (alias `r`, the type being exported: an export reads many types, so a
    policy that depends on the type needs it here) and for every row a `_typeFilter` chain or
    `_has` passes through. Either way the policy filters in the query, never after it.
    """

    extra: Where | None = None
    scope: Scope | None = None


async def group_pk(s: Session, group_id: str) -> int | None:
    """The row of a live Group, whose `member` index rows name the patients of a Group export."""
    row = await s.tx.fetchone(
        "SELECT pk FROM resource WHERE res_type = 'Group' AND res_id = %s AND NOT deleted",
        (group_id,),
    )
    return int(row[0]) if row else None


async def missing_members(s: Session, group: int, limit: int) -> list[str]:
    """Ids of (at most `limit`) local Patients the Group names that are not live on this server:
    their data cannot be exported, which the manifest's `error` files say."""
    rows = await s.tx.fetchall(
        "SELECT DISTINCT m.target_id FROM sp_reference m WHERE m.res_pk = %s "
        "AND m.param = 'member' AND m.target_type = 'Patient' AND m.url IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM resource p WHERE p.res_type = 'Patient' "
        "AND p.res_id = m.target_id AND NOT p.deleted) ORDER BY m.target_id LIMIT %s",
        (group, limit),
    )
    return [str(r[0]) for r in rows]


async def live_patients(s: Session, ids: Sequence[str]) -> set[str]:
    """Which of `ids` are live Patients (the kick-off's `patient` parameter is checked with it)."""
    if not ids:
        return set()
    rows = await s.tx.fetchall(
        "SELECT res_id FROM resource WHERE res_type = 'Patient' AND NOT deleted "
        f"AND res_id IN ({', '.join(['%s'] * len(ids))})", tuple(ids))
    return {str(r[0]) for r in rows}


async def type_chunk(s: Session, res_type: str, scope: ExportScope, *, after_pk: int, limit: int,
                     filters: Sequence[SearchQuery] = (), access: ExportAccess | None = None
                     ) -> list[tuple[int, str, bytes, str | None]]:
    """The next `limit` live resources of `res_type` in `scope` after `after_pk`, as
    (pk, id, JSON, patient id of its compartment or None).

    `filters` are `_typeFilter` queries for this type; a resource matching any of them is
    exported (they are ORed, Bulk Data IG `_typeFilter`). Each is compiled by the search
    compiler, so a filter means exactly what the same search means. `access` (see
    `ExportAccess`) restricts the rows inside the same statement.
    """
    sql = ("SELECT r.pk, r.res_id, r.content, r.patient_id FROM resource r "
           "WHERE r.res_type = %s AND r.pk > %s AND NOT r.deleted")
    params: list[Any] = [res_type, after_pk]
    if scope.level == "patient":
        sql += " AND r.patient_id IS NOT NULL"
    elif scope.level == "group":
        # Group.member.entity as indexed (search parameter Group-member), local Patients only.
        sql += (" AND r.patient_id IN (SELECT target_id FROM sp_reference WHERE res_pk = %s "
                "AND param = 'member' AND target_type = 'Patient' AND url IS NULL)")
        params.append(scope.group_pk)
    if scope.patients is not None:
        sql += f" AND r.patient_id IN ({', '.join(['%s'] * len(scope.patients)) or 'NULL'})"
        params += scope.patients
    if scope.since is not None:
        sql += " AND r.last_updated >= %s"
        params.append(scope.since)
    if scope.until is not None:
        sql += " AND r.last_updated <= %s"
        params.append(scope.until)
    policy = access.scope if access else None
    if filters:
        ors = []
        for query in filters:
            where = compile_where(query, scope=policy)
            ors.append("(" + where.render() + ")")
            params += where.params
        sql += " AND (" + " OR ".join(ors) + ")"
    for added in (access.extra if access else None, policy("r", res_type) if policy else None):
        if added is not None and added.sql:
            sql += " AND " + added.render()
            params += added.params
    rows = await s.tx.fetchall(sql + " ORDER BY r.pk LIMIT %s", (*params, limit))
    return [(int(r[0]), str(r[1]), r[2] if isinstance(r[2], bytes) else bytes(r[2]),
             None if r[3] is None else str(r[3])) for r in rows]


# ------------------------------------------------------------------ job rows


@dataclass(frozen=True)
class Job:
    """One export job as stored (times in µs since the epoch, UTC)."""

    id: str
    status: str  # queued | running | completed | failed | cancelled | expired
    request: str
    params: str
    progress: str | None
    error: str | None
    created: int
    finished: int | None
    transaction_time: int | None
    manifest: str | None
    worker: str | None

    @property
    def requester(self) -> str | None:
        """Who asked for the export, as the API recorded it in the job's parameters (no column:
        the schema stays as it is); only they may poll, download or cancel."""
        value = orjson.loads(self.params).get("requester")
        return value if isinstance(value, str) else None


_JOB_COLS = ("id, status, request, params, progress, error, created, finished, transaction_time, "
             "manifest, worker")


def _job(row: Sequence[Any]) -> Job:
    return Job(*row)


async def create_job(s: Session, request: str, params: str, now: int) -> str:
    """Queue a job; returns its id (a random UUID: the status URL is not guessable)."""
    job_id = str(uuid.uuid4())
    await s.tx.execute(
        "INSERT INTO export_job (id, status, request, params, progress, created) "
        "VALUES (%s, 'queued', %s, %s, 'queued', %s)",
        (job_id, request, params, now),
    )
    return job_id


async def get_job(s: Session, job_id: str, *, requester: str | None = None) -> Job | None:
    """The job, or None if unknown — or, when `requester` is given, if someone else asked for
    it (to that caller another's job does not exist)."""
    row = await s.tx.fetchone(f"SELECT {_JOB_COLS} FROM export_job WHERE id = %s", (job_id,))
    job = _job(row) if row else None
    if job is not None and requester is not None and job.requester != requester:
        return None
    return job


async def has_work(s: Session) -> bool:
    """Whether any job is queued or running: an idle server polls with this read, not a write."""
    row = await s.tx.fetchone(
        "SELECT 1 FROM export_job WHERE status IN ('queued', 'running') LIMIT 1")
    return row is not None


async def claim_job(s: Session, worker: str, now: int, stale_before: int) -> Job | None:
    """Take the oldest queued job (or a running one whose worker stopped beating) for `worker`.

    One statement, so two workers cannot both take a job: PostgreSQL skips rows another
    transaction has locked; SQLite write transactions are exclusive anyway.
    """
    lock = " FOR UPDATE SKIP LOCKED" if s.dialect == "postgresql" else ""
    row = await s.tx.fetchone(
        "UPDATE export_job SET status = 'running', worker = %s, heartbeat = %s, "
        "started = %s, transaction_time = %s, progress = 'started' "
        "WHERE id = (SELECT id FROM export_job WHERE status = 'queued' "
        "OR (status = 'running' AND heartbeat < %s) ORDER BY created LIMIT 1" + lock + ") "
        f"RETURNING {_JOB_COLS}",
        (worker, now, now, now, stale_before),
    )
    return _job(row) if row else None


async def beat(s: Session, job_id: str, worker: str, progress: str, now: int) -> bool:
    """Record progress; False when the job is no longer this worker's (cancelled or reclaimed)."""
    return await _changed(s, "UPDATE export_job SET progress = %s, heartbeat = %s "
                          "WHERE id = %s AND worker = %s AND status = 'running'",
                          (progress, now, job_id, worker))


async def finish_job(s: Session, job_id: str, worker: str, manifest: str, now: int) -> bool:
    return await _changed(s, "UPDATE export_job SET status = 'completed', manifest = %s, "
                          "finished = %s, progress = 'completed' "
                          "WHERE id = %s AND worker = %s AND status = 'running'",
                          (manifest, now, job_id, worker))


async def fail_job(s: Session, job_id: str, worker: str, error: str, now: int) -> bool:
    return await _changed(s, "UPDATE export_job SET status = 'failed', error = %s, finished = %s, "
                          "progress = 'failed' WHERE id = %s AND worker = %s AND status = 'running'",
                          (error, now, job_id, worker))


async def requeue_job(s: Session, job_id: str, worker: str) -> None:
    """Hand a running job back to the queue (the server is stopping); it restarts from scratch."""
    await s.tx.execute(
        "UPDATE export_job SET status = 'queued', worker = NULL, progress = 'queued' "
        "WHERE id = %s AND worker = %s AND status = 'running'",
        (job_id, worker),
    )


async def cancel_job(s: Session, job_id: str, now: int) -> bool:
    """Mark a job cancelled (Bulk Data IG, delete request); False if unknown, cancelled or expired."""
    return await _changed(s, "UPDATE export_job SET status = 'cancelled', finished = %s, "
                          "manifest = NULL, progress = 'cancelled' "
                          "WHERE id = %s AND status NOT IN ('cancelled', 'expired')", (now, job_id))


async def expired_jobs(s: Session, before: int, limit: int) -> list[str]:
    """Completed or failed jobs that finished before `before`: their time to be downloaded is
    over (`AKSON_EXPORT_RETENTION_SECONDS`)."""
    rows = await s.tx.fetchall(
        "SELECT id FROM export_job WHERE status IN ('completed', 'failed') AND finished < %s "
        "ORDER BY finished LIMIT %s", (before, limit))
    return [str(r[0]) for r in rows]


async def expire_job(s: Session, job_id: str, before: int) -> bool:
    """Mark a job `expired` once its files are gone: the manifest goes too. False if it was not
    (or is no longer) a completed or failed job that finished before `before`."""
    return await _changed(s, "UPDATE export_job SET status = 'expired', manifest = NULL, "
                          "progress = 'expired' WHERE id = %s "
                          "AND status IN ('completed', 'failed') AND finished < %s",
                          (job_id, before))


async def _changed(s: Session, update: str, params: tuple[Any, ...]) -> bool:
    """Run a conditional UPDATE of one job; whether it matched. RETURNING rather than a row
    count: in a PostgreSQL pipeline (write sessions) the count is not known until commit."""
    return await s.tx.fetchone(update + " RETURNING id", params) is not None
