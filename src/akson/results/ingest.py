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

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from akson.access.gate import Gate, GuardedSession
from akson.access.principal import Principal
from akson.fhir import jsonio
from akson.fhir import search as fhir_search
from akson.fhir.identifiers import classify_person_id
from akson.fhir.naming import DNR_SYSTEM, FNR_SYSTEM
from akson.fhir.outcome import FhirError
from akson.results import model, receipt, release, rights
from akson.results.model import ParsedMessage, ParsedReport, PatientKey, Rejected
from akson.results.receipt import Error, Receipt, ReportOutcome
from akson.store import results_inbox as inbox
from akson.store.database import is_unique_violation

#: Media types of the three formats (`POST /results/ingest`).
KITH_XML: Final = "application/xml"
HL7_V2: Final = "x-application/hl7-v2+er7"
FHIR_JSON: Final = "application/fhir+json"
_MEDIA = {KITH_XML: "kith", "text/xml": "kith", HL7_V2: "hl7v2", "application/hl7-v2": "hl7v2",
          FHIR_JSON: "fhir", "application/json": "fhir"}
_PERSON_SYSTEMS = (FNR_SYSTEM, DNR_SYSTEM)
_ATTEMPTS = 3


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
        from akson.results.kith import parse_svarrapport
        return parse_svarrapport(data)
    if fmt == "hl7v2":
        from akson.results.hl7v2 import parse_oru
        return parse_oru(data)
    from akson.results.fhir_bundle import parse_bundle
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
        """Take one message. Refuses (403) a caller that may not deliver results.

        Two deliveries that create the same resource at once (a practitioner's role shared by
        two reports, the same message sent twice in parallel) meet at a unique key; the one
        refused runs again and then finds the other's rows."""
        for attempt in range(_ATTEMPTS):
            try:
                return await self._ingest(principal, data, fmt)
            except Exception as exc:
                if attempt + 1 == _ATTEMPTS or not is_unique_violation(exc):
                    raise
        raise AssertionError("unreachable")

    async def _ingest(self, principal: Principal, data: bytes, fmt: str) -> Delivery:
        digest = hashlib.sha256(data).hexdigest()
        # bulk: a new report's resources are written with COPY (GuardedSession.create_many).
        async with self.gate.session(principal, write=True, bulk=True) as g:
            check_producer(g)
            s = g.bookkeeping
            first = await inbox.by_digest(s, digest)
            if first is not None:
                return Delivery(Receipt.loads(first.receipt).again(), first.state)
            now = self.clock()
            try:
                msg = parse(fmt, data, sender=principal.client_id)
            except Rejected as exc:
                return await self._reject(g, exc, fmt, digest, data, now)
            outcomes = [await self.store_report(g, r, msg, now) for r in msg.reports]
            state = _state(outcomes)
            answer = _receipt(msg, outcomes, state)
            pk = await inbox.add(
                s, received=_us(now), format=msg.format, sender=msg.sender,
                message_id=msg.message_id, digest=digest, state=state, reason=None,
                detail=None, patient_id=next((o.patient for o in outcomes if o.patient), None),
                receipt=b"{}", raw=None if state == inbox.RESERVED else data)
            answer = replace(answer, delivery=pk)
            await inbox.set_state(s, pk, state, now=_us(now), receipt=answer.dumps())
            return Delivery(answer, state)

    async def reprocess(self, principal: Principal, pk: int, *,
                        patient_id: str | None = None) -> Delivery:
        """Run a kept delivery again: an unmatched one with the Patient an operator identified
        (`patient_id`, used for the reports that still do not match), a rejected one after the
        reader was fixed. 404 for an unknown delivery, 409 for one in another state."""
        async with self.gate.session(principal, write=True, bulk=True) as g:
            check_producer(g)
            s = g.bookkeeping
            row = await inbox.get(s, pk, for_update=True)
            data = await inbox.raw(s, pk) if row else None
            if row is None or data is None:
                raise FhirError(404, f"No kept delivery {pk}", "not-found")
            if row.state not in (inbox.UNMATCHED, inbox.REJECTED):
                raise FhirError(409, f"Delivery {pk} is {row.state}: only unmatched or rejected "
                                "deliveries are run again", "conflict")
            if patient_id is not None and (await s.read("Patient", patient_id) is None
                                           or not await g.exists("Patient", patient_id)):
                raise FhirError(422, f"Patient/{patient_id} is not a stored patient",
                                "business-rule")
            now = self.clock()
            try:
                msg = parse(_family(row.format), data, sender=row.sender or "")
            except Rejected as exc:
                answer = Receipt(status=receipt.REJECTED, message_id=None, format=row.format,
                                 errors=(Error(exc.code, exc.text),), delivery=pk)
                await inbox.set_state(s, pk, inbox.REJECTED, now=_us(now),
                                      receipt=answer.dumps(), detail=exc.text[:2000])
                return Delivery(answer, inbox.REJECTED)
            outcomes = []
            for r in msg.reports:
                outcome = await self.store_report(g, r, msg, now)
                if outcome.outcome == receipt.UNMATCHED and patient_id is not None:
                    outcome = await self.store_report(g, r, msg, now, patient_id=patient_id)
                outcomes.append(outcome)
            state = _state(outcomes)
            if state == inbox.STORED and row.state == inbox.UNMATCHED:
                state = inbox.RESOLVED
            answer = replace(_receipt(msg, outcomes, state), delivery=pk)
            matched = next((o.patient for o in outcomes if o.patient), None)
            await inbox.set_state(s, pk, state, now=_us(now), receipt=answer.dumps(),
                                  patient_id=matched)
            if state == inbox.RESERVED:
                await inbox.purge_patient(s, matched or "", now=_us(now))
            return Delivery(answer, state)

    async def discard(self, principal: Principal, pk: int, reason: str) -> None:
        """Close a kept delivery without storing it, saying why (an operator's decision)."""
        async with self.gate.session(principal, write=True) as g:
            check_producer(g)
            row = await inbox.get(g.bookkeeping, pk, for_update=True)
            if row is None:
                raise FhirError(404, f"No kept delivery {pk}", "not-found")
            if row.state not in (inbox.UNMATCHED, inbox.REJECTED):
                raise FhirError(409, f"Delivery {pk} is {row.state}, not waiting", "conflict")
            await inbox.set_state(g.bookkeeping, pk, inbox.DISCARDED, now=_us(self.clock()),
                                  detail=f"Discarded by an operator: {reason[:500]}")

    async def _reject(self, g: GuardedSession, exc: Rejected, fmt: str, digest: str,
                      data: bytes, now: datetime) -> Delivery:
        answer = Receipt(status=receipt.REJECTED, message_id=None, format=fmt,
                         errors=(Error(exc.code, exc.text),))
        pk = await inbox.add(g.bookkeeping, received=_us(now), format=fmt,
                             sender=g.principal.client_id, message_id=None, digest=digest,
                             state=inbox.REJECTED, reason=exc.code, detail=exc.text[:2000],
                             patient_id=None, receipt=b"{}", raw=data)
        answer = replace(answer, delivery=pk)
        await inbox.set_state(g.bookkeeping, pk, inbox.REJECTED, now=_us(now),
                              receipt=answer.dumps())
        return Delivery(answer, inbox.REJECTED)

    async def store_report(self, g: GuardedSession, report: ParsedReport, msg: ParsedMessage,
                           now: datetime, *, patient_id: str | None = None) -> ReportOutcome:
        """Match the report's patient (or take `patient_id`, an operator's decision) and store
        its resources."""
        patient_id = patient_id or await match_patient(g, report.patient)
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
        current_dr = await _current(g, "DiagnosticReport", dr["id"])
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
            current = await _current(g, doc["resourceType"], doc["id"])
            if current is None:
                new.append((doc["resourceType"], doc["id"], doc))
            elif _content(current) != _content(doc):
                await g.update(doc["resourceType"], doc["id"], doc)
            else:
                continue
            written.append(f"{doc['resourceType']}/{doc['id']}")
        if new:  # one statement per table and one audit record for the whole report
            await g.create_many(new)
        kept = tuple(f"{d['resourceType']}/{d['id']}" for d in docs)
        outcome = receipt.STORED if written else receipt.UNCHANGED
        return ReportOutcome(report.report_key, outcome, report.status, kept,
                             patient=patient_id)


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


async def _current(g: GuardedSession, res_type: str, res_id: str) -> dict[str, Any] | None:
    # Compared with what is about to be written, never returned to the caller: the guarded
    # write that follows is what is checked and audited.
    stored = await g.bookkeeping.read(res_type, res_id)
    return jsonio.loads(stored.content) if stored and stored.content else None


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
    stored = current.get("issued")
    if not issued or not isinstance(stored, str):
        return False
    try:
        return datetime.fromisoformat(issued) < datetime.fromisoformat(stored)
    except ValueError:
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
