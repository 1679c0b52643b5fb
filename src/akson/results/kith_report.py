"""One KITH `ServReport` → ParsedReport: DiagnosticReport, ServiceRequest, Specimen, Observation
and PractitionerRole resources, following NHN's "Mapping fra XML til FHIR (R4)" for Pasientens
prøvesvar (ServReport, ServReq, AnalysedSubject, actors, dates, DiagnosticReport.Status).

Radiology: the Svarrapport names no imaging study (no study instance UID), so a radiology report
is a DiagnosticReport with Observations (category `imaging`, NCRP codes, the description as text);
no ImagingStudy is made.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final
from xml.etree.ElementTree import Element

from akson.fhir.naming import DNR_SYSTEM, DUF_SYSTEM, FHN_SYSTEM, FNR_SYSTEM, HNR_SYSTEM
from akson.results import kith_values as kv
from akson.results.kith_observations import FINAL_CODES, PENDING_CODES, Context, observations
from akson.results.kith_parties import party
from akson.results.model import (
    CANCELLED,
    CATEGORY_SYSTEM,
    CHANGED,
    NEW,
    PARTIAL,
    PRELIMINARY,
    ParsedReport,
    PatientKey,
    Rejected,
    resource_id,
)

BASE64_NS: Final = "http://www.kith.no/xmlstds/base64container"
V2_0074: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
COMMENT_EXTENSION: Final = "https://akson.no/fhir/StructureDefinition/kith-report-comment"
ISSUE_DATE_EXTENSION: Final = "https://akson.no/fhir/StructureDefinition/kith-report-issue-date"

#: Patient/TypeOffId → identifier system of the PatientKey.
PATIENT_ID_SYSTEMS: Final = {"FNR": FNR_SYSTEM, "DNR": DNR_SYSTEM, "FHN": FHN_SYSTEM,
                             "HNR": HNR_SYSTEM, "DUF": DUF_SYSTEM}
#: Patient/Sex (Volven 3101) → FHIR administrative gender.
GENDERS: Final = {"1": "male", "2": "female", "9": "unknown", "0": "unknown"}
#: Volven 8202 codes of radiology and other imaging reports.
IMAGING: Final = frozenset({"RTG", "UL", "CT", "MR", "NM", "NUK", "PET", "RAD", "MAMMO", "ANGIO"})
#: Volven 8202 → HL7 v2 table 0074 diagnostic service section (a category consumers know).
SECTIONS: Final = {"CLIN": "CH", "MBIO": "MB", "HIST": "SP", "CYTO": "CP", "IMM": "IMM",
                   "IMMU": "IMM", "BLD": "BLB", "FARM": "TX"}

#: Report lifecycle and DiagnosticReport.status from ServReport/ServType (Volven 7309) and
#: ServReport/Status (Volven 7306), NHN's table with the lifecycle Akson adds:
#:
#: | ServType \\ Status       | S planlagt   | P foreløpig  | F endelig   | A tillegg    |
#: |--------------------------|--------------|--------------|-------------|--------------|
#: | N ny                     | preliminary/ | preliminary/ | new/final   | changed/     |
#: |                          |  registered  |  preliminary |             |  unknown     |
#: | M endring                | changed/amended (every status)                           |
#: | A tillegg                | changed/appended (every status)                          |
#: | H historikk              | changed/unknown                                          |
#: | C kansellering           | cancelled/cancelled                                      |
#:
#: "Delsvar": a new report (S/P/F) where some results are final (StatusInvestigation 3, 4, 11,
#: 13) and others still pending (2, 5-10, 12, 15) is `partial` / `partial`.
#: KITH has no report-level deletion: a "Sletting" is an Endring (M) whose result items carry
#: ServType C / StatusInvestigation 14, so those Observations are `cancelled` (NHN) and the
#: report is `changed`; `deleted` is never produced by this parser.
_NEW_STATUS: Final = {"S": (PRELIMINARY, "registered"), "P": (PRELIMINARY, "preliminary"),
                      "F": (NEW, "final"), "A": (CHANGED, "unknown")}
_CHANGE_STATUS: Final = {"M": (CHANGED, "amended"), "A": (CHANGED, "appended"),
                         "H": (CHANGED, "unknown"), "C": (CANCELLED, "cancelled")}
_NULLS: Final = frozenset({"", "NULL", "null"})


def report_status(serv_type: str, status: str, item_statuses: list[str]) -> tuple[str, str]:
    """(lifecycle, DiagnosticReport.status) for a report; see the table above."""
    if serv_type in _CHANGE_STATUS:
        return _CHANGE_STATUS[serv_type]
    lifecycle, fhir = _NEW_STATUS.get(status, (NEW, "final"))
    if lifecycle in (NEW, PRELIMINARY) and status != "S":
        final = any(s in FINAL_CODES for s in item_statuses)
        pending = any(s in PENDING_CODES for s in item_statuses)
        if final and pending:
            return PARTIAL, "partial"
    return lifecycle, fhir


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value in _NULLS else value


def report_key(sender: str, report: Element, message_id: str, index: int,
               warnings: list[str]) -> str:
    """The key that stays the same across NY / ENDRING / KANSELLERING of one report.

    ServReport/ServProvId is the lab's own id of the report ("Tjenesteyters id"): in the
    SvarMBK Endelig/Sletting pair it is the same (`20152714B`, the requisition number plus the
    section letter, so reports of several sections of one requisition stay apart), where the
    requisition ids alone could merge two sections' reports. ServReq/Id (the requester's id) is
    no better: it is the same or fresh in exactly the same examples. Note that the corpus's
    fagmelding NY/ENDRING/KANSELLERING carry a freshly generated GUID in both ServProvId and
    ServReq/Id per message, and SVAR_CLIN_1_unilab NY/ENDRING are two different reports (lab
    numbers 211703xx and 62418xxx, different analyses): no id links those, so no parser can.
    v1.3 makes ServProvId optional: then the lab's requisition number (ServReq/IdByServProvider),
    then the requester's (ServReq/Id); with none, the message id (not stable, warned).
    """
    lab_id = _clean(report.findtext("ServProvId"))
    if lab_id is None:
        for req in report.findall("ServReq"):
            lab_id = _clean(req.findtext("IdByServProvider")) or _clean(req.findtext("Id"))
            if lab_id:
                lab_id = f"req:{lab_id}"
                break
    if lab_id is None:
        warnings.append("a report has no report or requisition id: later corrections of it "
                        "cannot be matched")
        lab_id = f"msg:{message_id}:{index}"
    return f"kith:{sender}:{lab_id}"


def patient_key(patient: Element) -> PatientKey:
    """How the message names the patient: OffId + TypeOffId, name ("Family, Given"), birth
    date, sex. A patient with only name and birth date is valid (system/value None)."""
    value = _clean(patient.findtext("OffId"))
    id_type = (kv.attr(patient.find("TypeOffId")) or "").upper()
    system = PATIENT_ID_SYSTEMS.get(id_type) if value else None
    name = (patient.findtext("Name") or "").strip()
    family = given = None
    if "," in name:
        family, _, rest = name.partition(",")
        family, given = family.strip() or None, rest.strip() or None
    elif name:
        # Without a comma the name reads "Given Family" (the usual Norwegian order).
        first, _, last = name.rpartition(" ")
        family, given = last.strip() or None, first.strip() or None
    born = kv.date_time(kv.attr(patient.find("DateOfBirth")))
    return PatientKey(
        system=system if system else None,
        value=value if system else None,
        family=family,
        given=given,
        birth_date=born[:10] if born and len(born) >= 10 else None,
        gender=GENDERS.get(kv.attr(patient.find("Sex")) or ""),
    )


def build_report(report: Element, *, key: str, message_id: str, gen_date: str,
                 warnings: list[str]) -> ParsedReport:
    """Map one ServReport (already namespace-free) to its ParsedReport."""
    patient = report.find("Patient")
    if patient is None:
        raise Rejected("no-patient", "the report names no patient (Patient element missing)")
    raw_issue = kv.attr(report.find("IssueDate"))
    issue_date = kv.date_time(raw_issue)
    if raw_issue and issue_date is None:
        raise Rejected("invalid-value", "ServReport/IssueDate is not a readable date")
    msg_descr = report.find("MsgDescr")
    category = kv.attr(msg_descr) or ""
    items = patient.findall("ResultItem")
    imaging = category.upper() in IMAGING or any(
        kv.attr(el, "S") == "2.16.578.1.12.4.1.1.7270" for el in patient.iter("Id"))
    ctx = Context(report_key=key, issued=gen_date, fallback_effective=issue_date or gen_date,
                  imaging=imaging, report_serv_type=kv.attr(report.find("ServType")) or "N",
                  specimens={}, default_performers=[], warnings=warnings)
    performers = _report_performers(report, ctx)
    ctx.default_performers = performers
    specimens = _specimens(patient.findall("AnalysedSubject"), ctx, None)
    requests = [_service_request(req, i, report, patient, ctx)
                for i, req in enumerate(report.findall("ServReq"), 1)]
    obs = observations(items, ctx)
    lifecycle, status = report_status(ctx.report_serv_type, kv.attr(report.find("Status")) or "F",
                                      ctx.statuses)
    for req in requests:
        req["status"] = {CANCELLED: "revoked", NEW: "completed", CHANGED: "completed"}.get(
            lifecycle, "active")
    dr = _diagnostic_report(report, ctx, status=status, category=category, msg_descr=msg_descr,
                            message_id=message_id, issue_date=issue_date, performers=performers,
                            specimens=specimens, requests=requests, obs=obs)
    resources = (dr, *requests, *specimens, *obs, *ctx.roles.values())
    return ParsedReport(report_key=key, status=lifecycle, category=category,
                        patient=patient_key(patient), resources=tuple(resources), issued=gen_date)


def _report_performers(report: Element, ctx: Context) -> list[str]:
    """NHN: RelServProv ("Utfører/Ansvarlig") performs; ServProvider when there is none."""
    out: list[str] = []
    for rel in report.findall("RelServProv"):
        actor = party(rel.find("HCP"), ctx.warnings)
        if actor is not None:
            out.append(ctx.role(actor, rel.find("Relation")))
    if not out:
        actor = party(report.find("ServProvider/HCP"), ctx.warnings)
        if actor is not None:
            out.append(ctx.role(actor, report.find("ServProvider/Role")))
    return out


def _specimens(subjects: list[Element], ctx: Context, parent: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, subject in enumerate(subjects, 1):
        lab_id = _clean(subject.findtext("IdByServProvider"))
        local = f"specimen/{lab_id}" if lab_id else f"specimen/{parent or ''}#{i}"
        sid = resource_id(ctx.report_key, local)
        spec: dict[str, Any] = {"resourceType": "Specimen", "id": sid, "status": "available"}
        if lab_id:
            spec["identifier"] = [{"value": lab_id}]
            spec["accessionIdentifier"] = {"value": lab_id}
        by_requester = _clean(subject.findtext("IdByRequester"))
        if by_requester:
            spec.setdefault("identifier", []).append(
                {"value": by_requester, "type": {"text": "IdByRequester"}})
        kind = kv.concept([el for el in [subject.find("TypeCoded")] if el is not None],
                          (subject.findtext("Type") or "").strip() or None)
        if kind:
            spec["type"] = kind
        collection: dict[str, Any] = {}
        raw = kv.attr(subject.find("CollectedSample/CollectedDate")) or kv.attr(
            subject.find("CollectedStudyProduct/ProducedDate"))
        collected = kv.date_time(raw)
        if raw and collected is None:
            ctx.warnings.append("a specimen's collection date is unreadable")
        if collected:
            collection["collectedDateTime"] = collected
        site = (subject.findtext("AnatomicalOrigin") or "").strip()
        if site:
            collection["bodySite"] = {"text": site}
        method = kv.concept([el for el in [subject.find("SampleCollProc")] if el is not None])
        if method:
            collection["method"] = method
        if collection:
            spec["collection"] = collection
        additive = (subject.findtext("PreservMaterial") or "").strip()
        if additive:
            spec["container"] = [{"additiveCodeableConcept": {"text": additive}}]
        notes = [(subject.findtext("Comment") or "").strip(),
                 (subject.findtext("CollectedSample/CollectorComment") or "").strip()]
        notes += [kv.attr(c, "DN") or kv.attr(c, "OT") or "" for c in
                  subject.findall("CollectedSample/CollectorCommentCoded")]
        if any(notes):
            spec["note"] = [{"text": n} for n in notes if n]
        if parent:
            spec["parent"] = [{"reference": f"Specimen/{ctx.specimens[parent][0]}"}]
        if lab_id:
            ctx.specimens.setdefault(lab_id, (sid, collected))
        out.append(spec)
        nested = subject.findall("AnalysedSubject")
        if nested and lab_id:
            out += _specimens(nested, ctx, lab_id)
    return out


def _service_request(req: Element, index: int, report: Element, patient: Element,
                     ctx: Context) -> dict[str, Any]:
    sr: dict[str, Any] = {"resourceType": "ServiceRequest",
                          "id": resource_id(ctx.report_key, f"request/{index}"),
                          "status": "active", "intent": "order"}
    identifiers = []
    for tag, code in (("Id", "PLAC"), ("IdByServProvider", "FILL")):
        value = _clean(req.findtext(tag))
        if value:
            identifiers.append({"type": {"coding": [{"system": V2_0203, "code": code}]},
                                "value": value})
    if identifiers:
        sr["identifier"] = identifiers
    descr = req.find("MsgDescr") if req.find("MsgDescr") is not None else report.find("MsgDescr")
    if kv.coding(descr):
        sr["category"] = [{"coding": [{**(kv.coding(descr) or {}), "system": CATEGORY_SYSTEM}]}]
    authored = kv.date_time(kv.attr(req.find("IssueDate")))
    if authored:
        sr["authoredOn"] = authored
    requester = _requester(report, patient, ctx)
    if requester:
        sr["requester"] = {"reference": f"PractitionerRole/{requester}"}
    reasons = []
    for reason in req.findall("ReasonAsText"):
        heading = kv.coding(reason.find("Heading"))
        text = kv.text(reason.find("TextResultValue"))
        if heading or text:
            reasons.append({**({"coding": [heading]} if heading else {}),
                            **({"text": text} if text else {})})
    if reasons:
        sr["reasonCode"] = reasons
    notes = [(req.findtext("ReqComment") or "").strip()]
    notes += [kv.text(c.find("TextResultValue")) or "" for c in req.findall("Comment")]
    if any(notes):
        sr["note"] = [{"text": n} for n in notes if n]
    return sr


def _requester(report: Element, patient: Element, ctx: Context) -> str | None:
    """NHN: ResponsibleHcp ("Rekvirent") requests; Requester ("Mottaker") when it is absent and
    names a person. A report without requester is valid (None)."""
    responsible = patient.find("ResponsibleHcp")
    if responsible is not None:
        actor = party(responsible.find("HCP"), ctx.warnings)
        if actor is not None:
            return ctx.role(actor, responsible.find("Relation"))
    fallback = report.find("Requester/HCP")
    if fallback is not None and (fallback.find("HCProf") is not None
                                 or fallback.find("Inst/HCPerson") is not None):
        actor = party(fallback, ctx.warnings)
        if actor is not None:
            return ctx.role(actor, report.find("Requester/Role"))
    return None


def _diagnostic_report(report: Element, ctx: Context, *, status: str, category: str,
                       msg_descr: Element | None, message_id: str, issue_date: str | None,
                       performers: list[str], specimens: list[dict[str, Any]],
                       requests: list[dict[str, Any]], obs: list[dict[str, Any]]
                       ) -> dict[str, Any]:
    dr: dict[str, Any] = {"resourceType": "DiagnosticReport",
                          "id": resource_id(ctx.report_key, "report")}
    identifiers: list[dict[str, Any]] = [
        {"use": "secondary", "type": {"text": "MsgId"}, "value": message_id}]
    lab_id = _clean(report.findtext("ServProvId"))
    if lab_id:
        identifiers.insert(0, {"use": "usual", "type": {"text": "ServProvId"}, "value": lab_id})
    dr["identifier"] = identifiers
    extensions = []
    comment = (report.findtext("Comment") or "").strip()
    if comment:
        extensions.append({"url": COMMENT_EXTENSION, "valueString": comment})
    if issue_date:
        extensions.append({"url": ISSUE_DATE_EXTENSION, "valueDateTime": issue_date})
    if extensions:
        dr["extension"] = extensions
    if requests:
        dr["basedOn"] = [{"reference": f"ServiceRequest/{r['id']}"} for r in requests]
    dr["status"] = status
    cat_coding = kv.coding(msg_descr)
    categories: list[dict[str, Any]] = []
    if cat_coding:
        cat_coding["system"] = CATEGORY_SYSTEM
        categories.append({"coding": [cat_coding]})
    section = "RAD" if ctx.imaging else SECTIONS.get(category.upper())
    if section:
        categories.append({"coding": [{"system": V2_0074, "code": section}]})
    if categories:
        dr["category"] = categories
    # NHN: DiagnosticReport.code is the 8202 code of MsgDescr.
    dr["code"] = {"coding": [cat_coding]} if cat_coding else {"text": "Svarrapport"}
    effective = sorted(o["effectiveDateTime"] for o in obs if "effectiveDateTime" in o)
    # NHN: the earliest Observation.effective; IssueDate, then GenDate, when there is none.
    dr["effectiveDateTime"] = effective[0] if effective else (issue_date or ctx.issued)
    if ctx.issued:
        dr["issued"] = ctx.issued
    if performers:
        dr["performer"] = [{"reference": f"PractitionerRole/{p}"} for p in performers]
    interpreters = [p for p in ctx.interpreters if p not in performers]
    if interpreters:
        dr["resultsInterpreter"] = [{"reference": f"PractitionerRole/{p}"} for p in interpreters]
    if specimens:
        dr["specimen"] = [{"reference": f"Specimen/{s['id']}"} for s in specimens]
    if obs:
        dr["result"] = [{"reference": f"Observation/{o['id']}"} for o in obs]
    if ctx.conclusions:
        dr["conclusion"] = "\n\n".join(ctx.conclusions)
    codes = {(c.get("system"), c["code"]): c for c in ctx.conclusion_codes}
    if codes:
        dr["conclusionCode"] = [{"coding": [c]} for c in codes.values()]
    forms = _presented_forms(report, ctx.warnings)
    if forms:
        dr["presentedForm"] = forms
    return dr


def _presented_forms(report: Element, warnings: list[str]) -> list[dict[str, Any]]:
    """Attachments embedded as base64 (RefDoc/Content/Base64Container): contentType and data
    kept as base64. A FileReference (a file outside the message) cannot be carried over."""
    out: list[dict[str, Any]] = []
    for ref in report.findall("RefDoc"):
        for container in ref.iterfind(f"Content/{{{BASE64_NS}}}Base64Container"):
            data = re.sub(r"\s+", "", container.text or "")
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                warnings.append("an embedded attachment is not valid base64; left out")
                continue
            if not data:
                continue
            form: dict[str, Any] = {
                "contentType": (ref.findtext("MimeType") or "").strip()
                or "application/octet-stream",
                "data": data,
            }
            title = (ref.findtext("Description") or "").strip()
            if title:
                form["title"] = title
            out.append(form)
    return out
