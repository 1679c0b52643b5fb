"""Pure mapping of base-data register records to FHIR R4 resources (docs/registers.md).

Every function takes one record in the documented JSON Lines shape — already checked by
`akson.registry.records.parse_record`, so fields have the right types and identifiers are valid —
and the ids to use, and returns resource dicts with `id` set, `meta.tag` naming the source
register, following HL7 Norway no-basis R4 (https://hl7.no/fhir/basisprofiler): identifier systems
from `akson.fhir.naming`, the no-basis middlename extension on HumanName and the no-basis
municipality-code extension on `Address.district`. No I/O; the loader decides ids and merging.

Never put a national id anywhere but `identifier` (a RelatedPerson's own id, a Patient's id): it
must not leak into ids, references, narratives or error messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from akson.fhir.identifiers import PersonIdKind, classify_person_id
from akson.fhir.naming import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    HELSEPERSONELLKATEGORI_SYSTEM,
    HER_ID_SYSTEM,
    HPR_SYSTEM,
    KOMMUNENR_SYSTEM,
    ORGNR_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    RESH_SYSTEM,
)
from akson.registry.municipalities import municipality_name

__all__ = [
    "ADDRESS_PROTECTION_SYSTEM",
    "CONFIDENTIALITY_SYSTEM",
    "CONNECTION_TYPE_SYSTEM",
    "EPISODE_TYPE_SYSTEM",
    "FAMILY_RELATION_SYSTEM",
    "FLR_CONTRACT_SYSTEM",
    "FLR_MEMBERSHIP_SYSTEM",
    "GP_LIST_CAPACITY_EXT",
    "MIDDLENAME_EXT",
    "MUNICIPALITY_EXT",
    "MUNICIPALITYCODE_EXT",
    "ORGANIZATION_KIND_SYSTEM",
    "PARENTAL_RESPONSIBILITY_EXT",
    "PERSON_STATUS_EXT",
    "PERSON_STATUS_SYSTEM",
    "ROLE_CODE_SYSTEM",
    "ROLE_CODE_SYSTEM_V3",
    "SERVICE_TYPE_SYSTEM",
    "SOURCE_TAG_SYSTEM",
    "SPECIALITY_SYSTEM",
    "ar_to_resources",
    "enhet_to_organization",
    "gp_contract_to_role",
    "gp_membership_to_episode",
    "hpr_to_practitioner",
    "membership_key",
    "organization_type",
    "person_id_system",
    "person_relations",
    "person_to_patient",
    "source_tag",
]

# ------------------------------------------------------------------ HL7 Norway / HL7 systems

MIDDLENAME_EXT: Final = "http://hl7.no/fhir/StructureDefinition/no-basis-middlename"
MUNICIPALITYCODE_EXT: Final = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
FAMILY_RELATION_SYSTEM: Final = "http://hl7.no/fhir/CodeSystem/no-basis-family-relation"
CONNECTION_TYPE_SYSTEM: Final = "http://hl7.no/fhir/CodeSystem/no-basis-connection-type"
CONFIDENTIALITY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ROLE_CODE_SYSTEM_V3: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
_ORG_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/organization-type"
_PAYLOAD_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
#: Volven 7426 "Spesialitet for helsepersonell" as used by HPR (OID form; URL form unverified).
SPECIALITY_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.7426"
#: Volven 8663 "Kommunale helse- og omsorgstjenester" (e.g. KP02 Sykepleietjeneste), DOMAIN.md §3.
SERVICE_TYPE_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.8663"

# ------------------------------------------------------ Akson's own systems (docs/registers.md)

SOURCE_TAG_SYSTEM: Final = "https://akson.no/fhir/CodeSystem/source"
ADDRESS_PROTECTION_SYSTEM: Final = "https://akson.no/fhir/CodeSystem/address-protection"
PERSON_STATUS_SYSTEM: Final = "https://akson.no/fhir/CodeSystem/freg-personstatus"
PERSON_STATUS_EXT: Final = "https://akson.no/fhir/StructureDefinition/freg-personstatus"
PARENTAL_RESPONSIBILITY_EXT: Final = (
    "https://akson.no/fhir/StructureDefinition/parental-responsibility"
)
ORGANIZATION_KIND_SYSTEM: Final = "https://akson.no/fhir/CodeSystem/organization-kind"
ROLE_CODE_SYSTEM: Final = "https://akson.no/fhir/CodeSystem/practitioner-role"
EPISODE_TYPE_SYSTEM: Final = "https://akson.no/fhir/CodeSystem/episode-type"
FLR_CONTRACT_SYSTEM: Final = "https://akson.no/fhir/NamingSystem/flr-contract-id"
FLR_MEMBERSHIP_SYSTEM: Final = "https://akson.no/fhir/NamingSystem/flr-membership"
GP_LIST_CAPACITY_EXT: Final = "https://akson.no/fhir/StructureDefinition/gp-list-capacity"
MUNICIPALITY_EXT: Final = "https://akson.no/fhir/StructureDefinition/municipality"

#: FREG address protection → (security code, display); `unclassified` carries no label.
_PROTECTION_LABELS: Final = {
    "client_address": ("client-address", "Klientadresse"),
    "confidential": ("confidential", "Fortrolig adresse"),
    "strictly_confidential": ("strictly-confidential", "Strengt fortrolig adresse"),
}
_RESTRICTED: Final = {"system": CONFIDENTIALITY_SYSTEM, "code": "R", "display": "restricted"}

#: FREG family relation → no-basis-family-relation code (spouse and partner share one code).
_FAMILY_CODES: Final = {
    "mor": ("mor", "Mor"),
    "far": ("far", "Far"),
    "medmor": ("medmor", "Medmor"),
    "barn": ("barn", "Barn"),
    "ektefelle": ("ektefelleEllerPartner", "Ektefelle eller partner"),
    "partner": ("ektefelleEllerPartner", "Ektefelle eller partner"),
}
_ORG_KIND_DISPLAY: Final = {
    "kommune": "Kommune",
    "legekontor": "Legekontor",
    "legevakt": "Legevakt",
    "hjemmetjeneste": "Hjemmetjeneste",
    "helsestasjon": "Helsestasjon",
    "sykehjem": "Sykehjem",
    "helseforetak": "Helseforetak",
}


# ------------------------------------------------------------------------------- helpers


def source_tag(register: str) -> dict[str, str]:
    """The `meta.tag` coding naming the register a resource came from."""
    return {"system": SOURCE_TAG_SYSTEM, "code": register}


def _meta(register: str, security: list[dict[str, str]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [source_tag(register)]}
    if security:
        meta["security"] = security
    return meta


def _ref(res_type: str, res_id: str) -> dict[str, str]:
    return {"reference": f"{res_type}/{res_id}"}


def _provided_by(organization_id: str, orgnr: str | None) -> dict[str, Any]:
    """no-basis wants the providing organisation's orgnr beside the reference
    (invariant no-basis-providedBy-identifier)."""
    ref: dict[str, Any] = _ref("Organization", organization_id)
    if orgnr:
        ref["identifier"] = {"system": ORGNR_SYSTEM, "value": orgnr}
    return ref


def _period(start: str | None, end: str | None) -> dict[str, str]:
    period = {}
    if start:
        period["start"] = start
    if end:
        period["end"] = end
    return period


def person_id_system(nin: str) -> str:
    """The identifier system for a national id: FNR, D-nummer or felles hjelpenummer.

    Raises ValueError (without the value) for anything else, including the month + 40 form,
    which is not a national id (DOMAIN.md §1).
    """
    person = classify_person_id(nin)
    systems = {PersonIdKind.FNR: FNR_SYSTEM, PersonIdKind.DNR: DNR_SYSTEM,
               PersonIdKind.FHN: FHN_SYSTEM}
    if person is None or person.kind not in systems:
        raise ValueError("not a fødselsnummer, D-nummer or felles hjelpenummer")
    return systems[person.kind]


def _person_identifier(nin: str) -> dict[str, str]:
    return {"system": person_id_system(nin), "value": nin}


def _human_name(name: Mapping[str, Any]) -> dict[str, Any]:
    """An official no-basis HumanName; the middle name goes in the middlename extension (and
    is not a given name, so name order stays as the law of personal names has it)."""
    out: dict[str, Any] = {"use": "official"}
    if name.get("middle"):
        out["extension"] = [{"url": MIDDLENAME_EXT, "valueString": name["middle"]}]
    parts = [name.get("given"), name.get("middle"), name.get("family")]
    out["text"] = " ".join(p for p in parts if p)
    if name.get("family"):
        out["family"] = name["family"]
    if name.get("given"):
        out["given"] = [name["given"]]
    return out


def _municipality_coding(number: str) -> dict[str, str]:
    name = municipality_name(number)
    if name is None:
        raise ValueError(f"municipality {number} is not a Norwegian municipality number")
    return {"system": KOMMUNENR_SYSTEM, "code": number, "display": name}


def _district(number: str) -> dict[str, Any]:
    """`district` (the municipality's name) with the no-basis municipality-code extension."""
    coding = _municipality_coding(number)
    return {
        "district": coding["display"],
        "_district": {"extension": [{"url": MUNICIPALITYCODE_EXT, "valueCoding": coding}]},
    }


# ------------------------------------------------------------------------------------ freg


def person_to_patient(record: Mapping[str, Any], *, patient_id: str) -> dict[str, Any]:
    """A FREG person as a no-basis Patient.

    Address protection (FREG `AddressProtection`): `strictly_confidential` → no `address`
    element at all and the security label `address-protection|strictly-confidential`;
    `confidential` / `client_address` → the address is kept and labelled; `unclassified` → no
    label. The FREG person status is kept in the `freg-personstatus` extension.
    """
    protection = record.get("address_protection") or "unclassified"
    security = []
    if protection in _PROTECTION_LABELS:
        code, display = _PROTECTION_LABELS[protection]
        security.append({"system": ADDRESS_PROTECTION_SYSTEM, "code": code, "display": display})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": _meta("freg", security),
        "extension": [{
            "url": PERSON_STATUS_EXT,
            "valueCoding": {"system": PERSON_STATUS_SYSTEM, "code": record["status"]},
        }],
        "identifier": [_person_identifier(record["nin"])],
        "name": [_human_name(record["name"])],
    }
    if record.get("gender"):
        patient["gender"] = record["gender"]
    if record.get("birth_date"):
        patient["birthDate"] = record["birth_date"]
    if record.get("death_date"):
        patient["deceasedDateTime"] = record["death_date"]
    address = record.get("address")
    if address and protection != "strictly_confidential":
        patient["address"] = [_address(address)]
    return patient


def _address(address: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"use": "home", "type": "physical"}
    if address.get("lines"):
        out["line"] = list(address["lines"])
    if address.get("city"):
        out["city"] = address["city"]
    if address.get("municipality"):
        out.update(_district(address["municipality"]))
    if address.get("postal_code"):
        out["postalCode"] = address["postal_code"]
    out["country"] = "NO"
    if address.get("from"):
        out["period"] = {"start": address["from"]}
    return out


def person_relations(
    record: Mapping[str, Any], *, patient_id: str, related_ids: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One RelatedPerson per person related to `record`'s person, labelled restricted (R).

    `patient` is `record`'s person (Patient/`patient_id`); `identifier` is the related person's
    national id; `related_ids[nin]` is the RelatedPerson id to use for each related national id
    (KeyError-free: a missing id raises ValueError without the number). One related person may
    appear in several lists (a child in `family` as `barn` and in `parental_responsibility`):
    they become one RelatedPerson with every relationship, so ids never collide.

    - `family[]` → `relationship` coded in no-basis-family-relation (ektefelle and partner both
      map to `ektefelleEllerPartner`).
    - `parental_responsibility[]` (on the parent's record) → the child as RelatedPerson with
      relationship v3-RoleCode `CHILD` and the `parental-responsibility` extension holding the
      no-basis parental-responsibility code: the patient holds that responsibility for the child.
    - `guardianship[]` → the guardian as RelatedPerson with relationship v3-RoleCode `GUARD`.
    Taushetsbelagt in FREG, so every RelatedPerson carries `meta.security` v3-Confidentiality R.
    """
    by_nin: dict[str, dict[str, Any]] = {}

    def related(nin: str) -> dict[str, Any]:
        if nin not in by_nin:
            rid = related_ids.get(nin)
            if not rid:
                raise ValueError("related_ids has no RelatedPerson id for a related person")
            by_nin[nin] = {
                "resourceType": "RelatedPerson",
                "id": rid,
                "meta": _meta("freg", [dict(_RESTRICTED)]),
                "identifier": [_person_identifier(nin)],
                "patient": _ref("Patient", patient_id),
                "relationship": [],
            }
        return by_nin[nin]

    for rel in record.get("family") or []:
        code, display = _FAMILY_CODES[rel["relation"]]
        _add_relationship(related(rel["nin"]), FAMILY_RELATION_SYSTEM, code, display)
    for resp in record.get("parental_responsibility") or []:
        child = related(resp["child_nin"])
        _add_relationship(child, ROLE_CODE_SYSTEM_V3, "CHILD", "child")
        child.setdefault("extension", []).append({
            "url": PARENTAL_RESPONSIBILITY_EXT,
            "valueCoding": {"system": PARENTAL_RESPONSIBILITY_SYSTEM,
                            "code": resp["responsibility"]},
        })
    for guard in record.get("guardianship") or []:
        _add_relationship(related(guard["guardian_nin"]), ROLE_CODE_SYSTEM_V3, "GUARD", "guardian")
    return list(by_nin.values())


def _add_relationship(res: dict[str, Any], system: str, code: str, display: str) -> None:
    concept = {"coding": [{"system": system, "code": code, "display": display}]}
    if concept not in res["relationship"]:
        res["relationship"].append(concept)


# ------------------------------------------------------------------------------------- hpr


def hpr_to_practitioner(record: Mapping[str, Any], *, practitioner_id: str) -> dict[str, Any]:
    """An HPR person as a no-basis Practitioner: HPR-nr and national-id identifiers, one
    `qualification` per authorisation (Volven 9060 category, period) and per speciality
    (Volven 7426)."""
    identifiers = [{"system": HPR_SYSTEM, "value": record["hpr_number"]}]
    if record.get("nin"):
        identifiers.append(_person_identifier(record["nin"]))
    qualifications = []
    for auth in record.get("authorizations") or []:
        qualifications.append(_qualification(HELSEPERSONELLKATEGORI_SYSTEM, auth["category"],
                                             None, auth.get("from"), auth.get("to")))
    for spec in record.get("specialities") or []:
        qualifications.append(_qualification(SPECIALITY_SYSTEM, spec["code"], spec.get("display"),
                                             spec.get("from"), spec.get("to")))
    out: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": practitioner_id,
        "meta": _meta("hpr"),
        "identifier": identifiers,
        "name": [_human_name(record["name"])],
    }
    if qualifications:
        out["qualification"] = qualifications
    return out


def _qualification(system: str, code: str, display: str | None, start: str | None,
                   end: str | None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: dict[str, Any] = {"code": {"coding": [coding]}}
    period = _period(start, end)
    if period:
        out["period"] = period
    return out


# ----------------------------------------------------------------------------------- enhet


def enhet_to_organization(
    record: Mapping[str, Any], *, organization_id: str, parent_id: str | None
) -> dict[str, Any]:
    """An Enhetsregisteret unit as a no-basis Organization.

    Identifiers: orgnr, RESH-id where given, and — for `kind` kommune only — the kommunenummer
    (an identifier must identify: a legekontor is not "the municipality 4601"). Every unit's
    municipality is also in `address[0].district` with the municipality-code extension. `type`
    holds the kind (Akson organization-kind) and HL7 organization-type (govt for a kommune, prov
    otherwise). `partOf` = Organization/`parent_id` when given.
    """
    kind = record["kind"]
    identifiers = [{"system": ORGNR_SYSTEM, "value": record["orgnr"]}]
    if record.get("resh"):
        identifiers.append({"system": RESH_SYSTEM, "value": record["resh"]})
    if kind == "kommune" and record.get("municipality"):
        identifiers.append({"system": KOMMUNENR_SYSTEM, "value": record["municipality"]})
    out: dict[str, Any] = {
        "resourceType": "Organization",
        "id": organization_id,
        "meta": _meta("enhet"),
        "identifier": identifiers,
        "active": True,
        "type": [organization_type(kind)],
        "name": record["name"],
    }
    if record.get("municipality"):
        out["address"] = [{"use": "work", **_district(record["municipality"]), "country": "NO"}]
    if parent_id:
        out["partOf"] = _ref("Organization", parent_id)
    return out


def organization_type(kind: str) -> dict[str, Any]:
    """Organization.type for an Enhetsregisteret kind: Akson organization-kind + HL7 type."""
    return {"coding": [
        {"system": ORGANIZATION_KIND_SYSTEM, "code": kind, "display": _ORG_KIND_DISPLAY[kind]},
        {"system": _ORG_TYPE_SYSTEM, "code": "govt" if kind == "kommune" else "prov"},
    ]}


# ------------------------------------------------------------------------------------- flr


def gp_contract_to_role(
    record: Mapping[str, Any], *, role_id: str, practitioner_id: str, organization_id: str
) -> dict[str, Any]:
    """An FLR GP contract as a PractitionerRole: identifier `flr-contract-id|<contract_id>`,
    code `practitioner-role|fastlege`, period, practitioner, organization; the list capacity
    (`max_patients`) and the contract's municipality as extensions. `active` is false once the
    contract has an end date."""
    extensions: list[dict[str, Any]] = []
    if record.get("max_patients") is not None:
        extensions.append({"url": GP_LIST_CAPACITY_EXT, "valueInteger": record["max_patients"]})
    if record.get("municipality"):
        extensions.append({"url": MUNICIPALITY_EXT,
                           "valueCoding": _municipality_coding(record["municipality"])})
    out: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": role_id,
        "meta": _meta("flr"),
    }
    if extensions:
        out["extension"] = extensions
    out.update({
        "identifier": [{"system": FLR_CONTRACT_SYSTEM, "value": record["contract_id"]}],
        "active": not record.get("to"),
        "period": _period(record["from"], record.get("to")),
        "practitioner": _ref("Practitioner", practitioner_id),
        "organization": _ref("Organization", organization_id),
        "code": [{"coding": [{"system": ROLE_CODE_SYSTEM, "code": "fastlege",
                              "display": "Fastlege"}]}],
    })
    return out


def membership_key(record: Mapping[str, Any]) -> str:
    """The `flr-membership` identifier value of a membership: `<contract_id>/<from>`. With the
    patient reference it is the natural key (contract + person + from); it holds no national id."""
    return f"{record['contract_id']}/{record['from']}"


def gp_membership_to_episode(
    record: Mapping[str, Any], *, episode_id: str, patient_id: str, practitioner_id: str,
    organization_id: str,
) -> dict[str, Any]:
    """An FLR list membership as an EpisodeOfCare: type `episode-type|fastlegeliste`, patient,
    `careManager` = the GP's Practitioner, `managingOrganization`, period; identifier
    `flr-membership|<contract_id>/<from>`. Status `finished` once it has an end date, else
    `active` (deterministic: no dependence on today's date)."""
    return {
        "resourceType": "EpisodeOfCare",
        "id": episode_id,
        "meta": _meta("flr"),
        "identifier": [{"system": FLR_MEMBERSHIP_SYSTEM, "value": membership_key(record)}],
        "status": "finished" if record.get("to") else "active",
        "type": [{"coding": [{"system": EPISODE_TYPE_SYSTEM, "code": "fastlegeliste",
                              "display": "Fastlegeliste"}]}],
        "patient": _ref("Patient", patient_id),
        "managingOrganization": _ref("Organization", organization_id),
        "period": _period(record["from"], record.get("to")),
        "careManager": _ref("Practitioner", practitioner_id),
    }


# -------------------------------------------------------------------------------------- ar


def ar_to_resources(record: Mapping[str, Any], *, ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """An Adresseregisteret communication party as [its resource, its Endpoint].

    `ids` keys:
    - `"self"` (required): id of the party's resource — Organization (kind organization),
      HealthcareService (kind service) or PractitionerRole (kind person);
    - `"endpoint"` (required): id of its Endpoint;
    - `"organization"`: the Organization the party belongs to — required for service
      (`providedBy`) and person (`organization`), ignored for organization;
    - `"organization_orgnr"`: for kind service, that Organization's orgnr (no-basis puts it
      in `providedBy.identifier`);
    - `"practitioner"`: for kind person, the Practitioner id when known; otherwise the role
      refers to the practitioner by HPR identifier.
    The party carries its HER-id as identifier; the Endpoint (no-basis connection type
    `no-ebxml-2`, payload `any`) has the HER-id as `address` and no identifier, so a HER-id
    search finds exactly one party.
    """
    kind = record["kind"]
    self_id, endpoint_id = ids["self"], ids["endpoint"]
    her = {"system": HER_ID_SYSTEM, "value": record["her_id"]}
    endpoint_ref = [_ref("Endpoint", endpoint_id)]
    party: dict[str, Any]
    if kind == "organization":
        identifiers = [her]
        if record.get("orgnr"):
            identifiers.append({"system": ORGNR_SYSTEM, "value": record["orgnr"]})
        party = {"resourceType": "Organization", "id": self_id, "meta": _meta("ar"),
                 "identifier": identifiers, "active": True, "name": record["name"],
                 "endpoint": endpoint_ref}
        managing = self_id
    elif kind == "service":
        managing = _required(ids, "organization")
        service = record["service"]
        coding = {"system": service.get("system") or SERVICE_TYPE_SYSTEM, "code": service["code"]}
        if service.get("display"):
            coding["display"] = service["display"]
        party = {"resourceType": "HealthcareService", "id": self_id, "meta": _meta("ar"),
                 "identifier": [her], "active": True,
                 "providedBy": _provided_by(managing, ids.get("organization_orgnr")),
                 "type": [{"coding": [coding]}], "name": record["name"],
                 "endpoint": endpoint_ref}
    elif kind == "person":
        managing = _required(ids, "organization")
        practitioner: dict[str, Any]
        if ids.get("practitioner"):
            practitioner = _ref("Practitioner", ids["practitioner"])
        else:
            practitioner = {"identifier": {"system": HPR_SYSTEM, "value": record["hpr_number"]}}
        if record.get("name"):
            practitioner["display"] = record["name"]
        party = {"resourceType": "PractitionerRole", "id": self_id, "meta": _meta("ar"),
                 "identifier": [her], "active": True, "practitioner": practitioner,
                 "organization": _ref("Organization", managing), "endpoint": endpoint_ref}
    else:
        raise ValueError(f"unknown AR kind {kind!r}")
    endpoint = {
        "resourceType": "Endpoint",
        "id": endpoint_id,
        "meta": _meta("ar"),
        "status": "active",
        "connectionType": {"system": CONNECTION_TYPE_SYSTEM, "code": "no-ebxml-2",
                           "display": "ebXML 2.0"},
        "name": record["name"],
        "managingOrganization": _ref("Organization", managing),
        "payloadType": [{"coding": [{"system": _PAYLOAD_TYPE_SYSTEM, "code": "any"}]}],
        "address": record["her_id"],
    }
    return [party, endpoint]


def _required(ids: Mapping[str, str], key: str) -> str:
    value = ids.get(key)
    if not value:
        raise ValueError(f"ids[{key!r}] is required for this kind of AR record")
    return value
