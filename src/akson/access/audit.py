"""Build R4 AuditEvents from a Principal and an event, and map them for the citizen's access log.

Pure mapping, no SQL: `audit_entry` returns the `AuditEntry` the access gate appends with
`akson.store.audit_log.AuditLog`. It stores the facts of the event (`audit_facts`), from which
`audit_event` renders the AuditEvent when the record is read (ADR 0013). `ChainedAuditSink` is
the gate's `AuditSink` over that log; `citizen_view` is one line of a citizen's access log.
The care relationship of a tillitsrammeverk attestation is mapped as the HL7 Norway AuditEvent
IG maps it (https://github.com/HL7Norway/AuditEvent, "Trust Framework mappings"; Normen 6.1
§5.4.4):

- `care_relationship.purpose_of_use` (and `purpose_of_use_details`) → `purposeOfEvent.coding`,
  system `urn:oid:2.16.840.1.113883.1.11.20448` as the IG writes it;
- `decision_ref.{id, description, user_selected}` and `toa` → the
  `auditevent-carerelation-metadata-extension` (sub-extensions `decision-ref-id`,
  `decision-ref-description`, `decision-ref-user-selected`, `toa`);
- the patient → `auditevent-patient-extension` (a contained Patient with its national id) when
  the event concerns exactly one patient (the IG: one AuditEvent per patient), and always an
  R4 `entity` with role Patient, so core `AuditEvent?patient=` semantics hold for searches too;
- `healthcare_service` → a contained Encounter's `serviceType`, linked by the IG's
  `auditevent-encounter-extension`;
- `legal_entity` and `point_of_care` → agents of their own (organisations, orgnr identifiers).

Personal data: the patient's national id may be in the AuditEvent (the patient link), never in a
log line. The practitioner is identified by HPR number and name only: their national id is never
written (a citizen reading the event must not see it, Tillitsrammeverk; DOMAIN.md §3).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from akson.access.memo import ByIdentity
from akson.access.principal import CareRelationship, Kind, Principal
from akson.fhir.dates import to_instant
from akson.store.audit_log import AuditEntry, AuditLog, AuditRecord, blocks
from akson.store.database import Tx

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the gate hands intents here; typing only, so neither imports the other
    from akson.access.gate import AuditIntent

PURPOSE_SYSTEM = "urn:oid:2.16.840.1.113883.1.11.20448"
CARE_RELATION_EXT = "http://hl7.no/fhir/StructureDefinition/auditevent-carerelation-metadata-extension"
PATIENT_EXT = "http://hl7.no/fhir/StructureDefinition/auditevent-patient-extension"
ENCOUNTER_EXT = "http://hl7.no/fhir/StructureDefinition/auditevent-encounter-extension"
#: Volven 8663 "kommunale helse- og omsorgstjenester": the attestation's healthcare_service in a
#: municipal record (the Principal carries the code only).
SERVICE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8663"
FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
AKSON_OPERATION = "https://akson.no/fhir/CodeSystem/audit-operation"

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_RESTFUL = "http://hl7.org/fhir/restful-interaction"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"

ACTIONS = frozenset("CRUDE")
OUTCOMES = frozenset({"0", "4", "8", "12"})
REST_SUBTYPES = frozenset({
    "read", "vread", "update", "patch", "delete", "history", "history-instance", "history-type",
    "history-system", "create", "search", "search-type", "search-system", "capabilities",
    "transaction", "batch",
})
#: Non-REST subtypes: (type coding, subtype coding), DICOM audit codes (DCM, PS3.16 CID 400-401).
_SPECIAL = {
    "login": ((_DCM, "110114", "User Authentication"), (_DCM, "110122", "Login")),
    "logout": ((_DCM, "110114", "User Authentication"), (_DCM, "110123", "Logout")),
    "export": ((_DCM, "110106", "Export"), (_RESTFUL, "operation", "operation")),
    "break-glass": ((_DCM, "110113", "Security Alert"),
                    (_DCM, "110127", "Emergency Override Started")),
}
PURPOSE_DISPLAY = {"TREAT": "treatment", "ETREAT": "emergency treatment",
                   "COC": "coordination of care", "BTG": "break the glass"}
#: What a citizen reads (Norwegian), per purpose of use and action.
PURPOSE_TEXT = {"TREAT": "Behandling", "ETREAT": "Akutt behandling",
                "COC": "Koordinering av helsehjelp", "BTG": "Nødtilgang («glassknuser»)"}
ACTION_TEXT = {"C": "Opprettet", "R": "Lest", "U": "Endret", "D": "Slettet", "E": "Utført"}


# Not frozen, as AuditIntent and AuditEntry: made per access (akson.access.gate).
@dataclass(slots=True)
class PatientRef:
    """A patient an event concerns: the Patient's logical id, and its national id if known."""

    id: str
    national_id: str | None = None  # FNR or D-nr; goes into the AuditEvent only, never a log


@dataclass(frozen=True, slots=True)
class Source:
    """The Akson node that records the event (AuditEvent.source)."""

    site: str  # e.g. the node's host name or deployment name
    observer: str = "Akson"


@dataclass(frozen=True, slots=True)
class OrgNames:
    """Display names of the actor's legal entity and point of care, when the gate knows them."""

    legal_entity: str | None = None
    point_of_care: str | None = None


#: No names known (the default): compared by identity first on the audit path.
_NO_NAMES = OrgNames()


def _coding(triple: tuple[str, str, str]) -> dict[str, str]:
    system, code, display = triple
    return {"system": system, "code": code, "display": display}


def _types(subtype: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """AuditEvent.type and .subtype for a subtype name (rest interaction, `$op`, or special)."""
    if subtype in _SPECIAL:
        type_, sub = _SPECIAL[subtype]
        subs = [_coding(sub)]
        if subtype == "export":
            subs.append({"system": AKSON_OPERATION, "code": "$export"})
        return _coding(type_), subs
    rest = _coding((_EVENT_TYPE, "rest", "RESTful Operation"))
    if subtype in REST_SUBTYPES:
        return rest, [{"system": _RESTFUL, "code": subtype}]
    if subtype.startswith("$") and len(subtype) > 1:
        return rest, [{"system": _RESTFUL, "code": "operation"},
                      {"system": AKSON_OPERATION, "code": subtype}]
    raise ValueError(f"unknown audit subtype {subtype!r}")


def _checked_types(action: str, subtype: str, outcome: str
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`_types(subtype)`, after refusing an unknown action, subtype or outcome."""
    if action not in ACTIONS:
        raise ValueError(f"audit action must be one of C R U D E, not {action!r}")
    if outcome not in OUTCOMES:
        raise ValueError("audit outcome must be 0, 4, 8 or 12")
    return _types(subtype)


def agent_key(principal: Principal) -> str:
    """A stable, non-personal key for the actor (reports count distinct patients per key)."""
    if principal.kind == "practitioner" and principal.hpr_number:
        return f"hpr:{principal.hpr_number}"
    if principal.kind == "system":
        return f"client:{principal.client_id}"[:200]
    return f"{principal.kind}:{principal.issuer}|{principal.subject}"[:200]


def _purpose(principal: Principal) -> list[dict[str, Any]]:
    cr = principal.care_relationship
    if cr is None:
        return []
    codings = [{"system": PURPOSE_SYSTEM, "code": cr.purpose_of_use,
                "display": PURPOSE_DISPLAY.get(cr.purpose_of_use, cr.purpose_of_use)}]
    if cr.purpose_of_use_details:
        # Volven 9151 ("tjenestetyper"), as the attestation's purpose_of_use_details.
        codings.append({"system": "urn:oid:2.16.578.1.12.4.1.1.9151",
                        "code": cr.purpose_of_use_details})
    return [{"coding": codings}]


def _care_relation_extension(principal: Principal) -> dict[str, Any] | None:
    cr = principal.care_relationship
    if cr is None:
        return None
    parts: list[dict[str, Any]] = []
    if cr.decision_ref_id:
        parts.append({"url": "decision-ref-id", "valueString": cr.decision_ref_id})
    if cr.decision_ref_description:
        parts.append({"url": "decision-ref-description", "valueString": cr.decision_ref_description})
    parts.append({"url": "decision-ref-user-selected", "valueBoolean": cr.user_selected})
    if cr.toa is not None:
        parts.append({"url": "toa", "valueUnsignedInt": cr.toa})
    return {"url": CARE_RELATION_EXT, "extension": parts}


def _agents(principal: Principal, purpose: list[dict[str, Any]],
            names: OrgNames) -> list[dict[str, Any]]:
    """The requesting user or client, then its legal entity and point of care (IG: organisations
    of the practitioner role)."""
    who: dict[str, Any] = {}
    if principal.kind == "practitioner" and principal.hpr_number:
        who["identifier"] = {"system": HPR_SYSTEM, "value": principal.hpr_number}
    elif principal.kind == "system":
        who["identifier"] = {"system": "urn:ietf:rfc:7591:client_id", "value": principal.client_id}
    if principal.name:
        who["display"] = principal.name
    user: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                             "code": "humanuser" if principal.kind != "system" else "dataprocessor"}]},
        "who": who or {"display": principal.kind},
        "requestor": True,
    }
    if principal.name:
        user["name"] = principal.name
    if principal.kind == "practitioner":
        # The token's subject, not the national id: identifies the login session's user.
        user["altId"] = principal.subject
    if purpose:
        user["purposeOfUse"] = purpose
    agents = [user]
    for orgnr, name, code, display in (
        (principal.orgnr_parent, names.legal_entity, "PROV", "healthcare provider"),
        (principal.orgnr_child, names.point_of_care, "SDLOC", "service delivery location"),
    ):
        if orgnr:
            ref: dict[str, Any] = {"identifier": {"system": ORGNR_SYSTEM, "value": orgnr}}
            if name:
                ref["display"] = name
            agents.append({"type": {"coding": [{"system": _ROLE_CLASS, "code": code,
                                                "display": display}]},
                           "who": ref, "requestor": False})
    return agents


def _entities(patients: Sequence[PatientRef], resources: Sequence[str],
              query: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"what": {"reference": f"Patient/{p.id}"},
         "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
         "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"}}
        for p in patients
    ]
    out.extend({"what": {"reference": ref},
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"}}
               for ref in resources)
    if query is not None:
        out.append({"type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                    "query": base64.b64encode(query.encode()).decode()})
    return out


def build_event(principal: Principal, *, action: str, subtype: str, recorded: int,
                source: Source, outcome: str = "0", patients: Sequence[PatientRef] = (),
                resources: Sequence[str] = (), query: str | None = None,
                outcome_desc: str | None = None,
                names: OrgNames = OrgNames()) -> dict[str, Any]:
    """The R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html) for one event.

    `action` C/R/U/D/E; `subtype` a REST interaction (`read`, `search-type`, …), an operation
    (`$everything`) or `login`/`logout`/`export`/`break-glass`; `recorded` µs since the epoch;
    `resources` references (`Observation/1`) of what was touched; `query` the search as sent.
    """
    type_, subtypes = _checked_types(action, subtype, outcome)
    purpose = _purpose(principal)
    event: dict[str, Any] = {"resourceType": "AuditEvent"}
    extensions: list[dict[str, Any]] = []
    unique = {p.id: p for p in patients}
    if len(unique) == 1:
        (only,) = unique.values()
        contained: dict[str, Any] = {"resourceType": "Patient", "id": "patient"}
        if only.national_id:
            system = DNR_SYSTEM if only.national_id[:1] in "4567" else FNR_SYSTEM
            contained["identifier"] = [{"system": system, "value": only.national_id}]
        contained["link"] = [{"other": {"reference": f"Patient/{only.id}"}, "type": "seealso"}]
        event["contained"] = [contained]
        extensions.append({"url": PATIENT_EXT, "valueReference": {"reference": "#patient"}})
    cr = principal.care_relationship
    if cr is not None and cr.healthcare_service:
        # IG: care_relationship.healthcare_service → Encounter.serviceType, linked by extension.
        event.setdefault("contained", []).append({
            "resourceType": "Encounter", "id": "care", "status": "unknown",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                      "code": "UNK"},
            "serviceType": {"coding": [{"system": SERVICE_SYSTEM,
                                        "code": cr.healthcare_service}]},
        })
        extensions.append({"url": ENCOUNTER_EXT, "valueReference": {"reference": "#care"}})
    care = _care_relation_extension(principal)
    if care:
        extensions.append(care)
    if extensions:
        event["extension"] = extensions
    event.update({"type": type_, "subtype": subtypes, "action": action,
                  "recorded": to_instant(recorded), "outcome": outcome})
    if outcome_desc:
        event["outcomeDesc"] = outcome_desc
    if purpose:
        event["purposeOfEvent"] = purpose
    event["agent"] = _agents(principal, purpose, names)
    event["source"] = {"site": source.site, "observer": {"display": source.observer},
                       "type": [{"system": _SOURCE_TYPE, "code": "4",
                                 "display": "Application Server"}]}
    entities = _entities(list(unique.values()), resources, query)
    if entities:
        event["entity"] = entities
    return event


#: (action, subtype, outcome) that `_checked_types` accepted: a handful, checked once each.
_CHECKED: set[tuple[str, str, str]] = set()


def audit_entry(principal: Principal, *, action: str, subtype: str, recorded: int,
                source: Source, outcome: str = "0", patients: Sequence[PatientRef] = (),
                resources: Sequence[str] = (), query: str | None = None,
                outcome_desc: str | None = None, names: OrgNames = _NO_NAMES) -> AuditEntry:
    """The event ready to append: its facts (`audit_facts`) with the columns the store indexes.
    `build_event`'s checks run here too, so a record that could not be rendered is refused."""
    _check(action, subtype, outcome)
    c = _caller(principal, source)
    return AuditEntry(
        audit_facts(principal, source=source, patients=patients, resources=resources,
                    query=query, outcome_desc=outcome_desc, names=names),
        recorded, action, subtype, outcome, c.purpose, c.user_selected, c.org, c.unit, c.agent,
        tuple(sorted({p.id for p in patients})))


def _check(action: str, subtype: str, outcome: str) -> None:
    if (action, subtype, outcome) not in _CHECKED:
        _checked_types(action, subtype, outcome)  # raises for an unknown one
        _CHECKED.add((action, subtype, outcome))


# ---------------------------------------------------------------- the stored form (ADR 0013)

#: Mark of the stored facts' format. Records written before it hold the AuditEvent JSON itself.
FACTS_FORMAT = 2


def audit_facts(principal: Principal, *, source: Source, patients: Sequence[PatientRef] = (),
                resources: Sequence[str] = (), query: str | None = None,
                outcome_desc: str | None = None, names: OrgNames = _NO_NAMES) -> bytes:
    """What an audit record stores besides its columns: the facts `build_event` renders the
    AuditEvent from (ADR 0013). The caller's national id is not among them; the patients'
    national ids are (the IG's patient link). Absent facts are left out.

    The caller's facts come first and the patients and resources last, so the bytes are
    `orjson.dumps` of the whole dict; the caller's part is serialised once per principal
    (`_caller`) when nothing else sits between them (no query, outcome text or names)."""
    if query is None and outcome_desc is None and (names is _NO_NAMES or names == _NO_NAMES):
        head = _caller(principal, source).head
    else:
        head = orjson.dumps(_caller_dict(principal, source, query, outcome_desc, names))
    return _with_tail(head, [[p.id, p.national_id] if p.national_id else [p.id]
                             for p in patients], resources)


def _with_tail(head: bytes, patients: list[list[str]], resources: Sequence[str]) -> bytes:
    """The caller's facts `head` (a JSON object) with the patients and resources last."""
    tail = []
    if patients:
        tail.append(b'"patients":' + orjson.dumps(patients))
    if resources:
        tail.append(b'"resources":' + orjson.dumps(list(resources)))
    return head[:-1] + b"," + b",".join(tail) + b"}" if tail else head


@dataclass(frozen=True, slots=True)
class _Caller:
    """What every record of one caller (principal and source) shares: the head of its facts
    and its columns."""

    head: bytes
    purpose: str | None
    user_selected: bool
    org: str | None
    unit: str | None
    agent: str


#: Callers' shared parts, worked out once per token (and source), not per record.
_CALLERS: ByIdentity[_Caller] = ByIdentity()


def _caller(principal: Principal, source: Source) -> _Caller:
    def make() -> _Caller:
        cr = principal.care_relationship
        return _Caller(orjson.dumps(_caller_dict(principal, source, None, None, _NO_NAMES)),
                       cr.purpose_of_use if cr else None, bool(cr and cr.user_selected),
                       principal.orgnr_parent, principal.orgnr_child, agent_key(principal))
    return _CALLERS.get(principal, make, extra=source)


def _caller_dict(principal: Principal, source: Source, query: str | None,
                 outcome_desc: str | None, names: OrgNames) -> dict[str, Any]:
    facts: dict[str, Any] = {"format": FACTS_FORMAT, "kind": principal.kind,
                             "client_id": principal.client_id, "site": source.site}
    optional = {
        "subject": principal.subject if principal.kind == "practitioner" else None,
        "name": principal.name, "hpr_number": principal.hpr_number,
        "orgnr_parent": principal.orgnr_parent, "orgnr_child": principal.orgnr_child,
        "observer": source.observer if source.observer != "Akson" else None,
        "legal_entity": names.legal_entity, "point_of_care": names.point_of_care,
        "query": query, "outcome_desc": outcome_desc,
    }
    facts.update((k, v) for k, v in optional.items() if v is not None)
    cr = principal.care_relationship
    if cr is not None:
        facts["care"] = {k: v for k, v in (
            ("purpose_of_use", cr.purpose_of_use), ("healthcare_service", cr.healthcare_service),
            ("purpose_of_use_details", cr.purpose_of_use_details),
            ("decision_ref_id", cr.decision_ref_id),
            ("decision_ref_description", cr.decision_ref_description),
            ("user_selected", cr.user_selected), ("toa", cr.toa)) if v is not None}
    return facts


def audit_event(entry: AuditEntry) -> dict[str, Any]:
    """The R4 AuditEvent of a stored record: rendered from its facts and columns, or, for a
    record written before ADR 0013, the AuditEvent JSON it holds."""
    doc: dict[str, Any] = orjson.loads(entry.content)
    if doc.get("format") != FACTS_FORMAT:
        return doc
    care = doc.get("care")
    principal = Principal(
        kind=doc["kind"], issuer="", subject=doc.get("subject", ""), client_id=doc["client_id"],
        name=doc.get("name"), hpr_number=doc.get("hpr_number"),
        orgnr_parent=doc.get("orgnr_parent"), orgnr_child=doc.get("orgnr_child"),
        care_relationship=CareRelationship(**care) if care else None)
    return build_event(
        principal, action=entry.action, subtype=entry.subtype, recorded=entry.recorded,
        source=Source(doc["site"], doc.get("observer", "Akson")), outcome=entry.outcome,
        patients=[PatientRef(*p) for p in doc.get("patients", ())],
        resources=doc.get("resources", ()), query=doc.get("query"),
        outcome_desc=doc.get("outcome_desc"),
        names=OrgNames(doc.get("legal_entity"), doc.get("point_of_care")))


def served(record: AuditRecord) -> dict[str, Any]:
    """The AuditEvent as a FHIR read or search returns it: `audit_event` plus `id` and
    `meta.lastUpdated` (the stored bytes, which the hash covers, carry neither)."""
    event = audit_event(record.entry)
    return {"resourceType": "AuditEvent", "id": record.id,
            "meta": {"lastUpdated": to_instant(record.entry.recorded)},
            **{k: v for k, v in event.items() if k != "resourceType"}}


# ---------------------------------------------------------------- the citizen's view


@dataclass(frozen=True, slots=True)
class CitizenLogLine:
    """One line of a citizen's access log ("Logg over bruk"): who, where, when, what and why.

    Holds the practitioner's name, never their national id.
    """

    when: str  # R4 instant
    who: str
    organisation: str | None
    unit: str | None
    what: str
    why: str
    purpose: str | None
    break_glass: bool
    self_declared: bool
    reason: str | None  # the stated reason of a break-the-glass or self-declared access


def _org_label(agent: dict[str, Any]) -> str | None:
    who = agent.get("who", {})
    return who.get("display") or who.get("identifier", {}).get("value")


def citizen_view(record: AuditRecord) -> CitizenLogLine:
    """How a citizen sees one event that concerned them."""
    event = audit_event(record.entry)
    agents = event.get("agent", [])
    user: dict[str, Any] = next((a for a in agents if a.get("requestor")), {})
    orgs = {a["type"]["coding"][0]["code"]: _org_label(a)
            for a in agents if not a.get("requestor") and a.get("type")}
    who = user.get("name") or user.get("who", {}).get("display") or "Ukjent bruker"
    purpose = record.entry.purpose
    reason = None
    for ext in event.get("extension", []):
        if ext.get("url") == CARE_RELATION_EXT:
            for part in ext.get("extension", []):
                if part.get("url") == "decision-ref-description":
                    reason = part.get("valueString")
    btg = purpose == "BTG" or record.entry.subtype == "break-glass"
    why = PURPOSE_TEXT.get(purpose or "", "Ikke oppgitt")
    if btg:
        why = PURPOSE_TEXT["BTG"]
    elif record.entry.user_selected:
        why += " (egenerklært tjenstlig behov)"
    show_reason = btg or record.entry.user_selected
    return CitizenLogLine(
        when=to_instant(record.entry.recorded), who=who, organisation=orgs.get("PROV"),
        unit=orgs.get("SDLOC"), what=ACTION_TEXT.get(record.entry.action, record.entry.action),
        why=why, purpose=purpose, break_glass=btg, self_declared=record.entry.user_selected,
        reason=reason if show_reason else None,
    )


# ---------------------------------------------------------------- the gate's audit sink

#: The gate's intent actions → (AuditEvent.action, subtype). History is refined by scope below.
_INTENT_ACTIONS = {
    "read": ("R", "read"), "vread": ("R", "vread"), "search": ("R", "search-type"),
    "include": ("R", "search-type"), "history": ("R", "history"),
    "everything": ("E", "$everything"), "export": ("E", "export"), "create": ("C", "create"),
    "update": ("U", "update"), "patch": ("U", "patch"), "delete": ("D", "delete"),
    "login": ("E", "login"), "break-glass": ("E", "break-glass"),
    "purge": ("D", "$purge"),
}


def _intent_principal(intent: AuditIntent) -> Principal:
    """The caller as far as an intent describes it (no national id, by the gate's design)."""
    care = None
    if intent.purpose:
        care = CareRelationship(purpose_of_use=intent.purpose, user_selected=intent.user_selected,
                                decision_ref_description=intent.reason)
    kind = cast(Kind, intent.kind if intent.kind in ("practitioner", "citizen") else "system")
    return Principal(kind=kind, issuer="", subject=intent.subject,
                     client_id=intent.client_id, name=intent.name, hpr_number=intent.hpr_number,
                     orgnr_parent=intent.orgnr_parent, orgnr_child=intent.orgnr_child,
                     care_relationship=care)


def entry_for_intent(intent: AuditIntent, *, source: Source,
                     principal: Principal | None = None) -> AuditEntry:
    """The AuditEntry for one of the gate's `AuditIntent`s (akson.access.gate).

    Pass the request's `principal` when at hand: it adds the attestation's decision-ref id, toa
    and healthcare service, which an intent does not carry. A denial is outcome 4 (minor failure,
    the HTTP 4xx class); the purpose recorded is the one the policy applied.
    """
    action, subtype = _INTENT_ACTIONS.get(intent.action, ("E", "$" + intent.action))
    if subtype == "history":
        subtype = ("history-instance" if intent.resource_ids else
                   "history-type" if intent.resource_type else "history-system")
    outcome = "0" if intent.outcome == "allowed" else "4"
    _check(action, subtype, outcome)
    # `audit_entry` for an intent (no national ids, names, query or outcome text), without
    # the PatientRefs and checks it needs in general: one is made per access.
    c = _caller(principal or _intent_principal(intent), source)
    rtype = intent.resource_type
    resources = [f"{rtype}/{rid}" for rid in intent.resource_ids] if rtype else intent.resource_ids
    return AuditEntry(_with_tail(c.head, [[p] for p in intent.patients], resources), intent.at,
                      action, subtype, outcome, c.purpose, c.user_selected, c.org, c.unit,
                      c.agent, tuple(sorted(set(intent.patients))))


class ChainedAuditSink:
    """The gate's `AuditSink` over the hash-chained log (akson.store.audit_log).

    - `record(intent)` (a read session) appends in a transaction of its own;
    - `record(intent, tx=…)` (a write session) appends inside that transaction, so a write and
      its record commit or roll back together. All records of one transaction go to one chain
      (routed by the transaction), so a transaction holds at most one chain lock;
    - a denial in a write session is held back instead: the 403 rolls that transaction back, and
      the denial must survive it. `flush()` records held-back denials in transactions of their
      own; call it once the session's transaction has ended (on SQLite a second write
      transaction inside the first would wait for itself).
    """

    def __init__(self, log: AuditLog, source: Source, *, behind: float = 0.0) -> None:
        self.log = log
        self.source = source
        self._held: list[AuditEntry] = []
        self._group = GroupCommit(log, behind=behind)

    async def settle(self) -> None:
        """Wait until this process's records handed over so far are in the log."""
        await self._group.settle()

    async def close(self) -> None:
        """Write the pending records (at shutdown)."""
        await self._group.close()

    async def record(self, intent: AuditIntent, tx: Tx | None = None,
                     principal: Principal | None = None) -> None:
        entry = entry_for_intent(intent, source=self.source, principal=principal)
        if tx is None:
            await self.log.record(entry, route=uuid.uuid4().hex)
        elif intent.outcome != "allowed":
            self._held.append(entry)
        else:
            await self.log.append(tx, entry, route=f"tx-{id(tx)}")

    async def flush(self) -> None:
        """Record the held-back denials (each in a transaction of its own)."""
        while self._held:
            await self.log.record(self._held.pop(0), route=uuid.uuid4().hex)

    def begin(self) -> SessionAuditSink:
        """A buffering sink for one guarded session (`akson.access.gate.Gate.session`)."""
        return SessionAuditSink(self.log, self.source, self._group)


#: Subtypes of routine reads, whose records may be written just after the response (below).
_ROUTINE_READS = frozenset({"read", "vread", "search-type", "history-instance", "history-type",
                            "history-system", "$everything"})


def routine(entry: AuditEntry) -> bool:
    """Is `entry` a routine allowed read, whose record may follow its response (ADR 0007)?
    Denials, break-the-glass, self-declared relationships, writes, exports and logins are not:
    their records are durable before the response leaves."""
    return (entry.outcome == "0" and entry.subtype in _ROUTINE_READS and entry.purpose != "BTG"
            and not entry.user_selected)


class GroupCommit:
    """Appends the audit records of concurrent sessions in shared transactions (group commit).

    `append(entries)` hands records over and waits until the transaction holding them has
    committed; records that arrive while a transaction is being written go into the next one.
    `append(entries, wait=False)` (routine reads, `routine`) returns at once: the records are
    written within `behind` seconds, with whatever else arrived meanwhile, in one statement —
    a read then costs a share of one statement instead of one statement of its own per handful
    of concurrent reads, which was most of the trust services' cost (docs/performance.md). A
    crash of the process can lose those records of the last `behind` seconds; ADR 0007 weighs
    that. A write that fails is retried (the records are kept, and later routine reads wait
    until the log is written again), so a database outage loses none.

    `settle()` waits until everything handed over so far is written: `AuditEvent` reads (the
    citizen's access log) call it so they see this process's own latest records; `close()`
    writes what is pending at shutdown.
    """

    #: Routine records held in memory at most; past it routine reads wait like the rest.
    BACKLOG = 20_000
    #: Seconds between attempts while the log cannot be written.
    RETRY = 1.0

    def __init__(self, log: AuditLog, *, behind: float = 0.0) -> None:
        self.log = log
        self.behind = behind
        # One chain per process while no other writer uses it: the log then knows the chain's
        # head and appends a batch in one statement (AuditLog.record_many).
        self._chain = log.batch_chain()
        self._pending: list[tuple[list[AuditEntry], asyncio.Future[None] | None]] = []
        self._held = 0  # routine records pending
        self._failing = False
        self._urgent = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def append(self, entries: list[AuditEntry], *, wait: bool = True) -> None:
        """Append `entries` (in order). With `wait`, return once they are committed or raise
        why not; without, return at once (they are written within `behind` seconds)."""
        if not wait and self.behind > 0 and not self._failing and self._held < self.BACKLOG:
            self._pending.append((entries, None))
            self._held += len(entries)
            self._start()
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, done))
        self._urgent.set()
        self._start()
        await done

    async def settle(self) -> None:
        """Wait until every record handed over before this call is written (or raise why not)."""
        if self._pending or (self._writer is not None and not self._writer.done()):
            await self.append([])  # queued behind them: done when they are

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, at shutdown; after `timeout` seconds of failing, give up and
        say how many records were lost."""
        async def written() -> None:
            while self._pending or (self._writer is not None and not self._writer.done()):
                self._urgent.set()
                self._start()
                assert self._writer is not None
                await asyncio.shield(self._writer)

        try:
            await asyncio.wait_for(written(), timeout)
        except TimeoutError:
            if self._writer is not None:
                self._writer.cancel()
            log.error("audit log not written at shutdown: %d routine records lost", self._held)

    def _start(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            if not self._urgent.is_set():  # routine records only: gather more for a while
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self.behind)
            self._urgent.clear()
            batch, self._pending = self._pending, []
            held, self._held = self._held, 0
            try:
                # Routine reads' records that share their columns go in as one block (ADR 0014).
                _, moved = await self.log.record_many(
                    blocks([e for entries, _ in batch for e in entries], routine),
                    chain=self._chain)
                if moved:  # another process appends to it too: try another
                    self._chain = secrets.randbelow(self.log.chains)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting session
                for _, done in batch:
                    if done is not None and not done.done():
                        done.set_exception(exc)
                kept = [(entries, None) for entries, done in batch if done is None]
                if kept:  # routine records are never dropped: retry them, and make reads wait
                    log.error("audit log not written, %d routine records kept for retry: %s",
                              held, type(exc).__name__)
                    self._failing = True
                    self._pending[:0] = kept
                    self._held += held
                    await asyncio.sleep(self.RETRY)
                continue
            self._failing = False
            for _, done in batch:
                if done is not None and not done.done():
                    done.set_result(None)


class SessionAuditSink:
    """The audit records of one guarded session, appended in as few transactions as possible.

    Allowed accesses in a write session are held and appended by `before_commit(tx)` as the
    transaction's last statements (one chain lock, taken last, so audit appends cannot join a
    deadlock; a rollback removes them with the write). Everything else — a read session's
    records, and denials, which must survive the rollback their 403 causes — is appended by
    `flush()` after the session ended, in a transaction shared with concurrent sessions
    (`GroupCommit`): a read request costs at most one audit commit however many resources it
    touched, and never holds two database connections at once.
    """

    def __init__(self, log: AuditLog, source: Source, group: GroupCommit | None = None) -> None:
        self.log = log
        self.source = source
        self.group = group or GroupCommit(log)
        self._in_tx: list[AuditEntry] = []
        self._after: list[AuditEntry] = []
        self._chain: int | None = None  # the chain the transaction holds (AuditLog.hold_chain)

    async def record(self, intent: AuditIntent, tx: Tx | None = None,
                     principal: Principal | None = None) -> None:
        entry = entry_for_intent(intent, source=self.source, principal=principal)
        if tx is not None and intent.outcome == "allowed":
            self._in_tx.append(entry)
        else:
            self._after.append(entry)

    async def before_commit(self, tx: Tx, *, checked_at_commit: bool = False) -> None:
        entries, self._in_tx = self._in_tx, []
        if entries:  # one chain for the transaction's records, free of this process's others
            if self._chain is None:
                self._chain = self.log.hold_chain()
            await self.log.append_many(tx, entries, chain=self._chain,
                                       checked_at_commit=checked_at_commit)

    def rolled_back(self) -> None:
        if self._chain is not None:  # the head its records assumed was not written
            self.log.forget(self._chain)

    async def flush(self) -> None:
        if self._chain is not None:  # the transaction has ended: its chain is free again
            self.log.release_chain(self._chain)
            self._chain = None
        self._in_tx = []  # not committed: the transaction rolled back
        entries, self._after = self._after, []
        if entries:
            await self.group.append(entries, wait=not all(routine(e) for e in entries))
