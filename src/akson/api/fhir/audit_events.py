"""The citizen's access log: `GET [base]/AuditEvent?patient=<id>` over the hash-chained audit log.

AuditEvents are not stored as resources: they live in the append-only log
(`akson.store.audit_log`), and this is the one way to read them over FHIR. A citizen reads the
events that concern themselves, or a child the access policy lets them see (the same patients
their guarded session may read: `Plan.restriction.patient_ids`), newest first, keyset-paged with
`_count`. Each event is served as stored (`akson.access.audit.served`) plus a narrative line in
Norwegian — who (by name, never a national id), which organisation and unit, when, what and why;
break-the-glass shown plainly (`citizen_view`). Practitioners and system clients get 403: the
privacy officer's view is `akson audit report`. Writes are refused (405): the log is append-only.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from akson.access.audit import citizen_view, served
from akson.access.gate import DENIED, GuardedSession
from akson.api.fhir import paging
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.fhir import jsonio
from akson.fhir import search as fhir_search
from akson.fhir.ids import ID_RE
from akson.fhir.naming import ORGNR_SYSTEM
from akson.fhir.outcome import FhirError
from akson.store import audit_log

_IGNORED = {"_format", "_pretty"}


def _allowed_patients(s: GuardedSession) -> tuple[str, ...]:
    """The records whose access log this caller may read: a citizen's own and their children's."""
    plan = s.plan
    if s.principal.kind != "citizen" or not plan.allowed or plan.self_patient is None:
        raise FhirError(403, DENIED, "forbidden")
    return plan.restriction.patient_ids


async def _org_names(ctx: FhirContext, s: GuardedSession,
                     records: list[audit_log.AuditRecord]) -> dict[str, str]:
    """Names of the organisations (by orgnr) the events name, from the Organization resources
    (register data, no personal data: read outside the caller's policy)."""
    orgnrs = sorted({n for r in records for n in (r.entry.org, r.entry.unit) if n})
    if not orgnrs:
        return {}
    query = fhir_search.parse("Organization", [("identifier", ",".join(
        f"{ORGNR_SYSTEM}|{n}" for n in orgnrs))], registry=ctx.registry,
        max_count=len(orgnrs) * 4, default_count=len(orgnrs) * 4)
    query.total = "none"
    page = await s.bookkeeping.search(query)
    names: dict[str, str] = {}
    for item in page.items:
        org = jsonio.loads(item.content) if item.content else {}
        for ident in org.get("identifier") or ():
            if ident.get("system") == ORGNR_SYSTEM and ident.get("value") in orgnrs \
                    and isinstance(org.get("name"), str):
                names.setdefault(ident["value"], org["name"])
    return names


def _narrative(record: audit_log.AuditRecord, names: dict[str, str]) -> dict[str, str]:
    line = citizen_view(record)
    where = ", ".join(names.get(x, x) for x in (line.organisation, line.unit) if x) \
        or "ukjent virksomhet"
    text = f"{line.when}: {line.who} ({where}) — {line.what}. Formål: {line.why}."
    if line.break_glass:
        text = "NØDTILGANG («glassknuser»). " + text
    if line.reason:
        text += f" Begrunnelse: {line.reason}"
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{html.escape(text)}</div>'}


def _patient_param(value: str) -> str:
    ref = value.removeprefix("Patient/")
    if not ID_RE.fullmatch(ref):
        raise FhirError(400, "patient must be a Patient id or reference", "invalid")
    return ref


def _cursor(value: str) -> tuple[int, int, int, int]:
    """A `next` link's position (`AuditRecord.cursor`); one of three parts predates blocks."""
    parts = value.split(".")
    try:
        if len(parts) not in (3, 4):
            raise ValueError
        recorded, chain, seq, item = (int(v) for v in [*parts, "0"][:4])
        if not all(0 <= v < 2**63 for v in (recorded, chain, seq, item)):
            raise ValueError  # no such place: the columns are 64-bit
    except ValueError:
        raise FhirError(400, "_cursor is not a cursor this server issued", "invalid") from None
    return recorded, chain, seq, item


async def search(ctx: FhirContext, s: GuardedSession, req: FhirRequest) -> FhirResponse:
    """GET [base]/AuditEvent?patient=<id>[&_count=n]: the access log of one record."""
    allowed = _allowed_patients(s)
    patient: str | None = None
    count = ctx.settings.default_page_size
    before: tuple[int, int, int, int] | None = None
    for key, value in req.query:
        if key == "patient":
            patient = _patient_param(value)
        elif key == "_count":
            count = paging.count_param(value, ctx.settings.max_page_size)
        elif key == "_cursor":
            before = _cursor(value)
        elif key not in _IGNORED:
            raise FhirError(400, f"AuditEvent search supports patient and _count, not "
                            f"'{key[:40]}'", "not-supported")
    if patient is None:
        raise FhirError(400, "AuditEvent search needs patient=<your Patient id>", "required")
    if patient not in allowed:
        raise FhirError(403, DENIED, "forbidden")
    records = await audit_log.patient_log(s.bookkeeping.tx, patient, limit=count + 1,
                                          before=before)
    more = len(records) > count
    records = records[:count]
    entries: list[dict[str, Any]] = []
    names = await _org_names(ctx, s, records)
    for record in records:
        event = reader_view(served(record), allowed)
        event["text"] = _narrative(record, names)
        entries.append({"fullUrl": f"{req.base_url}/AuditEvent/{record.id}", "resource": event,
                        "search": {"mode": "match"}})
    query = [("patient", patient), ("_count", str(count))]
    links = [{"relation": "self", "url": f"{req.base_url}/AuditEvent?{urlencode(query)}"}]
    if more and records:
        last = records[-1].cursor
        links.append({"relation": "next", "url": f"{req.base_url}/AuditEvent?" + urlencode(
            [*query, ("_cursor", ".".join(str(v) for v in last))])})
    return FhirResponse(200, {"resourceType": "Bundle", "type": "searchset", "link": links,
                              "entry": entries})


async def read(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_id: str
               ) -> FhirResponse:
    """GET [base]/AuditEvent/<chain>-<seq>[-<item>]: one event of a record the caller may read
    the log of; 403 for any other (and for one that does not exist: the answer is the same)."""
    allowed = set(_allowed_patients(s))
    parts = res_id.split("-")
    record = None
    if (len(parts) in (2, 3) and all(p.isascii() and p.isdigit() for p in parts)
            and len(parts[0]) < 10 and len(parts[1]) < 19 and parts[2:] != ["0"]
            and all(len(p) < 4 for p in parts[2:])):  # as ids are made; no other id exists
        record = await audit_log.read(s.bookkeeping.tx, *(int(p) for p in parts))
    if record is None or not allowed.intersection(record.entry.patients):
        raise FhirError(403, DENIED, "forbidden")
    event = reader_view(served(record), allowed)
    event["text"] = _narrative(record, await _org_names(ctx, s, [record]))
    return FhirResponse(200, event)


def reader_view(event: dict[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    """What a citizen (or parent) reading an access log may see of one stored event: the
    patients they may read the log of, never another person's id or the resources a search
    touched; the practitioner's token subject left out; the stated reason only where the
    access was break-the-glass or self-declared (DOMAIN.md §3: the citizen sees who, where,
    when and why)."""
    mine = {f"Patient/{p}" for p in allowed}
    out = {k: v for k, v in event.items() if k not in ("entity", "contained", "extension")}
    out["entity"] = [e for e in event.get("entity") or ()
                     if (e.get("what") or {}).get("reference") in mine]
    out["agent"] = [{k: v for k, v in a.items() if k != "altId"} for a in event.get("agent") or ()]
    extensions = []
    for ext in event.get("extension") or ():
        if ext.get("url", "").endswith("auditevent-carerelation-metadata-extension"):
            parts = ext.get("extension") or []
            declared = any(p.get("url") == "decision-ref-user-selected" and p.get("valueBoolean")
                           for p in parts)
            btg = any(c.get("code") == "BTG" for pe in event.get("purposeOfEvent") or ()
                      for c in pe.get("coding") or ())
            if not (declared or btg):
                parts = [p for p in parts if p.get("url") != "decision-ref-description"]
            extensions.append({**ext, "extension": parts})
        elif ext.get("url", "").endswith("auditevent-patient-extension"):
            continue  # it points into `contained`, which holds the national id
        else:
            extensions.append(ext)
    if extensions:
        out["extension"] = extensions
    return out


def refuse_write(method: str) -> FhirError:
    return FhirError(405, f"{method} is not allowed on AuditEvent: the audit log is append-only "
                     "and written by the server alone", "not-supported")
