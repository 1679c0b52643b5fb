"""The one gate: a store session wrapped so every read and write passes the access policy.

`Gate.session(principal)` (or `Gate.guard(session, principal)` on a session the caller opened)
gives a `GuardedSession` with the reads and writes the API uses — read, vread, search,
`_include`/`_revinclude`, history, `$everything`, export rows, create/update/delete. Each applies
the caller's `Plan` (akson.access.policy) inside the SQL statement (akson.store.access_sql), never
after it, so no denied resource or count leaks; each hands an `AuditIntent` to an `AuditSink`.

Denials (docs/adr/0006-access-gate.md): a read, vread, instance history, update or delete of a
resource the caller may not see raises 403 with one fixed text, the same whether the resource
exists or not (a caller without full access cannot tell "denied" from "not there"); a search
never fails for lack of access to a patient: the patient's resources are simply not found.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from akson.access import policy as pol
from akson.access.principal import Principal
from akson.fhir import indexing, jsonio
from akson.fhir.naming import DNR_SYSTEM, FHN_SYSTEM, FNR_SYSTEM
from akson.fhir.outcome import FhirError
from akson.fhir.search import Clause, SearchQuery
from akson.store import access_sql as acl
from akson.store import export as store_export
from akson.store import purge as store_purge
from akson.store.audit_log import head_moved
from akson.store.bulk import (
    CopyChunk,
    Prepared,
    bulk_create,
    bulk_create_copy_ready,
    bulk_create_prepared,
    keys_of,
)
from akson.store.database import Tx
from akson.store.include import Included, fetch_included
from akson.store.repository import Page, ResourceStore, Session, Stored

#: The one text of every denial: it says nothing about whether the resource exists.
DENIED = "Access denied, or the resource is not available to you"
PERSON_ID_SYSTEMS = (FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM)
_ROLE_CODE_V3 = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
#: = akson.registry.mapping.PARENTAL_RESPONSIBILITY_EXT (the registry sits above this layer).
PARENTAL_RESPONSIBILITY_EXT = "https://akson.no/fhir/StructureDefinition/parental-responsibility"


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, 1.3 µs
# for 18 fields against 0.17, and one is made per access. Nothing changes one once made.
@dataclass(slots=True)
class AuditIntent:
    """One access to hand to the audit log: who, what, which records, why, and the outcome.

    Never holds a national id: the caller is named by kind, subject, HPR number and orgs;
    records by Patient id.
    """

    action: str  # read | vread | search | include | history | everything | create | update | delete
    outcome: str  # allowed | denied
    at: int  # µs since the epoch, UTC
    kind: str
    subject: str
    client_id: str
    name: str | None
    hpr_number: str | None
    orgnr_parent: str | None
    orgnr_child: str | None
    purpose: str | None
    break_glass: bool
    user_selected: bool
    reason: str | None  # decision_ref description (self-declared, break-the-glass)
    policy_reason: str
    resource_type: str | None  # None when the resources are of several types
    resource_ids: tuple[str, ...] = ()  # ids of `resource_type`, else "Type/id"
    patients: tuple[str, ...] = ()


class AuditSink(Protocol):
    """Where audit intents go (akson.access.audit.ChainedAuditSink: the hash-chained log).

    `tx` is the write session's transaction (None in a read session), so a write and its record
    commit or roll back together; `principal` adds what an intent does not carry (the
    attestation's decision-ref id, toa). `flush()` runs after the session's transaction ended,
    for records that must survive its rollback (denials in a write session).
    """

    async def record(self, intent: AuditIntent, tx: Tx | None = None,
                     principal: Principal | None = None) -> None: ...

    async def flush(self) -> None: ...


@runtime_checkable
class BufferedSink(AuditSink, Protocol):
    """A sink of one session that holds a write transaction's records until its end."""

    async def before_commit(self, tx: Tx, *, checked_at_commit: bool = False) -> None:
        """Append the held records of the write transaction `tx`, as its last statements
        (`checked_at_commit`: AuditLog.append_many)."""
        ...

    def rolled_back(self) -> None:
        """The write transaction ended without committing (called before `flush`)."""
        ...


@runtime_checkable
class RequestSinks(Protocol):
    """A sink factory: `begin()` gives each guarded session a buffering sink of its own."""

    def begin(self) -> BufferedSink: ...


class MemoryAuditSink:
    """An audit sink that keeps the intents in a list (tests, development)."""

    def __init__(self) -> None:
        self.intents: list[AuditIntent] = []

    async def record(self, intent: AuditIntent, tx: Tx | None = None,
                     principal: Principal | None = None) -> None:
        self.intents.append(intent)

    async def flush(self) -> None:
        return None


_Found = TypeVar("_Found", Page, Included)
_T = TypeVar("_T")
log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Gate:
    """Opens guarded sessions: the policy and the audit sink around a `ResourceStore`."""

    def __init__(self, store: ResourceStore, sink: AuditSink, policy: pol.Policy | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.store = store
        self.sink = sink
        self.policy = policy or pol.Policy()
        self.clock = clock
        # Decided once: a runtime Protocol check costs more than a whole policy decision.
        self._per_session = isinstance(sink, RequestSinks)

    @asynccontextmanager
    async def session(self, principal: Principal, *, write: bool = False, bulk: bool = False,
                      checked_at_commit: bool = False) -> AsyncIterator[GuardedSession]:
        """One transaction as `principal` sees it; the sink is flushed after it ends.

        With a sink that buffers per request (`RequestSinks.begin()`, e.g. the chained log's),
        this session gets a buffer of its own: a write session's records are appended as the
        transaction's last statements (`before_commit`), the rest after it ended (`flush`).
        `checked_at_commit` is for `run`, which can run the body again.
        """
        sink = cast(RequestSinks, self.sink).begin() if self._per_session else self.sink
        buffered = write and self._per_session
        try:
            async with self.store.session(write=write, bulk=bulk) as s:
                guarded = await self.guard(s, principal, write=write, sink=sink)
                yield guarded
                if buffered:
                    await cast(BufferedSink, sink).before_commit(
                        s.tx, checked_at_commit=checked_at_commit)
        except BaseException:
            if buffered:
                cast(BufferedSink, sink).rolled_back()
            raise
        finally:
            await sink.flush()

    async def run(self, principal: Principal, work: Callable[[GuardedSession], Awaitable[_T]],
                  *, write: bool = False) -> _T:
        """`work(session)` in a session as `principal`; its result.

        A write's audit append is checked at its commit (AuditLog.append_many), so a pipelined
        write is one round trip (ADR 0017). When another process had moved the audit chain's
        head meanwhile, the commit fails, nothing is written, and `work` runs once more, with
        the chain locked. So `work` may run twice: it must change nothing but the database,
        through the session.
        """
        if write:
            try:
                async with self.session(principal, write=True, checked_at_commit=True) as s:
                    return await work(s)
            except Exception as exc:
                if not head_moved(exc):
                    raise
                log.info("a write ran again: its audit chain had moved")
        async with self.session(principal, write=write) as s:
            return await work(s)

    async def settle(self) -> None:
        """Wait until the audit records this process handed over are in the log (a sink that
        writes routine reads' records just after their responses, akson.access.audit)."""
        settle = getattr(self.sink, "settle", None)
        if settle is not None:
            await settle()

    async def guard(self, s: Session, principal: Principal, *, write: bool = False,
                    sink: AuditSink | None = None) -> GuardedSession:
        """Wrap a session the caller opened (`write`: it is a write transaction, whose records
        go into it): look up the facts, decide, return the guard. The caller flushes the sink
        once the transaction has ended."""
        now = self.clock()
        facts = await gather_facts(s, principal, now.date())
        return GuardedSession(s, principal, pol.plan(principal, now, facts, self.policy),
                              sink or self.sink, now, write=write)


# ------------------------------------------------------------------ facts


_NO_FACTS = pol.Facts()


async def gather_facts(s: Session, principal: Principal, today: date) -> pol.Facts:
    """What the policy needs to know about the caller's patients, looked up unrestricted."""
    if principal.kind == "citizen" and principal.national_id:
        found = await acl.patients_by_identifier(s, PERSON_ID_SYSTEMS, [principal.national_id])
        own = found.get(principal.national_id)
        if own is None:
            return _NO_FACTS
        return pol.Facts(self_patient=own, children=await _children(s, own))
    if principal.kind != "practitioner" or not (principal.hpr_number and principal.orgnr_child
                                                and principal.orgnr_parent):
        return _NO_FACTS
    practitioners, units, entity = await acl.caller_resources(
        s, principal.hpr_number, principal.orgnr_child, principal.orgnr_parent)
    ids: list[str] = []
    cr = principal.care_relationship
    if cr is not None and (cr.user_selected or cr.purpose_of_use == "BTG"):
        found = await acl.patients_by_identifier(s, PERSON_ID_SYSTEMS, list(cr.patients))
        ids = [found[n] for n in cr.patients if n in found]
        if principal.launch_patient:
            ids.append(principal.launch_patient)
    return pol.Facts(attested_patients=tuple(dict.fromkeys(ids)), practitioner_ids=practitioners,
                     unit_ids=units, legal_entity_ids=entity)


async def _children(s: Session, parent_id: str) -> tuple[pol.ChildFacts, ...]:
    """The parent's children as FREG states them: RelatedPersons in the parent's record with
    relationship CHILD, their parental-responsibility extension, and the child's Patient."""
    kids: dict[str, bool] = {}
    for raw in await acl.referring(s, "RelatedPerson", "patient", "Patient", parent_id):
        rel = jsonio.loads(raw)
        codes = {(c.get("system"), c.get("code")) for concept in rel.get("relationship") or ()
                 for c in concept.get("coding") or ()}
        if (_ROLE_CODE_V3, "CHILD") not in codes:
            continue
        responsible = any(e.get("url") == PARENTAL_RESPONSIBILITY_EXT
                          for e in rel.get("extension") or ())
        for ident in rel.get("identifier") or ():
            if ident.get("system") in PERSON_ID_SYSTEMS and ident.get("value"):
                kids[ident["value"]] = kids.get(ident["value"], False) or responsible
    if not kids:
        return ()
    found = await acl.patients_by_identifier(s, PERSON_ID_SYSTEMS, list(kids))
    docs = await acl.contents(s, "Patient", [parent_id, *found.values()])
    parent = jsonio.loads(docs[parent_id]) if parent_id in docs else {}
    out = []
    for nin, child_id in found.items():
        if child_id not in docs:
            continue
        child = jsonio.loads(docs[child_id])
        out.append(pol.ChildFacts(
            patient_id=child_id, birth_date=_date(child.get("birthDate")),
            parental_responsibility=kids[nin],
            shares_address=pol.shares_address(parent, child),
            parents_refused=pol.NORN_FORANS in pol.security_labels(child)))
    return tuple(out)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# ------------------------------------------------------------------ the guarded session


_ADDRESS_PROTECTION = pol.ADDRESS_PROTECTION_SYSTEM.encode()


def _address_params(clauses: Sequence[Clause]) -> bool:
    """Does the search match on an address anywhere (also in a chain or `_has`)?"""
    for c in clauses:
        if c.name.startswith("address") or c.name == "municipality":
            return True
        if c.chain and _address_params([inner for _, inner in c.chain.targets]):
            return True
        if c.has and _address_params([c.has.inner]):
            return True
    return False


class GuardedSession:
    """A store session as one caller sees it (see the module docstring)."""

    def __init__(self, s: Session, principal: Principal, plan: pol.Plan, sink: AuditSink,
                 now: datetime, *, write: bool = False) -> None:
        self._s = s
        self._write = write
        if write:  # each version records who wrote it: municipality and unit (orgnr)
            s.writer = (principal.orgnr_parent, principal.orgnr_child)
        self.principal = principal
        self.plan = plan
        self._sink = sink
        self._now_us = int(now.timestamp() * 1_000_000)
        #: Set by the results service's ingestion alone (akson.results.ingest): only such a
        #: session writes resources tagged `origin|results`, or changes stored ones.
        self.writes_results = False
        self._seen: set[tuple[str, str]] = set()

    @property
    def restriction(self) -> acl.Restriction:
        return self.plan.restriction

    @property
    def registry(self) -> Any:
        """The search parameter registry of the underlying session."""
        return self._s.registry

    @property
    def bookkeeping(self) -> Session:
        """The underlying session, for what is not a resource read or write: export and reindex
        job rows, SearchParameter index maintenance, terminology for `$expand`. Never for
        reading or writing resources on a caller's behalf: that is what this class is for."""
        return self._s

    @property
    def reaches_all(self) -> bool:
        """Does the caller reach every record and type, so only labels or blocks can hide a
        resource (a system client with `system/*` scopes)? Such a caller gets the ordinary 404
        for an id that was never stored: telling it apart from a label-hidden one reveals no
        record it could not otherwise name (docs/adr/0006-access-gate.md, "Denials")."""
        r = self.restriction
        return r.unrestricted or (r.all_patients and r.shared and r.shared_types is None
                                  and r.types is None)

    # ------------------------------------------------------------------ audit and denial

    async def _audit(self, action: str, outcome: str, res_type: str | None,
                     ids: Sequence[str] = (), patients: Sequence[str] = ()) -> None:
        p, cr = self.principal, self.principal.care_relationship
        await self._sink.record(AuditIntent(
            action=action, outcome=outcome, at=self._now_us, kind=p.kind, subject=p.subject,
            client_id=p.client_id, name=p.name, hpr_number=p.hpr_number,
            orgnr_parent=p.orgnr_parent, orgnr_child=p.orgnr_child, purpose=self.plan.purpose,
            break_glass=self.plan.break_glass, user_selected=self.plan.user_selected,
            reason=cr.decision_ref_description if cr else None,
            policy_reason=self.plan.reason, resource_type=res_type,
            resource_ids=tuple(ids), patients=tuple(sorted(set(patients)))),
            self._s.tx if self._write else None, p)

    async def _deny(self, action: str, res_type: str | None, ids: Sequence[str] = ()) -> FhirError:
        await self._audit(action, "denied", res_type, ids)
        return FhirError(403, DENIED, "forbidden")

    def _redact(self, stored: Stored, current: AbstractSet[tuple[str, str]] = frozenset()) -> Stored:
        if stored.content is None or stored.res_type not in pol.ADDRESS_TYPES:
            return stored
        if not current and _ADDRESS_PROTECTION not in stored.content:
            # Stored JSON is orjson's, which never escapes a URL: without the address-protection
            # system in its bytes it has no such label, and nothing to hide (no parse).
            return stored
        doc = jsonio.loads(stored.content)
        out = pol.redact(doc, self.plan, current)
        return stored if out is None else replace(stored, content=jsonio.dumps(out))

    def _redact_all(self, found: _Found) -> _Found:
        """`found` with its items redacted: the same object when none needed it (the common
        case; a copy of the page cost more than the check)."""
        items = [self._redact(i) for i in found.items]
        if all(a is b for a, b in zip(items, found.items, strict=True)):
            return found
        return replace(found, items=items)

    async def _visible(self, res_type: str, res_id: str) -> bool:
        if self.writes_results and (res_type, res_id) in self._seen:
            return True  # ingestion writes many resources into one record in one transaction
        visible = await acl.visible(self._s, self.restriction, res_type, res_id)
        if visible and self.writes_results:
            self._seen.add((res_type, res_id))
        return visible

    # ------------------------------------------------------------------ reads

    async def read(self, res_type: str, res_id: str, *, for_update: bool = False
                   ) -> Stored | None:
        """The current version (possibly a deletion marker). None only for a caller that reaches
        every record when it never existed; anyone else gets 403 for "denied" and "not there"
        alike. `for_update` locks the row (a read before a write, such as PATCH)."""
        if not self.plan.permits(res_type, "r"):
            raise await self._deny("read", res_type, [res_id])
        found = await acl.read_visible(self._s, self.restriction, res_type, res_id,
                                       for_update=for_update)
        if found is None and self.reaches_all:
            return None
        if found is None or not found[1] or pol.labels_hide(self.restriction, found[0].content,
                                                             found[2]):
            raise await self._deny("read", res_type, [res_id])
        stored, _, patient = found
        if self.writes_results:
            self._seen.add((res_type, res_id))
        await self._audit("read", "allowed", res_type, [res_id], [patient] if patient else [])
        return self._redact(stored)

    async def vread(self, res_type: str, res_id: str, version: int) -> Stored | None:
        """One version, if the resource is visible now and that version's labels allow it."""
        if not self.plan.permits(res_type, "r"):
            raise await self._deny("vread", res_type, [res_id])
        stored = await self._s.vread(res_type, res_id, version)
        if stored is None and self.reaches_all:
            return None
        if stored is None or not await self._visible(res_type, res_id):
            raise await self._deny("vread", res_type, [res_id])
        patient = await acl.patient_of(self._s, res_type, res_id)
        if stored.content is not None and pol.hidden_by_labels(
                self.restriction, pol.security_labels(jsonio.loads(stored.content)), patient):
            raise await self._deny("vread", res_type, [res_id])
        current = (await acl.labels_of(self._s, res_type, [res_id])).get(res_id, set())
        await self._audit("vread", "allowed", res_type, [res_id], [patient] if patient else [])
        return self._redact(stored, current)

    async def exists(self, res_type: str, res_id: str) -> bool:
        """Is there a live resource the caller may see? (False for hidden ones, without audit.)"""
        return (self.plan.permits(res_type, "r") and await self._s.exists(res_type, res_id)
                and await self._visible(res_type, res_id))

    async def lock_condition(self, res_type: str, condition: str) -> None:
        """`Session.lock_condition` (serialises conditional writes; reads nothing)."""
        await self._s.lock_condition(res_type, condition)

    def _search_plan(self, query: SearchQuery) -> pol.Plan:
        if _address_params(query.clauses):
            return pol.with_rules(self.plan, pol.address_search_rules(self.plan))
        return self.plan

    async def search(self, query: SearchQuery, *, base_url: str = "") -> Page:
        """A search with the restriction in the statement: matches, total and paging."""
        res_type = query.resource_type
        if (res_type and not self.plan.permits(res_type, "s")) or not self.plan.allowed:
            raise await self._deny("search", res_type)
        r = self._search_plan(query).restriction
        page = await self._s.search(query, base_url=base_url,
                                    extra=acl.restrict(r, "r", res_type or ""),
                                    scope=acl.scope_of(r))
        patients = page.patients if page.patients is not None else \
            await acl.patients_of(self._s, page.items)
        await self._audit("search", "allowed", res_type, [i.res_id for i in page.items],
                          list(patients.values()))
        return self._redact_all(page)

    async def include(self, query: SearchQuery, matches: Sequence[Stored]) -> Included:
        """The `_include` / `_revinclude` resources of a page, restricted like the page."""
        r = self._search_plan(query).restriction
        included = await fetch_included(self._s, query, matches, scope=acl.scope_of(r))
        patients = await acl.patients_of(self._s, included.items)
        await self._audit("include", "allowed", None,
                          [f"{i.res_type}/{i.res_id}" for i in included.items],
                          list(patients.values()))
        return self._redact_all(included)

    async def history(self, res_type: str | None, res_id: str | None, *, since: int | None,
                      count: int, cursor: int | None) -> Page:
        """Versions newest first of the resources the caller may see; a version whose own labels
        hide it is left out, and older versions of a protected person are redacted."""
        if res_type and not self.plan.permits(res_type, "r") or not self.plan.allowed:
            raise await self._deny("history", res_type, [res_id] if res_id else [])
        if res_type and res_id and not self.restriction.unrestricted \
                and not await self._visible(res_type, res_id):
            raise await self._deny("history", res_type, [res_id])
        page = await self._s.history(res_type, res_id, since=since, count=count, cursor=cursor,
                                     extra=acl.restrict(self.restriction, "r", res_type or ""))
        patients = await acl.patients_of(self._s, page.items)
        kept = [i for i in page.items if i.content is None or not pol.hidden_by_labels(
            self.restriction, pol.security_labels(jsonio.loads(i.content)),
            patients.get((i.res_type, i.res_id)))]
        persons = {i.res_id for i in kept if i.res_type in pol.ADDRESS_TYPES}
        current: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for person_type in pol.ADDRESS_TYPES:
            ids = sorted({i.res_id for i in kept if i.res_type == person_type} & persons)
            for rid, labels in (await acl.labels_of(self._s, person_type, ids)).items():
                current[(person_type, rid)] = labels
        items = [self._redact(i, current.get((i.res_type, i.res_id), set())) for i in kept]
        await self._audit("history", "allowed", res_type, [res_id] if res_id else [],
                          [patients[(i.res_type, i.res_id)] for i in kept
                           if (i.res_type, i.res_id) in patients])
        total = len(items) if page.total is not None else None
        return replace(page, items=items, total=total)

    async def everything(self, res_type: str, res_id: str, *, types: Sequence[str] | None,
                         since: int | None, cursor: int | None, count: int) -> Page:
        """`Patient/[id]/$everything` or `Encounter/[id]/$everything`, restricted: the anchor
        must be visible, and every member passes the restriction inside the statement."""
        if res_type not in ("Patient", "Encounter") or not self.plan.permits(res_type, "r"):
            raise await self._deny("everything", res_type, [res_id])
        if not await self._visible(res_type, res_id):
            raise await self._deny("everything", res_type, [res_id])
        members = (store_export.patient_members(res_id) if res_type == "Patient"
                   else store_export.encounter_members(res_id))
        page = await store_export.members_page(self._s, members, types=types, since=since,
                                               cursor=cursor, count=count,
                                               extra=acl.restrict(self.restriction, "r", ""))
        patients = await acl.patients_of(self._s, page.items)
        await self._audit("everything", "allowed", res_type, [res_id], list(patients.values()))
        return self._redact_all(page)

    async def may_export(self, patients: Sequence[str] = ()) -> None:
        """Refuse (403) a Bulk Data export kick-off by a caller that may not export: a system
        client needs a `system/` scope, a practitioner exports what its restriction lets it see
        (`export_access`), a citizen not at all. An allowed kick-off is audited (`export`)."""
        p = self.principal
        ok = self.plan.allowed and (
            p.kind == "practitioner"
            or (p.kind == "system" and any(s.context == "system" for s in self.plan.scopes)))
        if not ok:
            raise await self._deny("export", None)
        await self._audit("export", "allowed", None, (), patients)

    async def record_export(self, res_type: str, patients: Sequence[str]) -> None:
        """Audit (`export`) that a chunk of an export job holds these patients' `res_type`
        data: the kick-off names who asked, these records whose data left. Refused (the job
        fails) when the requester may no longer see records."""
        if not self.plan.allowed:
            raise await self._deny("export", res_type)
        await self._audit("export", "allowed", res_type, (), patients)

    def export_access(self) -> store_export.ExportAccess:
        """What a Bulk Data export of this caller adds to every row query (type_chunk)."""
        return store_export.ExportAccess(scope=acl.scope_of(self.restriction))

    async def purge_tagged(self, patient_id: str, types: Sequence[str],
                           tag: tuple[str, str]) -> int:
        """Hard-delete the patient's resources of `types` that carry the `meta.tag` `tag`, every
        version: a citizen's reservation against storage of their results (DOMAIN.md §5), the
        only hard delete. The citizen may do it for their own record, a system client that
        reaches every record for anyone; it is audited (`purge`). Returns how many were purged."""
        p = self.principal
        own = self.plan.self_patient is not None and self.plan.self_patient == patient_id
        if not (self._write and self.plan.allowed and (own or (p.kind == "system"
                                                               and self.reaches_all))):
            raise await self._deny("purge", "Patient", [patient_id])
        keys = await store_purge.tagged_patient_resources(self._s, patient_id, types, tag)
        purged = await store_purge.purge(self._s, keys)
        await self._audit("purge", "allowed", None, [f"{t}/{i}" for _, t, i in keys],
                          [patient_id])
        return purged

    # ------------------------------------------------------------------ writes

    def _compartment(self, res_type: str, res_id: str, resource: dict[str, Any]) -> str | None:
        doc = {**resource, "resourceType": res_type, "id": res_id}
        return indexing.compartment(doc, self._s.registry)

    def check_type_writable(self, res_type: str) -> None:
        """403 at once, before any other check, for a type this kind of caller never writes
        (`policy.may_write_type`: registers and definitions, system clients only)."""
        if not pol.may_write_type(self.principal, res_type):
            raise FhirError(403, f"{res_type} resources are written by system clients only",
                            "forbidden")

    async def _may_write(self, action: str, res_type: str, res_id: str,
                         resource: dict[str, Any], current: Stored | None,
                         new_patients: AbstractSet[str] = frozenset()) -> None:
        """Refuse (403) a write the caller may not make: to a record it may not see, of a type
        it may not write, or one that would lift a citizen's block."""
        interaction = {"create": "c", "update": "u", "delete": "d"}[action]
        if not self.plan.permits(res_type, interaction):
            raise await self._deny(action, res_type, [res_id])
        if not pol.may_write_type(self.principal, res_type):
            raise await self._deny(action, res_type, [res_id])
        if current is not None and not await self._visible(res_type, res_id):
            raise await self._deny(action, res_type, [res_id])
        before = jsonio.loads(current.content) if current and current.content else {}
        if not self.writes_results and (pol.is_result(resource) or pol.is_result(before)):
            raise FhirError(403, "Results are written by the results service only: deliver a "
                            "correction to /results/ingest", "forbidden")
        if res_type == "Consent" and (pol.is_reservation(resource) or pol.is_reservation(before)):
            owner = self._compartment(res_type, res_id, resource or before)
            if not (self.plan.self_patient is not None and owner == self.plan.self_patient
                    or self.principal.kind == "system" and self.reaches_all):
                raise await self._deny(action, res_type, [res_id])
        if not resource:  # delete
            return
        patient = self._compartment(res_type, res_id, resource)
        writable = self.plan.write_patients
        if writable is not None and patient not in writable:
            raise await self._deny(action, res_type, [res_id])
        if writable is None and patient is not None and not (
                res_type == "Patient" and patient == res_id and current is None) \
                and patient not in new_patients and not self.restriction.unrestricted \
                and not await self._visible("Patient", patient) \
                and not (self.reaches_all and await self._s.read("Patient", patient) is None):
            # A caller reaching every record may write into one whose Patient is not stored
            # (yet); anyone else writes only into records it can see.
            raise await self._deny(action, res_type, [res_id])
        if before and self.plan.self_patient is None and pol.NORS in pol.security_labels(before) \
                and pol.NORS not in pol.security_labels(resource):
            raise await self._deny(action, res_type, [res_id])  # only the citizen lifts NORS
        if res_type == "Consent":
            pol.check_block_consent(resource)

    async def create(self, res_type: str, resource: dict[str, Any], *, res_id: str | None = None
                     ) -> Stored:
        res_id = res_id or str(uuid.uuid4())
        await self._may_write("create", res_type, res_id, resource, None)
        stored = await self._s.create(res_type, resource, res_id=res_id)
        patient = self._compartment(res_type, res_id, resource)
        await self._audit("create", "allowed", res_type, [res_id], [patient] if patient else [])
        return stored

    async def create_many(self, items: Sequence[tuple[str, str, dict[str, Any]]]
                          ) -> list[Stored]:
        """New resources `(type, id, resource)` stored together (a transaction's plain creates,
        `akson.store.bulk`), each checked like `create`; one audit record for all of them.
        Patients created here count as visible to the other items (a new record and its data)."""
        new_patients = {rid for t, rid, _ in items if t == "Patient"}
        for res_type, res_id, resource in items:
            await self._may_write("create", res_type, res_id, resource, None, new_patients)
        stored = await bulk_create(self._s, items, assume_new=True)
        patients = [p for t, rid, doc in items if (p := self._compartment(t, rid, doc))]
        if items:
            await self._audit("create", "allowed", None, [f"{t}/{rid}" for t, rid, _ in items],
                              patients)
        return stored

    async def import_chunk(self, items: Sequence[Prepared] | CopyChunk) -> int:
        """A chunk prepared by `akson import` (validated and indexed in worker processes).

        Only a client that reaches every record and may create and update every type in the
        chunk may bulk-load. New resources are copied in together with one `create` audit
        record naming the patients whose records they join; the caller has refused what only
        the results service or a citizen may write (`policy.bulk_refusal`). An id stored
        already becomes an update through `update`, with all its checks and its own record.
        Returns how many were stored."""
        types = {t for t, _ in keys_of(items)}
        if not (self._write and self.reaches_all and all(
                self.plan.permits(t, "c") and self.plan.permits(t, "u")
                and pol.may_write_type(self.principal, t) for t in types)):
            raise await self._deny("create", None)
        if isinstance(items, CopyChunk):
            count = await bulk_create_copy_ready(self._s, items, new_version=self.update)
            patients = sorted({p for p in items.patients if p})
        else:
            count = len(await bulk_create_prepared(self._s, items, new_version=self.update))
            patients = sorted({i.patient_id for i in items if i.patient_id})
        await self._audit("create", "allowed", None, (), patients)
        return count

    async def update(self, res_type: str, res_id: str, resource: dict[str, Any], *,
                     if_match: int | None = None) -> tuple[Stored, bool]:
        current = await self._s.read(res_type, res_id, for_update=True)
        await self._may_write("update", res_type, res_id, resource, current)
        stored, created = await self._s.update(res_type, res_id, resource, if_match=if_match)
        patient = self._compartment(res_type, res_id, resource)
        await self._audit("update", "allowed", res_type, [res_id], [patient] if patient else [])
        return stored, created

    async def delete(self, res_type: str, res_id: str) -> Stored | None:
        current = await self._s.read(res_type, res_id, for_update=True)
        if current is None and not self.reaches_all:
            raise await self._deny("delete", res_type, [res_id])
        await self._may_write("delete", res_type, res_id, {}, current)
        patient = await acl.patient_of(self._s, res_type, res_id)
        deleted = await self._s.delete(res_type, res_id)
        await self._audit("delete", "allowed", res_type, [res_id], [patient] if patient else [])
        return deleted
