"""One HL7 v2 ORDER_OBSERVATION group (ORC/OBR + OBX/NTE/SPM) to FHIR R4 resources.

Mapping per the HL7 v2-to-FHIR IG (https://build.fhir.org/ig/HL7/v2-to-fhir/): OBR →
DiagnosticReport (segment map "OBR[DiagnosticReport]"), ORC/OBR → ServiceRequest, OBX →
Observation, SPM (or OBR-7/OBR-15 when there is no SPM) → Specimen, XCN → PractitionerRole with the
practitioner as a logical reference. Ids come from `model.resource_id(report_key, local)` with
local names that survive a re-delivery: `report`, `request`, `obs/<OBX-3>/<OBX-4>`,
`specimen/<n>`, `role/...`. No resource gets `subject` (the pipeline sets it). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from akson.results import hl7v2_types as t
from akson.results.hl7v2_syntax import Segment
from akson.results.hl7v2_values import (
    dtm_or_warn,
    interpretation,
    observation_value,
    reference_range,
)
from akson.results.model import (
    CANCELLED,
    CATEGORY_SYSTEM,
    CHANGED,
    NEW,
    PARTIAL,
    PRELIMINARY,
    resource_id,
)

#: OBR-25 result status (HL7 table 0123) → (report lifecycle, DiagnosticReport.status).
#: F final → new/final, C corrected → changed/corrected, X cancelled → cancelled/cancelled,
#: P preliminary and R (entered, not verified) → preliminary, S/A (some results) → partial,
#: I/O/Y/Z (received or ordered, no results yet) → partial/registered; empty → new/unknown.
REPORT_STATUS = {
    "F": (NEW, "final"),
    "C": (CHANGED, "corrected"),
    "X": (CANCELLED, "cancelled"),
    "P": (PRELIMINARY, "preliminary"),
    "R": (PRELIMINARY, "preliminary"),
    "S": (PARTIAL, "partial"),
    "A": (PARTIAL, "partial"),
    "I": (PARTIAL, "registered"),
    "O": (PARTIAL, "registered"),
    "Y": (PARTIAL, "registered"),
    "Z": (PARTIAL, "registered"),
}

#: OBX-11 observation result status (HL7 table 0085) → Observation.status. D (deleted) and
#: W (wrong, replaced) → entered-in-error; N (not asked) → cancelled; U (changed to final
#: without retransmission) → final; empty → unknown.
OBSERVATION_STATUS = {
    "F": "final", "C": "corrected", "X": "cancelled", "P": "preliminary", "R": "preliminary",
    "S": "preliminary", "I": "registered", "O": "registered", "D": "entered-in-error",
    "W": "entered-in-error", "U": "final", "N": "cancelled", "A": "amended",
}

#: OBR-24 diagnostic service section (HL7 table 0074) → Volven 8202 category. Microbiology,
#: virology, mycology and parasitology → MBIO; surgical pathology → HIST; cytopathology (CP) →
#: CYTO; radiology and the other imaging sections → RTG; everything else (LAB, CH, HM, SR, ...)
#: → CLIN (medisinsk biokjemi and the other clinical laboratories).
CATEGORIES = {
    **dict.fromkeys(("MB", "MCB", "MYC", "PAR", "VR", "MBIO"), "MBIO"),
    **dict.fromkeys(("SP", "PAT", "PATH", "HIST"), "HIST"),
    **dict.fromkeys(("CP", "CYTO"), "CYTO"),
    **dict.fromkeys(("RAD", "RX", "CT", "MR", "NMR", "NMS", "US", "VUS", "RUS", "OUS", "XRC",
                     "RTG", "IMG"), "RTG"),
}

_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass
class ObservationGroup:
    obx: Segment
    notes: list[str] = field(default_factory=list)
    specimen: int | None = None  # index into OrderGroup.specimens (a SPECIMEN group's OBX)


@dataclass
class OrderGroup:
    obr: Segment
    orc: Segment | None = None
    notes: list[str] = field(default_factory=list)
    observations: list[ObservationGroup] = field(default_factory=list)
    specimens: list[Segment] = field(default_factory=list)


@dataclass
class Built:
    status: str
    category: str
    issued: str | None
    resources: list[dict[str, Any]]
    warnings: list[str]


def report_status(obr: Segment) -> tuple[str, str, str | None]:
    """(lifecycle, DiagnosticReport.status, warning) for OBR-25."""
    code = obr.comp(25).upper()
    if not code:
        return NEW, "unknown", None
    if code in REPORT_STATUS:
        return (*REPORT_STATUS[code], None)
    return NEW, "unknown", "OBR-25 holds an unknown result status"


def category(obr: Segment) -> str:
    return CATEGORIES.get(obr.comp(24).upper(), "CLIN")


class _Builder:
    """Builds the resources of one group; `ref(local)` gives the relative reference."""

    def __init__(self, key: str, group: OrderGroup) -> None:
        self.key = key
        self.group = group
        self.roles: list[dict[str, Any]] = []
        self.warnings: list[str] = []

    def dtm(self, value: str, where: str) -> str | None:
        return dtm_or_warn(value, where, self.warnings)

    def rid(self, local: str) -> str:
        return resource_id(self.key, local)

    def ref(self, rtype: str, local: str) -> dict[str, str]:
        return {"reference": f"{rtype}/{self.rid(local)}"}

    def role(self, comps: t.Comps, local: str, role_code: str | None = None) -> dict[str, str]:
        """A PractitionerRole for one XCN; returns the reference to it."""
        ident, display = t.xcn_person(comps)
        practitioner: dict[str, Any] = {}
        if ident:
            practitioner["identifier"] = ident
        if display:
            practitioner["display"] = display
        role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": self.rid(local)}
        if practitioner:
            practitioner["type"] = "Practitioner"
            role["practitioner"] = practitioner
        if role_code:
            role["code"] = [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
                "code": role_code}]}]
        self.roles.append(role)
        return self.ref("PractitionerRole", local)

    def identifiers(self) -> list[dict[str, Any]]:
        """Placer and filler order numbers: ORC-2/ORC-3 preferred (the IG), else OBR-2/OBR-3."""
        out = []
        for type_code, orc_n, obr_n in (("PLAC", 2, 2), ("FILL", 3, 3)):
            comps = self.group.orc.first(orc_n) if self.group.orc else []
            if not t.sub(comps, 1):
                comps = self.group.obr.first(obr_n)
            ident = t.ei_identifier(comps, type_code)
            if ident:
                out.append(ident)
        return out

    def specimens(self, imaging: bool) -> list[dict[str, Any]]:
        obr = self.group.obr
        out = []
        for n, spm in enumerate(self.group.specimens, 1):
            res: dict[str, Any] = {"resourceType": "Specimen", "id": self.rid(f"specimen/{n}")}
            eip = spm.first(2)
            idents = []
            for c, code in ((1, "PGN"), (2, "FGN")):
                value = t.sub(eip, c, 1)
                if value:
                    idents.append({"type": {"coding": [{"system": t.V2_0203, "code": code}]},
                                   "value": value})
            if idents:
                res["identifier"] = idents
            kind = t.codeable(spm.first(4))
            if kind:
                res["type"] = kind
            received = self.dtm(spm.comp(18), "SPM-18")
            if received:
                res["receivedTime"] = received
            collection: dict[str, Any] = {}
            start = self.dtm(spm.comp(17, 1), "SPM-17") or self.dtm(obr.comp(7), "OBR-7")
            end = self.dtm(spm.comp(17, 2), "SPM-17")
            if start and end:
                collection["collectedPeriod"] = {"start": start, "end": end}
            elif start:
                collection["collectedDateTime"] = start
            method = t.codeable(spm.first(7))
            if method:
                collection["method"] = method
            site = t.codeable(spm.first(8))
            if site:
                collection["bodySite"] = site
            if collection:
                res["collection"] = collection
            out.append(res)
        if not out:
            # No SPM (v2.3/2.4): the specimen is what OBR-15 and OBR-7 say about it; imaging
            # has none unless OBR-15 names one.
            res = {"resourceType": "Specimen", "id": self.rid("specimen/obr")}
            source = obr.first(15)
            kind = t.codeable([[s] for s in source[0]]) if source else None
            if kind:
                res["type"] = kind
            collected = self.dtm(obr.comp(7), "OBR-7") if kind or not imaging else None
            if collected:
                res["collection"] = {"collectedDateTime": collected}
            if len(res) > 2:
                out.append(res)
        return out

    def observation(self, group: ObservationGroup, local: str, specimens: list[dict[str, Any]],
                    presented: list[dict[str, Any]], lab: bool) -> dict[str, Any]:
        obx = group.obx
        obs: dict[str, Any] = {"resourceType": "Observation", "id": self.rid(local)}
        status = obx.comp(11).upper()
        obs["status"] = OBSERVATION_STATUS.get(status, "unknown")
        if lab:
            obs["category"] = [{"coding": [{"system": _OBS_CATEGORY, "code": "laboratory"}]}]
        obs["code"] = t.codeable(obx.first(3)) or {"text": "unknown"}
        effective = (self.dtm(obx.comp(14), "OBX-14")
                     or self.dtm(self.group.obr.comp(7), "OBR-7"))
        if effective:
            obs["effectiveDateTime"] = effective
        performers = [self.role(rep, f"role/observer/{local}/{k}", "responsibleObserver")
                      for k, rep in enumerate(obx.reps(16), 1)]
        if performers:
            obs["performer"] = performers
        observation_value(obs, obx, presented, self.warnings)
        flags = [cc for rep in obx.reps(8) if (cc := interpretation(rep))]
        if flags:
            obs["interpretation"] = flags
        if obx.comp(7):
            obs["referenceRange"] = [reference_range(obx.comp(7), obx.first(6))]
        method = t.codeable(obx.first(17))
        if method:
            obs["method"] = method
        if group.specimen is not None and group.specimen < len(specimens):
            obs["specimen"] = {"reference": f"Specimen/{specimens[group.specimen]['id']}"}
        elif len(specimens) == 1:
            obs["specimen"] = {"reference": f"Specimen/{specimens[0]['id']}"}
        if group.notes:
            obs["note"] = [{"text": n} for n in group.notes]
        return obs

def _ndl_to_xcn(rep: t.Comps) -> t.Comps:
    """OBR-32 (NDL; CM in v2.3/2.4) holds the person as subcomponents of component 1 (CNN:
    id, family, given, middle, suffix, prefix, degree, source table, assigning authority as
    9-11): lay them out as XCN components. A sender that used components already is kept."""
    subs = rep[0] if rep else []
    if len(subs) <= 1:
        return rep
    return [[s] for s in subs[:8]] + [subs[8:11]]


def build_report(key: str, group: OrderGroup) -> Built:
    """The resources of one ORDER_OBSERVATION group, DiagnosticReport first."""
    b = _Builder(key, group)
    obr = group.obr
    lifecycle, dr_status, warning = report_status(obr)
    if warning:
        b.warnings.append(warning)
    cat = category(obr)
    specimens = b.specimens(cat == "RTG")
    presented: list[dict[str, Any]] = []
    observations: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for og in group.observations:
        local = f"obs/{og.obx.comp(3) or og.obx.comp(3, 2) or '-'}/{og.obx.comp(4)}"
        seen[local] = seen.get(local, 0) + 1
        if seen[local] > 1:
            local = f"{local}/{seen[local]}"
        observations.append(b.observation(og, local, specimens, presented, cat != "RTG"))
    code = t.codeable(obr.first(4)) or {"text": "unknown"}
    idents = b.identifiers()

    request: dict[str, Any] = {"resourceType": "ServiceRequest", "id": b.rid("request")}
    if idents:
        request["identifier"] = idents
    request["status"] = {"final": "completed", "corrected": "completed",
                         "cancelled": "revoked"}.get(dr_status, "active")
    request["intent"] = "order"
    request["code"] = code
    orc = group.orc
    requester_xcn = orc.first(12) if orc and orc.comp(12) else obr.first(16)
    if t.sub(requester_xcn, 1) or t.sub(requester_xcn, 2):
        request["requester"] = b.role(requester_xcn, "role/requester")
    authored = b.dtm(orc.comp(9), "ORC-9") if orc else None
    if authored:
        request["authoredOn"] = authored
    if specimens:
        request["specimen"] = [{"reference": f"Specimen/{s['id']}"} for s in specimens]
    if group.notes:
        request["note"] = [{"text": n} for n in group.notes]

    report: dict[str, Any] = {"resourceType": "DiagnosticReport", "id": b.rid("report")}
    if idents:
        report["identifier"] = idents
    report["basedOn"] = [b.ref("ServiceRequest", "request")]
    report["status"] = dr_status
    report["category"] = [{"coding": [{"system": CATEGORY_SYSTEM, "code": cat}]}]
    report["code"] = code
    effective = b.dtm(obr.comp(7), "OBR-7")
    if effective:
        report["effectiveDateTime"] = effective
    issued = b.dtm(obr.comp(22), "OBR-22")
    if issued and "T" in issued:
        report["issued"] = issued  # an instant needs a time; a date-only OBR-22 stays out
    interpreters = [b.role(_ndl_to_xcn(rep), f"role/interpreter/{k}",
                           "resultsInterpreter") for k, rep in enumerate(obr.reps(32), 1)]
    if interpreters:
        report["resultsInterpreter"] = interpreters
    if specimens:
        report["specimen"] = [{"reference": f"Specimen/{s['id']}"} for s in specimens]
    if observations:
        report["result"] = [{"reference": f"Observation/{o['id']}"} for o in observations]
    if presented:
        report["presentedForm"] = presented
    resources = [report, request, *observations, *specimens, *b.roles]
    return Built(lifecycle, cat, issued, resources, b.warnings)
