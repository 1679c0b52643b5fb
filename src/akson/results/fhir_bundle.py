"""FHIR R4 Bundles of results (transaction, batch, collection or message) → `ParsedMessage`.

A producer that already speaks FHIR sends one Bundle holding DiagnosticReports and what they
reference (Observations, Specimens, ServiceRequests, PractitionerRoles, ImagingStudies) and,
optionally, the Patient. Each DiagnosticReport becomes one report; resources get the results
service's deterministic ids (`model.resource_id`) and references inside the Bundle are rewritten
to them, so a corrected re-delivery lands on the same resources
(https://hl7.org/fhir/R4/bundle.html, https://hl7.org/fhir/R4/diagnosticreport.html).
"""

from __future__ import annotations

from typing import Any

from akson.fhir import jsonio
from akson.fhir.naming import DNR_SYSTEM, FNR_SYSTEM
from akson.fhir.outcome import FhirError
from akson.fhir.validation import validate
from akson.results import model
from akson.results.model import ParsedMessage, ParsedReport, PatientKey, Rejected

_STATUS = {"final": model.NEW, "amended": model.CHANGED, "corrected": model.CHANGED,
           "appended": model.CHANGED, "cancelled": model.CANCELLED,
           "entered-in-error": model.DELETED, "preliminary": model.PRELIMINARY,
           "partial": model.PARTIAL, "registered": model.PARTIAL}
_PERSON_SYSTEMS = (FNR_SYSTEM, DNR_SYSTEM)


def parse_bundle(data: bytes, *, sender: str) -> ParsedMessage:
    """Read a results Bundle; `sender` names the delivering system (the Bundle does not say it
    reliably). Raises `Rejected` for anything it cannot use."""
    if not data.strip():
        raise Rejected("empty", "The message is empty")
    try:
        bundle = jsonio.loads(data)
    except FhirError as exc:
        raise Rejected("unreadable", f"Not usable JSON: {exc.diagnostics}") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise Rejected("schema", "A FHIR results delivery is a Bundle")
    message_id = _message_id(bundle)
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
    by_ref: dict[str, dict[str, Any]] = {}
    for e in entries:
        res = e.get("resource")
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise Rejected("schema", "Every Bundle entry must hold a resource")
        issues = validate(res)
        if any(i.severity in ("error", "fatal") for i in issues):
            first = next(i for i in issues if i.severity in ("error", "fatal"))
            raise Rejected("schema", f"A {res['resourceType']} in the Bundle is not valid R4: "
                           f"{first.diagnostics}")
        for key in _keys(e, res):
            by_ref[key] = res
    reports = [r for r in by_ref.values() if r["resourceType"] == "DiagnosticReport"]
    reports = list({id(r): r for r in reports}.values())
    if not reports:
        raise Rejected("no-results", "The Bundle holds no DiagnosticReport")
    patients = list({id(r): r for r in by_ref.values()
                     if r["resourceType"] == "Patient"}.values())
    return ParsedMessage(format="fhir-bundle", message_id=message_id, sender=sender,
                         reports=tuple(_report(r, by_ref, patients, sender) for r in reports))


def _message_id(bundle: dict[str, Any]) -> str:
    ident = bundle.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        return f"{ident.get('system') or ''}|{ident['value']}"
    if isinstance(bundle.get("id"), str):
        return str(bundle["id"])
    raise Rejected("no-message-id", "The Bundle has neither identifier nor id: a re-delivery "
                   "could not be recognised")


def _keys(entry: dict[str, Any], res: dict[str, Any]) -> list[str]:
    keys = []
    if isinstance(entry.get("fullUrl"), str):
        keys.append(entry["fullUrl"])
    if isinstance(res.get("id"), str):
        keys.append(f"{res['resourceType']}/{res['id']}")
    return keys or [f"#{id(res)}"]


def _report(dr: dict[str, Any], by_ref: dict[str, dict[str, Any]],
            patients: list[dict[str, Any]], sender: str) -> ParsedReport:
    ident = next((i for i in dr.get("identifier") or [] if isinstance(i, dict)
                  and isinstance(i.get("value"), str)), None)
    if ident is None:
        raise Rejected("schema", "A DiagnosticReport needs an identifier (the sender's report "
                       "id): corrections are matched by it")
    key = f"fhir:{sender}:{ident.get('system') or ''}|{ident['value']}"
    members = _members(dr, by_ref)
    ids: dict[int, str] = {}
    seen: set[str] = set()
    for n, r in enumerate([dr, *members]):
        local = "report" if r is dr else _local_name(r, n)
        while local in seen:  # two results of one code: keep them apart, in order
            local += "+"
        seen.add(local)
        ids[id(r)] = model.resource_id(key, local)
    ref_map = {ref: f"{r['resourceType']}/{ids[id(r)]}" for ref, r in by_ref.items()
               if id(r) in ids}
    out = []
    for res in (dr, *members):
        own = {k: v for k, v in res.items() if k not in ("subject", "patient", "meta")}
        doc = model.rewrite_references(own, ref_map)
        doc["id"] = ids[id(res)]
        out.append(doc)
    status = _STATUS.get(str(dr.get("status")))
    if status is None:
        raise Rejected("invalid-value", "DiagnosticReport.status is not a report status")
    return ParsedReport(report_key=key, status=status, category=_category(dr),
                        patient=_patient(dr, by_ref, patients), resources=tuple(out),
                        issued=dr.get("issued"))


def _local_name(res: dict[str, Any], n: int) -> str:
    """A name for a member that stays the same in a corrected delivery: its identifier, an
    Observation's code, else its position."""
    rtype = res["resourceType"]
    ident = next((i for i in res.get("identifier") or [] if isinstance(i, dict)
                  and isinstance(i.get("value"), str)), None)
    if ident is not None:
        return f"{rtype}/id/{ident.get('system') or ''}|{ident['value']}"
    code = res.get("code")
    coding = next((c for c in (code.get("coding") or [] if isinstance(code, dict) else [])
                   if isinstance(c, dict) and isinstance(c.get("code"), str)), None)
    if coding is not None:
        return f"{rtype}/code/{coding.get('system') or ''}|{coding['code']}"
    return f"{rtype}/{n}"


def _members(dr: dict[str, Any], by_ref: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The Bundle's resources the report reaches through references, transitively (results,
    specimens, orders, performers, `hasMember`), Patients excepted."""
    seen: dict[int, dict[str, Any]] = {}
    todo = [dr]
    while todo:
        for ref in model.references(todo.pop()):
            target = by_ref.get(ref)
            if target is not None and target is not dr and id(target) not in seen \
                    and target["resourceType"] in model.RESULT_TYPES:
                seen[id(target)] = target
                todo.append(target)
    return list(seen.values())


def _category(dr: dict[str, Any]) -> str:
    for cc in dr.get("category") or []:
        for c in (cc or {}).get("coding") or []:
            if c.get("system") == model.CATEGORY_SYSTEM and isinstance(c.get("code"), str):
                return str(c["code"])
    return "CLIN"


def _patient(dr: dict[str, Any], by_ref: dict[str, dict[str, Any]],
             patients: list[dict[str, Any]]) -> PatientKey:
    subject = dr.get("subject") or {}
    target = by_ref.get(subject.get("reference", "")) if isinstance(subject, dict) else None
    if target is None and len(patients) == 1:
        target = patients[0]
    own = subject.get("identifier") if isinstance(subject, dict) else None
    idents: list[dict[str, Any]] = [own] if isinstance(own, dict) else []
    if target is not None:
        idents = [i for i in target.get("identifier") or [] if isinstance(i, dict)] + idents
    ident = next((i for i in idents if i.get("system") in _PERSON_SYSTEMS
                  and isinstance(i.get("value"), str)), None)
    name = (target or {}).get("name") or [{}]
    first = name[0] if isinstance(name, list) and name and isinstance(name[0], dict) else {}
    given = first.get("given") or []
    if ident is None and target is None:
        raise Rejected("no-patient", "The DiagnosticReport names no patient (neither a Patient "
                       "in the Bundle nor a subject identifier)")
    return PatientKey(
        system=ident.get("system") if ident else None, value=ident.get("value") if ident else None,
        family=first.get("family"), given=" ".join(g for g in given if isinstance(g, str)) or None,
        birth_date=(target or {}).get("birthDate"), gender=(target or {}).get("gender"))
