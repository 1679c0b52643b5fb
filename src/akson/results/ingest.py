"""Ingestion: a delivered message → patient matched → results stored through the access gate →
a receipt. Nothing delivered is silently lost.

Every delivery is kept in the inbox (akson.store.results_inbox) with its receipt and bytes:

- unreadable or unusable → `rejected`, in quarantine for operators, receipt `Rejected` with the
  reason (AppRec error code, Volven 8221);
- a report whose patient cannot be identified by FNR or D-number → `unmatched`, waiting in the
  manual matching queue (`resolve`); its other reports are stored;
- the patient has reserved against storage → `reserved`: nothing stored, the bytes dropped;
- otherwise `stored`.

Idempotent: the same bytes again answer the first receipt and change nothing; a re-delivered
report whose content is unchanged writes no new version; a correction writes new versions of the
same resources (ids are deterministic, akson.results.model), so history keeps the earlier ones;
a report older than the stored one (by `issued`) is ignored as stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from akson.access.gate import Gate, GuardedSession
from akson.access.principal import Principal
from akson.fhir import dates, jsonio
from akson.fhir import search as fhir_search
from akson.fhir.identifiers import classify_person_id
from akson.fhir.naming import DNR_SYSTEM, FNR_SYSTEM
from akson.fhir.outcome import FhirError, where
from akson.fhir.validation import validate
from akson.results import model, receipt, release, rights
from akson.results.fhir_bundle import parse_bundle
from akson.results.hl7v2 import parse_oru
from akson.results.kith import parse_svarrapport
from akson.results.model import ParsedMessage, ParsedReport, PatientKey, Rejected
from akson.results.receipt import Error, Receipt, ReportOutcome
from akson.store import results_inbox as inbox
from akson.store.database import is_retryable

#: Media types of the three formats (`POST /results/ingest`).
KITH_XML: Final = "application/xml"
HL7_V2: Final = "x-application/hl7-v2+er7"
FHIR_JSON: Final = "application/fhir+json"
_MEDIA = {KITH_XML: "kith", "text/xml": "kith", HL7_V2: "hl7v2", "application/hl7-v2": "hl7v2",
          FHIR_JSON: "fhir", "application/json": "fhir"}
_PERSON_SYSTEMS = (FNR_SYSTEM, DNR_SYSTEM)
_ATTEMPTS = 3
#: Larger messages are refused unread: no result message needs more, and reading is CPU-bound.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
_INTERNAL = ("The message could not be stored because of an error in this service; it is "
             "kept for operators")
log = logging.getLogger("akson.results")


def format_of(content_type: str | None, data: bytes) -> str | None:
    """"kith", "hl7v2" or "fhir" from the media type, or sniffed from the bytes when there is
    none (files given to `akson results ingest`); None when neither tells."""
    if content_type:
        return _MEDIA.get(content_type.split(";")[0].strip().lower())
    head = data.lstrip(b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n\x0b")[:8]
    if head.startswith(b"MSH"):
        return "hl7v2"
    if head.startswith(b"<") or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "kith"
    if head.startswith(b"{"):
        return "fhir"
    return None


def parse(fmt: str, data: bytes, *, sender: str) -> ParsedMessage:
    """Bytes of a known format → ParsedMessage, or `Rejected`."""
    if fmt == "kith":
        return parse_svarrapport(data)
    if fmt == "hl7v2":
        return parse_oru(data)
    return parse_bundle(data, sender=sender)


@dataclass(frozen=True)
class Delivery:
    """What `Ingestor.ingest` answers: the receipt and the inbox state it left."""

    receipt: Receipt
    state: str


class Ingestor:
    """Stores delivered results as the delivering system client, through the gate."""

    def __init__(self, gate: Gate, policy: release.ReleasePolicy,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.gate = gate
        self.policy = policy
        self.clock = clock

    async def ingest(self, principal: Principal, data: bytes, fmt: str) -> Delivery:
        """Take one message. Refuses (403) a caller that may not deliver results; anything else
        ends in the inbox with a receipt, never in an error the sender must make sense of.

        Deliveries that meet at a unique key or in a deadlock (two creating the same resource at
        once) run again. A message whose mapped resources are not valid R4, or that this service
        fails to store, is kept in quarantine like an unreadable one."""
        digest = hashlib.sha256(data).hexdigest()
        msg, rejected = await _read(fmt, data, principal.client_id)
        for attempt in range(_ATTEMPTS):
            try:
                return await self._deliver(principal, data, fmt, digest, msg, rejected)
            except Rejected as exc:
                msg, rejected = None, exc
            except FhirError:
                raise
            except Exception as exc:
                if is_retryable(exc) and attempt + 1 < _ATTEMPTS:
                    continue
                log.error("results delivery failed type=%s at %s", type(exc).__name__,
                          where(exc))
                msg, rejected = None, Rejected("internal", _INTERNAL)
        return await self._deliver(principal, data, fmt, digest, None, rejected)

    async def _deliver(self, principal: Principal, data: bytes, fmt: str, digest: str,
                       msg: ParsedMessage | None, rejected: Rejected | None) -> Delivery:
        # bulk: a new report's resources are written with COPY (GuardedSession.create_many).
        async with self.gate.session(principal, write=True, bulk=True) as g:
            check_producer(g)
            g.writes_results = True
            s = g.bookkeeping
            await inbox.lock(s, f"digest:{digest}")
            first = await inbox.by_digest(s, digest)
            if first is not None:
                return Delivery(Receipt.loads(first.receipt).again(), first.state)
            now = self.clock()
            if msg is None:
                assert rejected is not None
                answer = Receipt(status=receipt.REJECTED, message_id=None, format=fmt,
                                 errors=(Error(rejected.code, rejected.text),))
                pk = await inbox.add(
                    s, received=_us(now), format=fmt, sender=None,
                    client_id=principal.client_id, message_id=None, digest=digest,
                    state=inbox.REJECTED, reason=rejected.code, detail=rejected.text[:2000],
                    patient_id=None, receipt=b"{}", raw=data)
                return await _answered(s, pk, answer, inbox.REJECTED, now)
            reports = [namespaced(r, principal.client_id) for r in msg.reports]
            outcomes = await self._store(g, reports, await _matches(g, reports), now)
            state = _state(outcomes)
            pk = await inbox.add(
                s, received=_us(now), format=msg.format, sender=msg.sender,
                client_id=principal.client_id, message_id=msg.message_id, digest=digest,
                state=state, reason=None, detail=None,
                patient_id=next((o.patient for o in outcomes if o.patient), None),
                receipt=b"{}", raw=data if state == inbox.UNMATCHED else None)
            return await _answered(s, pk, _receipt(msg, outcomes, state), state, now)

    async def _store(self, g: GuardedSession, reports: list[ParsedReport],
                     patients: list[str | None], now: datetime) -> list[ReportOutcome]:
        """Lock the reports and their patients (in that order, each sorted), then store each in
        its patient's record (None: it waits for manual matching)."""
        s = g.bookkeeping
        for key in sorted({r.report_key for r in reports}):
            await inbox.lock(s, f"report:{key}")
        for patient_id in sorted({p for p in patients if p}):
            await inbox.lock(s, f"patient:{patient_id}")
        return [await self.store_report(g, r, now, p) for r, p in zip(reports, patients,
                                                                       strict=True)]

    async def reprocess(self, principal: Principal, pk: int, *, patient_id: str | None = None,
                        report_key: str | None = None) -> Delivery:
        """Run a waiting delivery again: an unmatched one with the Patient an operator identified
        (`patient_id`, for the one unmatched report `report_key`, or for all of them when they
        name the same person), a rejected one after the reader was fixed. 404 for an unknown
        delivery or one of another client (operators see all), 409 for one not waiting."""
        async with self.gate.session(principal, write=True, bulk=True) as g:
            check_producer(g)
            g.writes_results = True
            s = g.bookkeeping
            row = await _waiting(g, pk)
            data = await inbox.raw(s, pk)
            if data is None:
                raise FhirError(404, f"No kept delivery {pk}", "not-found")
            if patient_id is not None and not (await s.exists("Patient", patient_id)
                                               and await g.exists("Patient", patient_id)):
                raise FhirError(422, f"Patient/{patient_id} is not a stored patient",
                                "business-rule")
            now = self.clock()
            client = row.client_id or principal.client_id
            msg, rejected = await _read(_family(row.format), data, row.sender or client)
            if msg is None:
                assert rejected is not None
                answer = Receipt(status=receipt.REJECTED, message_id=None, format=row.format,
                                 errors=(Error(rejected.code, rejected.text),))
                await inbox.set_state(s, pk, inbox.REJECTED, now=_us(now),
                                      detail=rejected.text[:2000])
                return await _answered(s, pk, answer, inbox.REJECTED, now)
            reports = [namespaced(r, client) for r in msg.reports]
            patients = _chosen(reports, await _matches(g, reports), patient_id, report_key)
            outcomes = await self._store(g, reports, patients, now)
            state = _state(outcomes)
            if state == inbox.STORED and row.state == inbox.UNMATCHED:
                state = inbox.RESOLVED
            await inbox.set_state(s, pk, state, now=_us(now), drop_raw=state != inbox.UNMATCHED,
                                  patient_id=next((o.patient for o in outcomes if o.patient),
                                                  None))
            return await _answered(s, pk, _receipt(msg, outcomes, state), state, now)

    async def discard(self, principal: Principal, pk: int, reason: str) -> None:
        """Close a waiting delivery without storing it, saying why (an operator's decision); its
        bytes are dropped."""
        async with self.gate.session(principal, write=True) as g:
            check_producer(g)
            await _waiting(g, pk)
            await inbox.set_state(g.bookkeeping, pk, inbox.DISCARDED, now=_us(self.clock()),
                                  detail=f"Discarded by an operator: {reason[:500]}",
                                  drop_raw=True)

    async def store_report(self, g: GuardedSession, report: ParsedReport, now: datetime,
                           patient_id: str | None) -> ReportOutcome:
        """Store one report's resources in `patient_id`'s record (None: it waits for manual
        matching). Raises `Rejected` when a mapped resource is not valid R4."""
        if patient_id is None:
            return ReportOutcome(report.report_key, receipt.UNMATCHED, report.status,
                                 detail="The patient could not be identified by national id; "
                                        "the report waits for manual matching")
        if await rights.has_reservation(g, patient_id):
            return ReportOutcome(report.report_key, receipt.RESERVED, report.status,
                                 detail="The patient has reserved against storage of results; "
                                        "the report was not stored", patient=patient_id)
        docs = [dict(r) for r in report.resources]
        dr = docs[0]
        # Compared with what is about to be written, never returned to the caller: the guarded
        # writes that follow are what is checked and audited.
        stored = await g.bookkeeping.read_many([(d["resourceType"], d["id"]) for d in docs])
        old_dr = stored.get(("DiagnosticReport", dr["id"]))
        current_dr = jsonio.loads(old_dr.content) if old_dr and old_dr.content else None
        if current_dr is not None and _older(report.issued, current_dr):
            return ReportOutcome(report.report_key, receipt.STALE, report.status,
                                 detail="A newer version of this report is stored already",
                                 patient=patient_id)
        until = None
        if current_dr is None or release.held(current_dr):
            until = (release.release_time(current_dr) if current_dr else None) or \
                self.policy.release_after(report.category, now)
        if current_dr is not None:
            _keep_earlier_members(current_dr, dr)
        written: list[str] = []
        new: list[tuple[str, str, dict[str, Any]]] = []
        for doc in docs:
            _prepare(doc, patient_id, until)
            _check_valid(doc)
            old = stored.get((doc["resourceType"], doc["id"]))
            if old is None:
                new.append((doc["resourceType"], doc["id"], doc))
            elif old.content is None or _content(jsonio.loads(old.content)) != _content(doc):
                await g.update(doc["resourceType"], doc["id"], doc)  # changed, or deleted before
            else:
                continue
            written.append(f"{doc['resourceType']}/{doc['id']}")
        if new:  # one statement per table and one audit record for the whole report
            await g.create_many(new)
        kept = tuple(f"{d['resourceType']}/{d['id']}" for d in docs)
        outcome = receipt.STORED if written else receipt.UNCHANGED
        return ReportOutcome(report.report_key, outcome, report.status, kept,
                             patient=patient_id)


async def _read(fmt: str, data: bytes, sender: str) -> tuple[ParsedMessage | None,
                                                             Rejected | None]:
    """Parse off the event loop (a large message must not stall other requests); a reader that
    fails in a way it did not foresee rejects the message rather than losing it."""
    if len(data) > MAX_MESSAGE_BYTES:
        return None, Rejected("too-large", f"The message is larger than {MAX_MESSAGE_BYTES} "
                              "bytes, more than any result message needs")
    try:
        return await asyncio.to_thread(parse, fmt, data, sender=sender), None
    except Rejected as exc:
        return None, exc
    except Exception as exc:  # noqa: BLE001 - kept in quarantine; only the type is logged
        log.error("results reader failed format=%s type=%s at %s", fmt, type(exc).__name__,
                  where(exc))
        return None, Rejected("unreadable", "The message could not be read (the reader failed "
                              "on it); it is kept for operators")


async def _answered(s: Any, pk: int, answer: Receipt, state: str, now: datetime) -> Delivery:
    answer = replace(answer, delivery=pk)
    await inbox.set_state(s, pk, state, now=_us(now), receipt=answer.dumps())
    return Delivery(answer, state)


async def _waiting(g: GuardedSession, pk: int) -> inbox.Message:
    """The delivery `pk`, locked, when it waits (unmatched or rejected) and is the caller's
    (operators, with `system/*` scopes, reach every client's)."""
    row = await inbox.get(g.bookkeeping, pk, for_update=True)
    if row is None or not handles(g, row):
        raise FhirError(404, f"No kept delivery {pk}", "not-found")
    if row.state not in (inbox.UNMATCHED, inbox.REJECTED):
        raise FhirError(409, f"Delivery {pk} is {row.state}: only unmatched or rejected "
                        "deliveries wait", "conflict")
    return row


def handles(g: GuardedSession, row: inbox.Message) -> bool:
    """May the caller see and handle this delivery: its own, or any when it is an operator
    (`system/*` scopes reach every client's)?"""
    return g.reaches_all or row.client_id == g.principal.client_id


async def _matches(g: GuardedSession, reports: list[ParsedReport]) -> list[str | None]:
    """Each report's Patient by national id (`match_patient`), None where there is none."""
    return [await match_patient(g, r.patient) for r in reports]


def _chosen(reports: list[ParsedReport], matched: list[str | None], patient_id: str | None,
            report_key: str | None) -> list[str | None]:
    """The matches, with the operator's Patient for the unmatched report named, or for all of
    them when they all name the same person (409 when they do not: one person's results must
    never follow another's into a record)."""
    if patient_id is None:
        return matched
    unmatched = [r for r, m in zip(reports, matched, strict=True) if m is None]
    if report_key is not None:
        unmatched = [r for r in unmatched if r.report_key.endswith(f"\x1f{report_key}")
                     or r.report_key == report_key]
        if not unmatched:
            raise FhirError(422, "The delivery has no unmatched report with that key",
                            "business-rule")
    elif len({r.patient for r in unmatched}) > 1:
        raise FhirError(409, "The delivery's unmatched reports name different persons: match "
                        "them one report at a time", "conflict")
    chosen = {r.report_key for r in unmatched}
    return [patient_id if r.report_key in chosen else m
            for r, m in zip(reports, matched, strict=True)]


def namespaced(report: ParsedReport, client_id: str) -> ParsedReport:
    """The report under the delivering client: its key and resource ids are derived from the
    client too, so one sender can never overwrite or move another sender's results."""
    ns = f"client:{client_id}"
    ref_map = {f"{r['resourceType']}/{r['id']}":
               f"{r['resourceType']}/{model.resource_id(ns, r['id'])}" for r in report.resources}
    resources = []
    for r in report.resources:
        doc = model.rewrite_references(r, ref_map)
        doc["id"] = model.resource_id(ns, r["id"])
        resources.append(doc)
    return replace(report, report_key=f"{client_id}\x1f{report.report_key}",
                   resources=tuple(resources))


def _check_valid(doc: dict[str, Any]) -> None:
    errors = [i for i in validate(doc) if i.severity in ("error", "fatal")]
    if errors:
        raise Rejected("schema", f"The message maps to a {doc['resourceType']} that is not "
                       f"valid FHIR R4: {errors[0].diagnostics}")


def check_producer(g: GuardedSession) -> None:
    """Only a system client that may create, update and delete the result types in every record
    delivers results (e.g. scopes `system/DiagnosticReport.cruds system/Observation.cruds …` and
    `system/Patient.r`)."""
    ok = g.principal.kind == "system" and g.restriction.all_patients and all(
        g.plan.permits(t, i) for t in model.RESULT_TYPES for i in "cud") \
        and g.plan.permits("Patient", "r")
    if not ok:
        raise FhirError(403, "Results are delivered by system clients with system/ scopes to "
                        "create, update and delete " + ", ".join(model.RESULT_TYPES) +
                        " and to read Patient", "forbidden")


async def match_patient(g: GuardedSession, key: PatientKey) -> str | None:
    """The Patient the message names by FNR or D-number, when exactly one is stored. Names and
    birth dates alone never match automatically: a wrong match would file one person's results
    in another's record, so such reports go to the manual matching queue."""
    if key.system not in _PERSON_SYSTEMS or not key.value or classify_person_id(key.value) is None:
        return None
    query = fhir_search.parse("Patient", [("identifier", f"{key.system}|{key.value}"),
                                          ("_count", "2")], registry=g.registry)
    # The service's own lookup, never returned to the caller (the guarded writes that follow
    # are what is checked and audited).
    page = await g.bookkeeping.search(query)
    live = [p for p in page.items if not p.deleted]
    return live[0].res_id if len(live) == 1 else None


def _prepare(doc: dict[str, Any], patient_id: str, until: datetime | None) -> None:
    if doc["resourceType"] in model.SUBJECT_TYPES:
        doc["subject"] = {"reference": f"Patient/{patient_id}"}
    meta = doc.setdefault("meta", {})
    tags = [t for t in meta.get("tag") or [] if t.get("system") != model.ORIGIN_SYSTEM]
    meta["tag"] = [*tags, {"system": model.ORIGIN_SYSTEM, "code": model.ORIGIN_RESULTS}]
    if until is not None and doc["resourceType"] in model.SUBJECT_TYPES:
        release.hold(doc, until)


def _content(doc: dict[str, Any]) -> Any:
    meta = {k: v for k, v in (doc.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")}
    return orjson.loads(jsonio.dumps({**doc, "meta": meta}))


def _older(issued: str | None, current: dict[str, Any]) -> bool:
    """Is a report issued at `issued` older than the stored one? Compared as instants (a value
    without zone is Norwegian time); unreadable or missing times never make a report stale."""
    stored = current.get("issued")
    if not issued or not isinstance(stored, str):
        return False
    try:
        return dates.date_range(issued)[0] < dates.date_range(stored)[0]
    except (FhirError, ValueError):
        return False


def _keep_earlier_members(current: dict[str, Any], new: dict[str, Any]) -> None:
    """A change message may carry only what changed (KITH: a "Sletting" is a change holding just
    the cancelled result), so results and specimens the stored report has and the new version
    does not name stay in it; a result is withdrawn by its own status, never by omission."""
    for key in ("result", "specimen"):
        refs = [r for r in new.get(key) or [] if isinstance(r, dict)]
        named = {r.get("reference") for r in refs}
        earlier = [r for r in current.get(key) or [] if isinstance(r, dict)
                   and r.get("reference") not in named]
        if earlier:
            new[key] = [*earlier, *refs]


def _state(outcomes: list[ReportOutcome]) -> str:
    kinds = {o.outcome for o in outcomes}
    if receipt.UNMATCHED in kinds:
        return inbox.UNMATCHED
    if kinds == {receipt.RESERVED}:
        return inbox.RESERVED
    return inbox.STORED


def _receipt(msg: ParsedMessage, outcomes: list[ReportOutcome], state: str) -> Receipt:
    notes = list(msg.warnings)
    if state == inbox.UNMATCHED:
        notes.append("Received and kept: a report waits for manual patient matching")
    return Receipt(status=receipt.OK, message_id=msg.message_id, format=msg.format,
                   reports=tuple(outcomes), notes=tuple(notes))


def _family(fmt: str) -> str:
    """The parser of a recorded format name ("kith-svarrapport-1.4" → "kith")."""
    head = fmt.split("-")[0]
    return head if head in ("kith", "hl7v2") else "fhir"


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)
