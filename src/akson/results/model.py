"""What every results format is parsed into: reports, their patient and their FHIR resources.

The parsers (`akson.results.kith`, `akson.results.hl7v2`, `akson.results.fhir_bundle`) are pure:
bytes in, a `ParsedMessage` out, or `Rejected` with a reason. The ingestion pipeline
(`akson.results.ingest`) matches the patient, stores the resources through the access gate and
answers with a receipt. The contract between the two:

- Resource ids are deterministic (`resource_id`): a corrected or cancelled report re-delivered
  later maps onto the same ids, so the store keeps the earlier versions as history.
- Parsers never set `subject` or `patient`: the pipeline sets `subject` to the matched Patient on
  every resource type that has one (SUBJECT_TYPES).
- References between the resources of one report are relative (`Observation/<id>`); references to
  parties outside it (the lab, the requester's organisation) are logical (`identifier` +
  `display`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from akson.fhir import naming
from akson.store import access_sql

#: Namespace of the deterministic resource ids (uuid5).
ID_NAMESPACE: Final = uuid.UUID("6f1d3a52-3c0e-5b8e-9a57-4b7d1e0c9a11")

#: Lifecycle of a report (KITH Svarrapport `StatusRapport` / HL7 v2 OBR-25).
NEW: Final = "new"
CHANGED: Final = "changed"
CANCELLED: Final = "cancelled"
DELETED: Final = "deleted"
PRELIMINARY: Final = "preliminary"
PARTIAL: Final = "partial"
LIFECYCLE: Final = frozenset({NEW, CHANGED, CANCELLED, DELETED, PRELIMINARY, PARTIAL})

#: Resource types the results service stores and serves (`/results/fhir`).
RESULT_TYPES: Final = ("DiagnosticReport", "Observation", "ServiceRequest", "Specimen",
                       "ImagingStudy", "PractitionerRole")
#: Of those, the types whose `subject` is the patient.
SUBJECT_TYPES: Final = frozenset({"DiagnosticReport", "Observation", "ServiceRequest",
                                  "Specimen", "ImagingStudy"})

#: `meta.tag` marking a resource as stored by the results service (the `/results/fhir` base
#: serves only these).
ORIGIN_SYSTEM: Final = access_sql.ORIGIN_SYSTEM
ORIGIN_RESULTS: Final = access_sql.ORIGIN_RESULTS

#: Volven 8202 "Type laboratoriemelding" (DOMAIN.md §5): the report category.
CATEGORY_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.8202"
#: NLK, Norsk laboratoriekodeverk (Volven 7280): the FHIR system URL the rest of Akson uses
#: (akson.fhir.naming); KITH's OID 2.16.578.1.12.4.1.1.7280 and HL7 v2's "NLK" map to it.
NLK_SYSTEM: Final = naming.NLK_SYSTEM
#: NCRP, Norsk klassifikasjon av radiologiske prosedyrer (Volven 7270).
NCRP_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.7270"
#: NORPAT, Den norske patologikodeverket (Volven 7010).
NORPAT_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.7010"
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"


def resource_id(report_key: str, local: str) -> str:
    """The stable id of one resource of a report: the same report key and local name give the
    same id in every delivery (`local` e.g. `report`, `obs/3`, `specimen/1`)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{report_key}\x1f{local}"))


def references(node: Any) -> list[str]:
    """Every `reference` string found anywhere in `node`, in document order."""
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def rewrite_references(node: Any, ref_map: dict[str, str]) -> Any:
    """A copy of `node` with every `reference` found in `ref_map` replaced by its value."""
    if isinstance(node, dict):
        out = {k: rewrite_references(v, ref_map) for k, v in node.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in ref_map:
            out["reference"] = ref_map[out["reference"]]
        return out
    if isinstance(node, list):
        return [rewrite_references(v, ref_map) for v in node]
    return node


@dataclass(frozen=True)
class PatientKey:
    """How the message names the patient. `system`/`value` hold an FNR or D-number (or another
    id the message gives, with its system); a message may carry only name and birth date."""

    system: str | None = None
    value: str | None = None
    family: str | None = None
    given: str | None = None
    birth_date: str | None = None  # YYYY-MM-DD
    gender: str | None = None  # FHIR administrative gender


@dataclass(frozen=True)
class ParsedReport:
    """One report (a KITH `ServReq`/`ResultItem` group, an HL7 v2 ORDER_OBSERVATION group).

    `report_key` is stable across corrections and cancellations of the same report: it names the
    sender and the sender's own report or order id. `resources` starts with the
    DiagnosticReport; every resource has `resourceType` and `id` (from `resource_id`).
    """

    report_key: str
    status: str  # one of LIFECYCLE
    category: str  # Volven 8202 code, e.g. "CLIN", "MBIO", "HIST", "CYTO", "RTG"
    patient: PatientKey
    resources: tuple[dict[str, Any], ...]
    issued: str | None = None  # FHIR instant/dateTime of the report


@dataclass(frozen=True)
class ParsedMessage:
    """One delivered message: who sent it, its own id, and the reports it carries."""

    format: str  # e.g. "kith-svarrapport-1.4", "hl7v2-2.5.1", "fhir-bundle"
    message_id: str  # the sender's id of the message (KITH MsgId, HL7 MSH-10, Bundle id)
    sender: str  # the sender, for receipts and operators (name or id, never a person)
    reports: tuple[ParsedReport, ...]
    sender_id: str | None = None  # orgnr, HER-id or HL7 MSH-4
    warnings: tuple[str, ...] = field(default_factory=tuple)


class Rejected(Exception):
    """The message cannot be read or used. `code` is a short stable reason code (see REASONS),
    `text` says what was wrong in words an operator understands (never personal data)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


#: Rejection reasons and the AppRec error code (Volven 8221) each maps to.
REASONS: Final = {
    "unreadable": "T01",  # not well-formed XML / not a parseable HL7 v2 message / bad bytes
    "encoding": "T01",  # the bytes cannot be decoded in any encoding the message could be in
    "schema": "T02",  # well-formed, but not a Svarrapport / ORU^R01 / Bundle we understand
    "version": "T02",  # a version this service does not read
    "no-message-id": "T02",
    "no-patient": "T02",  # no patient element at all
    "no-results": "T02",  # no report in the message
    "invalid-value": "T02",  # a date, number or code that cannot be read
    "empty": "T01",
    "too-large": "T01",  # larger than this service reads
    "internal": "X99",  # this service failed to store it: kept for operators, not the sender's fault
}
