"""The access policy: pure decisions from a caller, the time and facts about patients (no SQL).

`plan(principal, now, facts)` says what one caller may see and do, and why: a `Plan` holding a
`Restriction` (akson.store.access_sql) that the gate compiles into every query. The rules
(ARCHITECTURE.md "Identity and access", DOMAIN.md §3–4, docs/adr/0006-access-gate.md):

- practitioner: tenant (legal entity `orgnr_parent`, and the unit `orgnr_child` must be part of
  it) × unit × care relationship × purpose of use (TREAT, ETREAT, COC, BTG). Care relationships
  come from data (GP list, an active episode or an encounter at the unit, a home-care decision, a
  legevakt contact) or are self-declared with a reason (`decision_ref.user_selected`) for the
  patients the attestation names, within the attestation's lifetime. Break-the-glass (BTG) needs
  a reason and a fresh attestation naming the patients, and is marked in the audit trail.
- Volven 9603 labels in `meta.security`: NORS (blocked by the citizen) hides from health
  personnel and system clients except under break-the-glass; NORU (delayed citizen access)
  hides from the citizen and parents; NORN_FORANS and NORN_UNGDOM hide from parents.
- A citizen's block of named persons or units (a Consent, see access_sql.ActorBlock) hides the
  whole record from them, except under break-the-glass.
- citizen: their own record, and their children's while the age rules allow (pasbrl § 3-4,
  Helsenorge proxy rules): under 12 only when the parent shares the child's registered address;
  none from 12.
- system client: what its SMART scopes allow; `system/` scopes reach every record, `patient/`
  scopes the launch patient only.
- Addresses: a strictly confidential address (FREG "strengt fortrolig") is never returned; a
  confidential one (and a client address) only to the citizen and to health personnel treating
  (TREAT, ETREAT, BTG). See `redact`.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import orjson

from akson.access.memo import ByIdentity
from akson.access.principal import PURPOSES_OF_USE, Principal
from akson.access.scopes import Scope
from akson.fhir import jsonio
from akson.fhir.naming import RESTRICTION_CODE_SYSTEM
from akson.fhir.outcome import FhirError
from akson.store.access_sql import (
    BLOCK_CODE,
    CONSENT_CATEGORY_SYSTEM,
    ORIGIN_RESULTS,
    ORIGIN_SYSTEM,
    RESERVATION_CODE,
    ActorBlock,
    CareRelation,
    LabelRule,
    Restriction,
)

# Volven 9603 restriction codes (DOMAIN.md §4).
NORS = (RESTRICTION_CODE_SYSTEM, "NORS")
NORU = (RESTRICTION_CODE_SYSTEM, "NORU")
NORN_FORANS = (RESTRICTION_CODE_SYSTEM, "NORN_FORANS")
NORN_UNGDOM = (RESTRICTION_CODE_SYSTEM, "NORN_UNGDOM")
#: FREG address protection labels (= akson.registry.mapping.ADDRESS_PROTECTION_SYSTEM; the
#: registry layer sits above this one, so the value is repeated and a test keeps them equal).
ADDRESS_PROTECTION_SYSTEM = "https://akson.no/fhir/CodeSystem/address-protection"
STRICTLY_CONFIDENTIAL = (ADDRESS_PROTECTION_SYSTEM, "strictly-confidential")
CONFIDENTIAL = (ADDRESS_PROTECTION_SYSTEM, "confidential")
CLIENT_ADDRESS = (ADDRESS_PROTECTION_SYSTEM, "client-address")
#: Marks a resource the server changed for this caller (R4 security-labels, "REDACTED").
REDACTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "REDACTED", "display": "redacted"}
#: Parents' digital access ends at this age (Helsenorge proxy rules, DOMAIN.md §4).
PARENT_ACCESS_BELOW_AGE = 12
#: Types that hold a person's address.
ADDRESS_TYPES = frozenset({"Patient", "RelatedPerson", "Person"})
#: Record-less types a citizen may read (names of their GP, units, medicines; conformance).
CITIZEN_SHARED_TYPES = frozenset({
    "Practitioner", "PractitionerRole", "Organization", "Location", "HealthcareService",
    "Endpoint", "Medication", "Substance", "CapabilityStatement", "StructureDefinition",
    "SearchParameter", "OperationDefinition", "CodeSystem", "ValueSet", "ConceptMap",
    "NamingSystem", "Questionnaire"})
#: Base data and definitions, written by system clients only (`may_write_type`).
REGISTER_TYPES = frozenset({
    "Organization", "Practitioner", "PractitionerRole", "HealthcareService", "Location",
    "Endpoint", "Group", "SearchParameter", "CodeSystem", "ValueSet", "ConceptMap",
    "NamingSystem", "StructureDefinition", "OperationDefinition", "CapabilityStatement",
    "AuditEvent"})
#: What a citizen may write in their own record: blocks and other consents.
CITIZEN_WRITABLE = frozenset({"Consent"})
ALL_INTERACTIONS = frozenset("cruds")


def may_write_type(principal: Principal, res_type: str) -> bool:
    """Whether this kind of caller may write this type at all. Who works where is what care
    relationships are computed from, and a SearchParameter changes how every record is indexed:
    a person who could edit them could widen their own access. Registers, terminology and
    definitions are written by system clients (the register sync, operators), never through a
    person's token."""
    return res_type not in REGISTER_TYPES or principal.kind == "system"


@dataclass(frozen=True, slots=True)
class Policy:
    """The policy's tunables.

    `attestation_ttl` (seconds): a tillitsrammeverk attestation older than this is refused
    (`attestation_has_expired`, 60 min in DOMAIN.md §3); self-declared relationships and
    break-the-glass last no longer. `break_glass_ttl` may be shorter still. `encounter_grace`:
    how long after an Encounter ended it still is a care relationship (follow-up of results,
    prescriptions). `journal_members`: the legal entities that share the journal (pjl § 9);
    None admits any.
    """

    attestation_ttl: int = 3600
    break_glass_ttl: int = 3600
    encounter_grace: int = 14 * 86400
    journal_members: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ChildFacts:
    """What the registry says about one child of a citizen (from the parent's RelatedPersons)."""

    patient_id: str
    birth_date: date | None
    parental_responsibility: bool
    shares_address: bool
    parents_refused: bool  # NORN_FORANS on the child's Patient


@dataclass(frozen=True, slots=True)
class Facts:
    """Facts the gate looked up for one caller before the decision."""

    self_patient: str | None = None  # the citizen's own Patient id
    children: tuple[ChildFacts, ...] = ()
    attested_patients: tuple[str, ...] = ()  # Patient ids the attestation names
    practitioner_ids: tuple[str, ...] = ()  # the caller's Practitioner resources (by HPR)
    unit_ids: tuple[str, ...] = ()  # the caller's unit, when it is part of the legal entity
    legal_entity_ids: tuple[str, ...] = ()  # the caller's legal entity (Organization)


@dataclass(frozen=True, slots=True)
class Plan:
    """One caller's access for one request: a restriction and what it may do, and why."""

    allowed: bool
    reason: str  # why; for the audit trail, never personal data
    restriction: Restriction = field(default_factory=lambda: Restriction(shared=False))
    interactions: frozenset[str] = frozenset()
    scopes: tuple[Scope, ...] = ()
    writable_types: frozenset[str] | None = None  # None: any permitted type
    write_patients: tuple[str, ...] | None = None  # None: any the caller may see
    purpose: str | None = None
    break_glass: bool = False
    user_selected: bool = False
    confidential_address: bool = False
    self_patient: str | None = None

    def permits(self, res_type: str, interaction: str) -> bool:
        """May the caller do `interaction` (c r u d s) on `res_type` at all?"""
        if not self.allowed or interaction not in self.interactions:
            return False
        types = self.restriction.types
        if types is not None and res_type not in types:
            return False
        if interaction in "cud" and self.writable_types is not None \
                and res_type not in self.writable_types:
            return False
        if self.scopes:
            return any(s.permits(res_type, interaction) for s in self.scopes)
        return True


def denied(reason: str) -> Plan:
    """A plan that allows nothing."""
    return Plan(False, reason)


def age_on(birth: date, today: date) -> int:
    """Whole years from `birth` to `today` (a 29 February birthday falls on 1 March)."""
    years = today.year - birth.year
    if (today.month, today.day) < (birth.month, birth.day):
        years -= 1
    return years


def parent_may_see(child: ChildFacts, today: date) -> bool:
    """Digital parental access to a child's record (DOMAIN.md §4): the parent has parental
    responsibility, the child is under 12, lives at the parent's registered address and the
    parents are not refused (NORN_FORANS)."""
    if not child.parental_responsibility or child.parents_refused or child.birth_date is None:
        return False
    if child.birth_date > today:
        return False
    return age_on(child.birth_date, today) < PARENT_ACCESS_BELOW_AGE and child.shares_address


def plan(principal: Principal, now: datetime, facts: Facts, policy: Policy | None = None) -> Plan:
    """The access of `principal` at `now` (aware datetime), given `facts`."""
    policy = policy or Policy()
    if principal.kind == "system":
        return _system_plan(principal)
    if principal.kind == "citizen":
        return _citizen(principal, now, facts)
    return _practitioner(principal, now, facts, policy)


def _types(scopes: tuple[Scope, ...]) -> frozenset[str] | None:
    """The resource types some scope lets the caller read or search (None: no scopes, or a
    wildcard one). Types a caller may only write stay invisible."""
    if not scopes:
        return None
    readable = [s for s in scopes if not s.query and s.interactions & {"r", "s"}]
    if any(s.resource_type == "*" for s in readable):
        return None
    return frozenset(s.resource_type for s in readable)


def _usable(scopes: tuple[Scope, ...]) -> tuple[Scope, ...]:
    # A v2 scope with a query (`?category=…`) is not enforced here: it grants nothing rather
    # than more than it says.
    return tuple(s for s in scopes if not s.query)


#: System clients' plans by principal: a system client's plan follows from its scopes alone,
#: so it is built once per token instead of per request (~10 µs).
_SYSTEM_PLANS: ByIdentity[Plan] = ByIdentity()


def _system_plan(principal: Principal) -> Plan:
    return _SYSTEM_PLANS.get(principal, lambda: _system(principal))


def _system(principal: Principal) -> Plan:
    if not principal.scopes:
        return denied("system client without resource scopes")
    scopes = _usable(principal.scopes)
    system = tuple(s for s in scopes if s.context == "system")
    patient = tuple(s for s in scopes if s.context == "patient")
    nors = LabelRule(*NORS)
    if system:
        r = Restriction(all_patients=True, types=_types(system), labels=(nors,))
        return Plan(True, "system scopes", r, ALL_INTERACTIONS, system)
    if patient and principal.launch_patient:
        r = Restriction(patient_ids=(principal.launch_patient,), types=_types(patient),
                        labels=(nors,))
        return Plan(True, "patient scopes with launch patient", r, ALL_INTERACTIONS, patient)
    return denied("system client without usable system/ or patient/ scopes")


def _citizen(principal: Principal, now: datetime, facts: Facts) -> Plan:
    if facts.self_patient is None:
        return denied("citizen without a record")
    today = now.date()
    children = tuple(c.patient_id for c in facts.children if parent_may_see(c, today))
    labels = (LabelRule(*NORU),
              LabelRule(*NORN_FORANS, only_patients=children),
              LabelRule(*NORN_UNGDOM, only_patients=children))
    scopes = _usable(principal.scopes)
    if not scopes:
        return denied("no usable resource scopes (SMART patient/ or user/)")
    r = Restriction(patient_ids=(facts.self_patient, *children),
                    shared_types=CITIZEN_SHARED_TYPES, types=_types(scopes), labels=labels)
    return Plan(True, "own record" + (" and children's" if children else ""), r,
                frozenset("crus"), scopes, writable_types=CITIZEN_WRITABLE,
                write_patients=(facts.self_patient,), confidential_address=True,
                self_patient=facts.self_patient)


def _practitioner(principal: Principal, now: datetime, facts: Facts, policy: Policy) -> Plan:
    if not (principal.hpr_number and principal.orgnr_parent and principal.orgnr_child):
        return denied("practitioner without HPR number, legal entity or unit")
    if policy.journal_members is not None and principal.orgnr_parent not in policy.journal_members:
        return denied("legal entity is not part of the shared journal")
    cr = principal.care_relationship
    if cr is None or cr.purpose_of_use not in PURPOSES_OF_USE:
        return denied("no purpose of use")
    if not facts.unit_ids:
        return denied("unit unknown, or not part of the legal entity")
    now_s = int(now.timestamp())
    if cr.toa is not None and not 0 <= now_s - cr.toa <= policy.attestation_ttl:
        return denied("attestation_has_expired")
    reason = (cr.decision_ref_description or "").strip()
    explicit: tuple[str, ...] = ()
    btg = cr.purpose_of_use == "BTG"
    if btg or cr.user_selected:
        kind = "break-the-glass" if btg else "self-declared care relationship"
        ttl = policy.break_glass_ttl if btg else policy.attestation_ttl
        if not reason:
            return denied(f"{kind} needs a reason")
        if cr.toa is None or not 0 <= now_s - cr.toa <= ttl:
            return denied(f"{kind} needs a current attestation")
        if not facts.attested_patients:
            return denied(f"{kind} names no known patient")
        explicit = facts.attested_patients
    exempt = explicit if btg else ()
    scopes = _usable(principal.scopes)
    if not scopes:  # a token must say what it may do; none usable means nothing, not all
        return denied("no usable resource scopes (SMART user/ or patient/)")
    relation = CareRelation(facts.practitioner_ids, facts.unit_ids, now_s * 1_000_000,
                            (now_s - policy.encounter_grace) * 1_000_000)
    r = Restriction(patient_ids=explicit, relation=relation, types=_types(scopes),
                    labels=(LabelRule(*NORS, except_patients=exempt),),
                    block=ActorBlock(facts.practitioner_ids,
                                     tuple(sorted({*facts.unit_ids, *facts.legal_entity_ids})),
                                     except_patients=exempt))
    why = ("break-the-glass" if btg else "self-declared care relationship" if cr.user_selected
           else "care relationship from data")
    return Plan(True, f"{cr.purpose_of_use}: {why}", r, ALL_INTERACTIONS, scopes,
                purpose=cr.purpose_of_use, break_glass=btg, user_selected=cr.user_selected,
                confidential_address=cr.purpose_of_use in ("TREAT", "ETREAT", "BTG"))


def address_search_rules(p: Plan) -> tuple[LabelRule, ...]:
    """Label rules for a search that matches on an address: persons whose address the caller may
    not see must not be found by it (DOMAIN.md, "excluded from address search")."""
    hidden = [STRICTLY_CONFIDENTIAL]
    if not p.confidential_address:
        hidden += [CONFIDENTIAL, CLIENT_ADDRESS]
    return tuple(LabelRule(*label) for label in hidden)


def with_rules(p: Plan, rules: Iterable[LabelRule]) -> Plan:
    """`p` with more label rules."""
    r = p.restriction
    return replace(p, restriction=replace(r, labels=(*r.labels, *rules)))


def security_labels(resource: dict[str, Any]) -> set[tuple[str, str]]:
    """The (system, code) pairs of `meta.security`."""
    meta = resource.get("meta")
    out: set[tuple[str, str]] = set()
    if isinstance(meta, dict):
        for coding in meta.get("security") or ():
            if isinstance(coding, dict):
                out.add((str(coding.get("system") or ""), str(coding.get("code") or "")))
    return out


def hides_address(labels: set[tuple[str, str]], p: Plan) -> bool:
    """Must a person's address be removed for this caller, given the person's labels?"""
    if STRICTLY_CONFIDENTIAL in labels:
        return True
    return bool(labels & {CONFIDENTIAL, CLIENT_ADDRESS}) and not p.confidential_address


def redact(resource: dict[str, Any], p: Plan, current: AbstractSet[tuple[str, str]] = frozenset()
           ) -> dict[str, Any] | None:
    """`resource` without what this caller may not see, or None when nothing changes.

    A person's protected address is removed from `address` and from the narrative (which may
    quote it), and the copy is labelled REDACTED. `current` are the labels of the resource's
    current version: an older version (history, vread) is redacted when either carries them.
    """
    if resource.get("resourceType") not in ADDRESS_TYPES:
        return None
    labels = security_labels(resource) | set(current)
    if not hides_address(labels, p) or ("address" not in resource and "text" not in resource):
        return None
    out = {k: v for k, v in resource.items() if k not in ("address", "text")}
    meta = dict(out.get("meta") or {})
    meta["security"] = [*(meta.get("security") or []), dict(REDACTED)]
    out["meta"] = meta
    return out


def labels_hide(r: Restriction, content: bytes | None, patient_id: str | None) -> bool:
    """`hidden_by_labels` for a stored version's JSON. Stored JSON is orjson's, which writes a
    label's code as plain `"CODE"`: JSON without any rule's code in its bytes needs no parse."""
    if not r.labels or content is None:
        return False
    if not any(orjson.dumps(rule.code) in content for rule in r.labels):
        return False
    return hidden_by_labels(r, security_labels(jsonio.loads(content)), patient_id)


def hidden_by_labels(r: Restriction, labels: set[tuple[str, str]], patient_id: str | None
                     ) -> bool:
    """Do `r`'s label rules hide a resource (version) with `labels` in `patient_id`'s record?
    The same rule `access_sql` compiles, for versions whose labels the index no longer holds."""
    for rule in r.labels:
        if (rule.system, rule.code) not in labels:
            continue
        if rule.only_patients is not None and (patient_id is None
                                               or patient_id not in rule.only_patients):
            continue
        if patient_id is not None and patient_id in rule.except_patients:
            continue
        return True
    return False


def _home_addresses(person: dict[str, Any]) -> set[tuple[tuple[str, ...], str]]:
    out = set()
    for a in person.get("address") or ():
        if not isinstance(a, dict) or a.get("use") not in (None, "home") \
                or (a.get("period") or {}).get("end"):
            continue
        lines = tuple(str(x).strip().casefold() for x in a.get("line") or ())
        postal = str(a.get("postalCode") or "").strip()
        if lines and postal:
            out.add((lines, postal))
    return out


def shares_address(parent: dict[str, Any], child: dict[str, Any]) -> bool:
    """Does the child live at one of the parent's registered (home) addresses? A child whose
    address is not stored (strictly confidential) shares none."""
    return bool(_home_addresses(parent) & _home_addresses(child))


def is_result(resource: dict[str, Any]) -> bool:
    """Does the resource carry the results service's `meta.tag` (akson.results)?"""
    return any(isinstance(t, dict) and t.get("system") == ORIGIN_SYSTEM
               and t.get("code") == ORIGIN_RESULTS
               for t in (resource.get("meta") or {}).get("tag") or ())


def is_reservation(consent: dict[str, Any]) -> bool:
    """Is this Consent a reservation against storage of results? Only the citizen (or a
    system client acting for them) makes or withdraws one (akson.access.gate)."""
    return any(isinstance(c, dict) and c.get("system") == CONSENT_CATEGORY_SYSTEM
               and c.get("code") == RESERVATION_CODE
               for cat in consent.get("category") or () if isinstance(cat, dict)
               for c in cat.get("coding") or ())


def bulk_refusal(resource: dict[str, Any]) -> str | None:
    """Why a new resource may not be bulk-loaded (`akson import`), or None. The checks of a
    single create that depend on the resource alone: results come from the results service
    only, and a block must be one (`check_block_consent`)."""
    if is_result(resource):
        return "Results are written by the results service only: deliver them to /results/ingest"
    if resource.get("resourceType") == "Consent":
        try:
            check_block_consent(resource)
        except FhirError as err:
            return err.diagnostics
    return None


def check_block_consent(consent: dict[str, Any]) -> None:
    """A block (Consent with category `consent-category|sperring`) must deny, and name whom.

    The store finds blocks by category, status and `provision.actor`; a permit or an actor-less
    provision under that category would be read as a block it is not, so it is refused (422).
    """
    categories = {(c.get("system"), c.get("code")) for cat in consent.get("category") or ()
                  if isinstance(cat, dict) for c in cat.get("coding") or () if isinstance(c, dict)}
    if (CONSENT_CATEGORY_SYSTEM, BLOCK_CODE) not in categories:
        return
    provision = consent.get("provision") or {}
    actors = [a for a in provision.get("actor") or () if isinstance(a, dict)
              and isinstance(a.get("reference"), dict)
              and str(a["reference"].get("reference") or "").startswith(
                  ("Practitioner/", "Organization/"))]
    if provision.get("type") != "deny" or not actors:
        raise FhirError(422, "A block (Consent category sperring) needs provision.type 'deny' and "
                        "provision.actor references to Practitioner or Organization",
                        "business-rule", ("Consent.provision",))
