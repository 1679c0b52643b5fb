"""HL7 Norway no-basis 2.2.2 profile rules for the resources Akson writes, checked by hand-written code.

Written from reading the no-basis 2.2.2 StructureDefinitions, NamingSystems and CodeSystems
(npm package `hl7.fhir.no.basis` 2.2.2; FSH sources at github.com/HL7Norway/basisprofiler-r4-fsh).
Nothing of theirs is shipped: the rules below are our own code. `tests/fhir/test_no_basis.py`
cross-checks them against the package's snapshots with `akson.fhir.profiles.snapshot`.

What is checked (everything else the profiles say is not — see `check`):

- identifier slices, by `system` (the profiles' discriminator): FNR / D-nummer / felles
  hjelpenummer values and check digits, and that an FNR slice holds no D-nummer and vice versa
  (Patient, Practitioner, RelatedPerson, Person); the local H-nummer (Patient, system `HNR`) with
  its `assigner` and `type` coding; HPR-nr (Practitioner); orgnr check digit (ENH) and RESH-id
  digits (Organization); a non-canonical spelling of one of these systems is a warning, because
  the value then misses the slice and its rules;
- no-basis-Address (Patient, Practitioner, RelatedPerson, Person, Organization, Location):
  municipality code on `Address.district` (valueCoding, kommunenummer system, 4 digits), urban
  district (valueCoding, bydelsnummer system, 6 digits), `official` (valueBoolean), property
  information (its sub-extensions), each at most as often as the profile allows;
- no-basis-HumanName: the middlename extension (one valueString per name);
- citizenship: `patient-citizenship` on Patient, `no-basis-person-citizenship` on RelatedPerson and
  Person — sub-extensions `code` (valueCodeableConcept) and `period` (valuePeriod), no value;
- RelatedPerson.relationship codes from the no-basis family-relation, parental-responsibility and
  marital-status code systems;
- codings in the systems the profiles slice on (Volven 9060, 7704, 7426, 9034, 8451, 8628, 8624,
  8655, 8654, 9151) carry a code;
- HealthcareService.providedBy has an identifier whose system is ENH or RESH (no-basis invariants
  `no-basis-providedBy-identifier`, `no-basis-identifier-system`);
- Endpoint.address is present; a no-basis connection-type code is one of its code system;
- the target type of the references the profiles constrain (partOf, managingOrganization, …);
- Organization invariants org-1 (name or identifier) and org-2 (no home address), inherited from R4.

Issue diagnostics never contain element values: they name the element and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Final

from akson.fhir.identifiers import (
    PersonIdKind,
    classify_person_id,
    fhn_is_valid,
    fnr_is_valid,
    hpr_is_valid,
    orgnr_is_valid,
)
from akson.fhir.naming import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    FNR_SYSTEM_URL,
    HELSEPERSONELLKATEGORI_SYSTEM,
    HNR_SYSTEM,
    HNR_TYPE_CODE,
    HNR_TYPE_SYSTEM,
    HPR_SYSTEM,
    KOMMUNENR_OID,
    KOMMUNENR_SYSTEM,
    ORGNR_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    RESH_SYSTEM,
)
from akson.fhir.outcome import Issue

__all__ = [
    "ADDRESS_OFFICIAL_URL",
    "BYDEL_SYSTEMS",
    "CONNECTION_TYPE_SYSTEM",
    "FAMILY_RELATION_SYSTEM",
    "KOMMUNENR_SYSTEMS",
    "MARITAL_STATUS_SYSTEM",
    "MIDDLENAME_URL",
    "MUNICIPALITY_CODE_URL",
    "PATIENT_CITIZENSHIP_URL",
    "PERSON_CITIZENSHIP_URL",
    "PROFILES",
    "PROPERTY_INFORMATION_URL",
    "URBAN_DISTRICT_URL",
    "check",
    "profile_for",
]

_SD: Final = "http://hl7.no/fhir/StructureDefinition/"
_CS: Final = "http://hl7.no/fhir/CodeSystem/"

#: Resource type → canonical URL of its no-basis 2.2.2 profile (for `meta.profile`).
PROFILES: Final = {
    t: f"{_SD}no-basis-{t}"
    for t in (
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "Composition",
        "DocumentReference",
        "Endpoint",
        "HealthcareService",
        "Location",
        "Medication",
        "MedicationStatement",
        "Organization",
        "Patient",
        "Person",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "RelatedPerson",
        "Substance",
    )
}

MIDDLENAME_URL: Final = f"{_SD}no-basis-middlename"
MUNICIPALITY_CODE_URL: Final = f"{_SD}no-basis-municipalitycode"
URBAN_DISTRICT_URL: Final = f"{_SD}no-basis-urban-district"
ADDRESS_OFFICIAL_URL: Final = f"{_SD}no-basis-address-official"
PROPERTY_INFORMATION_URL: Final = f"{_SD}no-basis-propertyinformation"
PERSON_CITIZENSHIP_URL: Final = f"{_SD}no-basis-person-citizenship"
PATIENT_CITIZENSHIP_URL: Final = "http://hl7.org/fhir/StructureDefinition/patient-citizenship"
_PERSON_REFERENCE_URL: Final = f"{_SD}no-basis-relatedperson-person-reference"
_SHORTNOTICE_URL: Final = f"{_SD}no-basis-shortnotice"
_GROUP_URL: Final = f"{_SD}no-basis-group"

FAMILY_RELATION_SYSTEM: Final = f"{_CS}no-basis-family-relation"
MARITAL_STATUS_SYSTEM: Final = f"{_CS}no-basis-marital-status"
CONNECTION_TYPE_SYSTEM: Final = f"{_CS}no-basis-connection-type"

#: Every spelling of the kommunenummer system in no-basis: the NamingSystem's unique ids in 2.2.2
#: (preferred: KOMMUNENR_SYSTEM, which Akson writes) and in the later IG build, whose URL the
#: profile's binding and the published examples use.
KOMMUNENR_SYSTEMS: Final = frozenset(
    {
        KOMMUNENR_SYSTEM,
        "https://register.geonorge.no/subregister/sosi-kodelister/kartverket/kommunenummer-alle",
        "http://hl7.no/fhir/NamingSystem/kommunenummer",
        KOMMUNENR_OID,
    }
)
#: The bydelsnummer NamingSystem's unique ids (SSB Klass 103 version 919, Volven 3403).
BYDEL_SYSTEMS: Final = frozenset(
    {
        "http://data.ssb.no/api/klass/v1/versions/919",
        "http://hl7.no/fhir/NamingSystem/bydelsnummer",
        "urn:oid:2.16.578.1.12.4.1.1.3403",
    }
)

# The code systems' complete concept lists (content = complete).
_CODES: Final[dict[str, frozenset[str]]] = {
    FAMILY_RELATION_SYSTEM: frozenset(
        {"mor", "far", "medmor", "barn", "søsken", "ektefelleEllerPartner", "dødfødtBarn"}
    ),
    PARENTAL_RESPONSIBILITY_SYSTEM: frozenset({"felles", "mor", "far", "medmor", "andre", "ukjent"}),
    MARITAL_STATUS_SYSTEM: frozenset(
        {
            "uoppgitt",
            "ugift",
            "gift",
            "enkeEllerEnkemann",
            "skilt",
            "separert",
            "registrertPartner",
            "separertPartner",
            "skiltPartner",
            "gjenlevende_partner",
        }
    ),
    CONNECTION_TYPE_SYSTEM: frozenset({"no-ebxml-2", "no-amqp"}),
}
_CODE_SYSTEM_NAMES: Final = {
    FAMILY_RELATION_SYSTEM: "no-basis-family-relation",
    PARENTAL_RESPONSIBILITY_SYSTEM: "no-basis-parental-responsibility",
    MARITAL_STATUS_SYSTEM: "no-basis-marital-status",
    CONNECTION_TYPE_SYSTEM: "no-basis-connection-type",
}

_VOLVEN = "urn:oid:2.16.578.1.12.4.1.1."
# Coding slices whose `code` is 1..1: the element they sit in → the systems sliced on.
_QUALIFICATION_SYSTEMS = frozenset({HELSEPERSONELLKATEGORI_SYSTEM, f"{_VOLVEN}7704", f"{_VOLVEN}7426"})
_ROLE_CODE_SYSTEMS = frozenset({f"{_VOLVEN}9034"})
_DISCIPLINE_SYSTEMS = frozenset({f"{_VOLVEN}8451"})
_ORG_TYPE_SYSTEMS = frozenset({f"{_VOLVEN}8628", f"{_VOLVEN}8624"})
_SERVICE_SPECIALTY_SYSTEMS = frozenset({f"{_VOLVEN}{n}" for n in (8655, 8654, 9151, 8451)})

_OID_SYSTEMS: Final = {
    FNR_SYSTEM: "Fødselsnummer",
    DNR_SYSTEM: "D-nummer",
    FHN_SYSTEM: "Felles hjelpenummer",
    HPR_SYSTEM: "HPR-nummer",
    ORGNR_SYSTEM: "Organisasjonsnummer",
    RESH_SYSTEM: "RESH-id",
}
#: Non-canonical spellings of those systems: the NamingSystems' URL ids and OIDs without `urn:oid:`.
_ALIASES: Final = {
    FNR_SYSTEM_URL: FNR_SYSTEM,
    "http://hl7.no/fhir/NamingSystem/DNR": DNR_SYSTEM,
    "http://hl7.no/fhir/NamingSystem/FHNR": FHN_SYSTEM,
    "http://hl7.no/fhir/NamingSystem/HPR": HPR_SYSTEM,
    **{oid.removeprefix("urn:oid:"): oid for oid in _OID_SYSTEMS},
}

_PERSON_SLICES = frozenset({FNR_SYSTEM, DNR_SYSTEM})
#: Identifier slices per profile (the systems their `identifier` is sliced on).
_IDENTIFIER_SLICES: Final = {
    "Patient": frozenset({FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM, HNR_SYSTEM}),
    "Practitioner": frozenset({HPR_SYSTEM, FNR_SYSTEM, DNR_SYSTEM}),
    "RelatedPerson": _PERSON_SLICES,
    "Person": _PERSON_SLICES,
    "Organization": frozenset({ORGNR_SYSTEM, RESH_SYSTEM}),
}

#: Reference elements whose target the profiles constrain → allowed target resource types.
_REFERENCE_TARGETS: Final[dict[str, dict[str, frozenset[str]]]] = {
    "Patient": {
        "generalPractitioner": frozenset({"Organization", "Practitioner", "PractitionerRole"}),
        "managingOrganization": frozenset({"Organization"}),
    },
    "Organization": {"partOf": frozenset({"Organization"}), "endpoint": frozenset({"Endpoint"})},
    "PractitionerRole": {
        "practitioner": frozenset({"Practitioner"}),
        "organization": frozenset({"Organization"}),
        "location": frozenset({"Location"}),
        "healthcareService": frozenset({"HealthcareService"}),
        "endpoint": frozenset({"Endpoint"}),
    },
    "RelatedPerson": {"patient": frozenset({"Patient"})},
    "HealthcareService": {
        "providedBy": frozenset({"Organization"}),
        "location": frozenset({"Location"}),
        "endpoint": frozenset({"Endpoint"}),
    },
    "Location": {
        "managingOrganization": frozenset({"Organization"}),
        "endpoint": frozenset({"Endpoint"}),
        "partOf": frozenset({"Location"}),
    },
    "Endpoint": {"managingOrganization": frozenset({"Organization"})},
    "Person": {"managingOrganization": frozenset({"Organization"})},
}

#: Simple extensions: URL → the one value[x] element they carry.
_SIMPLE_EXTENSIONS: Final = {
    MIDDLENAME_URL: "valueString",
    MUNICIPALITY_CODE_URL: "valueCoding",
    URBAN_DISTRICT_URL: "valueCoding",
    ADDRESS_OFFICIAL_URL: "valueBoolean",
    _PERSON_REFERENCE_URL: "valueReference",
    _SHORTNOTICE_URL: "valueBoolean",
    _GROUP_URL: "valueBoolean",
}
_Parts = dict[str, tuple[str, int | None]]
_CITIZENSHIP_PARTS: Final[_Parts] = {"code": ("valueCodeableConcept", 1), "period": ("valuePeriod", 1)}
#: Complex extensions: URL → sub-extension url → (value[x] element, max count or None for *).
_COMPLEX_EXTENSIONS: Final[dict[str, _Parts]] = {
    PROPERTY_INFORMATION_URL: {
        "cadastralUnitNumber": ("valueInteger", 1),
        "propertyUnitNumber": ("valueInteger", 1),
        "leaseholdNumber": ("valueInteger", None),
        "condominiumUnitNumber": ("valueInteger", None),
        "municipality": ("valueCoding", None),
    },
    PERSON_CITIZENSHIP_URL: _CITIZENSHIP_PARTS,
    PATIENT_CITIZENSHIP_URL: _CITIZENSHIP_PARTS,
}
#: Extensions allowed only on some resources (their StructureDefinition `context`).
_RESOURCE_CONTEXT: Final = {
    PERSON_CITIZENSHIP_URL: frozenset({"Person", "RelatedPerson"}),
    PATIENT_CITIZENSHIP_URL: frozenset({"Patient"}),
    MIDDLENAME_URL: frozenset(),  # HumanName only
    MUNICIPALITY_CODE_URL: frozenset(),  # Address.district only
    ADDRESS_OFFICIAL_URL: frozenset(),  # Address only
    PROPERTY_INFORMATION_URL: frozenset(),  # Address only
    URBAN_DISTRICT_URL: frozenset({"Patient", "Person", "Practitioner"}),  # and Address
}

_KOMMUNENR = re.compile(r"[0-9]{4}")
_BYDEL = re.compile(r"[0-9]{6}")
_DIGITS = re.compile(r"[0-9]{1,12}")
_VALUE_KEY = re.compile(r"value[A-Z][A-Za-z0-9]*")
_ELEMENT_KEY = re.compile(r"_?[A-Za-z][A-Za-z0-9]*")
# `Type/id`, optionally versioned, at the end of a relative or absolute reference.
_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def profile_for(resource: object) -> str | None:
    """The no-basis 2.2.2 profile URL for a resource (a dict) or resource type name, or None."""
    rtype = resource.get("resourceType") if isinstance(resource, dict) else resource
    return PROFILES.get(rtype) if isinstance(rtype, str) else None


def check(resource: object) -> list[Issue]:
    """The no-basis rules (see the module docstring) this resource breaks; [] when none.

    Meant to run after `akson.fhir.validation.validate`: elements of the wrong JSON type are
    skipped here (the schema reports them), and input of any shape never raises. Contained
    resources are checked too. Every issue has a FHIRPath `expression`; `severity` is "error"
    except for a non-canonical identifier system ("warning": allowed by the open slicing, but the
    value escapes the slice's rules). Not checked: terminology bindings other than the no-basis
    code systems above, FHIRPath invariants other than those named, `meta.profile`, and profiles
    of resource types not listed in the module docstring.
    """
    issues: list[Issue] = []
    if isinstance(resource, dict):
        rtype = resource.get("resourceType")
        if isinstance(rtype, str):
            _check_resource(resource, rtype, rtype, issues)
    return issues


# ------------------------------------------------------------------------------ walking


def _error(issues: list[Issue], where: str, problem: str, code: str = "value") -> None:
    issues.append(Issue(f"{where} {problem}", code, "error", (where,)))


def _items(node: dict[str, Any], key: str, base: str) -> Iterator[tuple[dict[str, Any], str]]:
    """(object, FHIRPath) for each object in `node[key]`, whether it is a list or one object."""
    value = node.get(key)
    if isinstance(value, dict):
        yield value, f"{base}.{key}"
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield item, f"{base}.{key}[{i}]"


def _check_resource(resource: dict[str, Any], rtype: str, base: str, issues: list[Issue]) -> None:
    rule = _RULES.get(rtype)
    if rule is not None:
        rule(resource, base, issues)
    for field, allowed in _REFERENCE_TARGETS.get(rtype, {}).items():
        for ref, where in _items(resource, field, base):
            _check_target(ref, where, allowed, issues)
    _check_extensions(resource, rtype, base, issues, top=True)
    if base == rtype:  # contained resources cannot contain resources (R4 dom-2)
        for inner, where in _items(resource, "contained", base):
            inner_type = inner.get("resourceType")
            if isinstance(inner_type, str):
                _check_resource(inner, inner_type, where, issues)


def _check_extensions(node: dict[str, Any], rtype: str, base: str, issues: list[Issue], top: bool) -> None:
    """Value types and contexts of the no-basis extensions, wherever they appear in `node`."""
    for key, value in node.items():
        if not _ELEMENT_KEY.fullmatch(key) or (top and key == "contained"):
            continue
        name = key[1:] if key.startswith("_") else key
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            where = f"{base}.{name}[{i}]" if isinstance(value, list) else f"{base}.{name}"
            if key in ("extension", "modifierExtension") and isinstance(item.get("url"), str):
                _check_extension(item, where, issues)
                if top and item["url"] in _RESOURCE_CONTEXT:
                    allowed = _RESOURCE_CONTEXT[item["url"]]
                    if rtype not in allowed:
                        _error(
                            issues,
                            where,
                            "is a no-basis extension not defined for this resource "
                            "type (see its StructureDefinition context)",
                            "structure",
                        )
            _check_extensions(item, rtype, where, issues, top=False)


def _value_keys(ext: dict[str, Any]) -> list[str]:
    return [k for k in ext if _VALUE_KEY.fullmatch(k)]


def _check_value_type(ext: dict[str, Any], where: str, wanted: str, issues: list[Issue]) -> bool:
    """Whether `ext` carries exactly `wanted` as its value[x]; reports when it does not."""
    keys = _value_keys(ext)
    if keys == [wanted] or (not keys and f"_{wanted}" in ext):
        return True
    if keys:
        _error(issues, where, f"must carry its value as {wanted}", "structure")
    else:
        _error(issues, where, f"has no {wanted}", "required")
    return False


def _check_extension(ext: dict[str, Any], where: str, issues: list[Issue]) -> None:
    url = ext["url"]
    wanted = _SIMPLE_EXTENSIONS.get(url)
    if wanted is not None:
        if _check_value_type(ext, where, wanted, issues) and wanted == "valueCoding":
            coding = ext.get("valueCoding")
            if isinstance(coding, dict) and url == MUNICIPALITY_CODE_URL:
                _check_coded(
                    coding,
                    f"{where}.value",
                    KOMMUNENR_SYSTEMS,
                    _KOMMUNENR,
                    "kommunenummer",
                    "4 digits",
                    issues,
                )
            elif isinstance(coding, dict):
                _check_coded(
                    coding, f"{where}.value", BYDEL_SYSTEMS, _BYDEL, "bydelsnummer", "6 digits", issues
                )
        return
    parts = _COMPLEX_EXTENSIONS.get(url)
    if parts is None:
        return
    if _value_keys(ext):
        _error(issues, where, "is a complex extension and must not have a value[x]", "structure")
    counts: dict[str, int] = {}
    for sub, sub_where in _items(ext, "extension", where):
        sub_url = sub.get("url")
        if not isinstance(sub_url, str) or sub_url not in parts:
            continue  # open slicing: other sub-extensions are allowed
        sub_wanted, most = parts[sub_url]
        counts[sub_url] = counts.get(sub_url, 0) + 1
        if most is not None and counts[sub_url] > most:
            _error(
                issues,
                sub_where,
                f"repeats the '{sub_url}' part, allowed at most {most} time(s)",
                "structure",
            )
        coding = sub.get("valueCoding")
        if _check_value_type(sub, sub_where, sub_wanted, issues) and isinstance(coding, dict):
            # property information's `municipality`: Volven 3402 = kommunenummer
            _check_coded(
                coding,
                f"{sub_where}.value",
                KOMMUNENR_SYSTEMS,
                _KOMMUNENR,
                "kommunenummer",
                "4 digits",
                issues,
            )


def _check_coded(
    coding: dict[str, Any],
    where: str,
    systems: frozenset[str],
    shape: re.Pattern[str],
    name: str,
    shape_text: str,
    issues: list[Issue],
) -> None:
    system, code = coding.get("system"), coding.get("code")
    if system is None:
        _error(issues, f"{where}.system", f"is missing: a {name} coding needs the {name} system", "required")
    elif system not in systems:
        _error(
            issues,
            f"{where}.system",
            f"is not a {name} system (expected one of {', '.join(sorted(systems))})",
        )
    if code is None:
        _error(issues, f"{where}.code", f"is missing: a {name} coding needs a code", "required")
    elif not isinstance(code, str) or not shape.fullmatch(code):
        _error(issues, f"{where}.code", f"is not a {name} ({shape_text})")


def _check_target(ref: dict[str, Any], where: str, allowed: frozenset[str], issues: list[Issue]) -> None:
    """A reference's target type (from its literal reference and its `type`) must be allowed."""
    shown = " or ".join(sorted(allowed))
    literal = ref.get("reference")
    if isinstance(literal, str):
        m = _REF_TYPE.search(literal)
        if m and m.end() == len(literal) and m.group(1) not in allowed:
            _error(issues, f"{where}.reference", f"must refer to {shown}")
    rtype = ref.get("type")
    if isinstance(rtype, str) and rtype not in allowed and not rtype.startswith("http"):
        _error(issues, f"{where}.type", f"must be {shown}")


# ----------------------------------------------------------------------- identifiers


def _check_identifiers(node: dict[str, Any], rtype: str, base: str, issues: list[Issue]) -> None:
    slices = _IDENTIFIER_SLICES[rtype]
    for ident, where in _items(node, "identifier", base):
        system = ident.get("system")
        if not isinstance(system, str):
            continue
        canonical = _ALIASES.get(system)
        if canonical in slices:
            issues.append(
                Issue(
                    f"{where}.system is a non-canonical spelling of {_OID_SYSTEMS[canonical]}: the "
                    f"no-basis slice uses {canonical}, so its rules are not applied",
                    "value",
                    "warning",
                    (f"{where}.system",),
                )
            )
        elif system in slices:
            _check_slice(ident, system, where, issues)


def _check_slice(ident: dict[str, Any], system: str, where: str, issues: list[Issue]) -> None:
    value = ident.get("value")
    if system == HNR_SYSTEM:
        _check_hnr(ident, where, issues)
        name = "H-nummer"
    else:
        name = _OID_SYSTEMS[system]
    if value is None:
        _error(issues, f"{where}.value", f"is missing: a {name} identifier needs a value", "required")
    elif isinstance(value, str) and system != HNR_SYSTEM:
        problem = _id_value_problem(system, value)
        if problem:
            # The value is personal data: name where it is, never what it is.
            _error(issues, f"{where}.value", f"({name}) {problem}")


def _id_value_problem(system: str, value: str) -> str | None:
    """Why `value` is not a valid identifier value in `system` (one of _OID_SYSTEMS), or None."""
    eleven = len(value) == 11 and value.isascii() and value.isdigit()
    if system in (FNR_SYSTEM, DNR_SYSTEM):
        if not eleven:
            return "is not 11 digits"
        if not fnr_is_valid(value):
            return "has an invalid check digit or birth date"
        person = classify_person_id(value)
        is_dnr = person is not None and person.kind is PersonIdKind.DNR
        if system == FNR_SYSTEM and is_dnr:
            return f"holds a D-nummer (day + 40): use the D-nummer system {DNR_SYSTEM}"
        if system == DNR_SYSTEM and not is_dnr:
            return f"is not a D-nummer (day + 40): use the fødselsnummer system {FNR_SYSTEM}"
        return None
    if system == FHN_SYSTEM:
        if not eleven:
            return "is not 11 digits"
        return None if fhn_is_valid(value) else "does not start with 8 or 9 or has an invalid check digit"
    if system == HPR_SYSTEM:
        return None if hpr_is_valid(value) else "is not a number of 1-9 digits without leading zeros"
    if system == ORGNR_SYSTEM:
        if not (len(value) == 9 and value.isascii() and value.isdigit()):
            return "is not 9 digits"
        return None if orgnr_is_valid(value) else "has an invalid check digit"
    if system == RESH_SYSTEM:
        return None if _DIGITS.fullmatch(value) else "is not a number (digits only)"
    return None


def _check_hnr(ident: dict[str, Any], where: str, issues: list[Issue]) -> None:
    """The local H-nummer slice: not unique, so it needs its assigner and its type coding."""
    if not isinstance(ident.get("assigner"), dict):
        _error(
            issues,
            f"{where}.assigner",
            "is missing: a local H-nummer (system HNR) must name its assigner organisation",
            "required",
        )
    id_type = ident.get("type")
    codings = list(_items(id_type, "coding", f"{where}.type")) if isinstance(id_type, dict) else []
    if not codings:
        _error(
            issues,
            f"{where}.type",
            f"is missing: a local H-nummer needs type coding {HNR_TYPE_SYSTEM}#{HNR_TYPE_CODE}",
            "required",
        )
    for coding, cwhere in codings:
        # The profile fixes system and code of every coding in this slice's type.
        if coding.get("system") != HNR_TYPE_SYSTEM or coding.get("code") != HNR_TYPE_CODE:
            _error(issues, cwhere, f"must be {HNR_TYPE_SYSTEM}#{HNR_TYPE_CODE} (fixed by the HNR slice)")


# ------------------------------------------------------------------ names and addresses


def _check_names(node: dict[str, Any], key: str, base: str, issues: list[Issue]) -> None:
    for name, where in _items(node, key, base):
        _at_most_once(name, where, MIDDLENAME_URL, "middlename", issues)


def _check_addresses(node: dict[str, Any], key: str, base: str, issues: list[Issue]) -> None:
    for address, where in _items(node, key, base):
        _at_most_once(address, where, ADDRESS_OFFICIAL_URL, "official", issues)
        _at_most_once(address, where, URBAN_DISTRICT_URL, "urban-district", issues)
        for ext, ewhere in _items(address, "extension", where):
            if ext.get("url") == MUNICIPALITY_CODE_URL:
                _error(
                    issues,
                    ewhere,
                    "is the municipality code, which belongs on Address.district "
                    "(JSON: _district.extension), not on the Address",
                    "structure",
                )
        district = address.get("_district")
        if isinstance(district, dict):
            _at_most_once(district, f"{where}.district", MUNICIPALITY_CODE_URL, "municipalitycode", issues)


def _at_most_once(node: dict[str, Any], where: str, url: str, name: str, issues: list[Issue]) -> None:
    seen = False
    for ext, ewhere in _items(node, "extension", where):
        if ext.get("url") == url:
            if seen:
                _error(issues, ewhere, f"repeats the {name} extension, allowed once here", "structure")
            seen = True


# ------------------------------------------------------------------------------- codes


def _check_codings_have_code(
    node: dict[str, Any], key: str, systems: frozenset[str], base: str, issues: list[Issue]
) -> None:
    """Each coding in `node[key]` (CodeableConcepts) whose system the profile slices on has a code."""
    for concept, where in _items(node, key, base):
        for coding, cwhere in _items(concept, "coding", where):
            if coding.get("system") in systems and not isinstance(coding.get("code"), str):
                _error(
                    issues,
                    f"{cwhere}.code",
                    "is missing: the profile requires a code for this coding system",
                    "required",
                )


def _check_no_basis_codes(concept: dict[str, Any], where: str, issues: list[Issue]) -> None:
    """Codings of a CodeableConcept in a no-basis code system use one of its codes."""
    for coding, cwhere in _items(concept, "coding", where):
        _check_no_basis_code(coding, cwhere, issues)


def _check_no_basis_code(coding: dict[str, Any], where: str, issues: list[Issue]) -> None:
    """A Coding in a no-basis code system (all are content = complete) uses one of its codes."""
    system = coding.get("system")
    if system not in _CODES:
        return
    code = coding.get("code")
    if not isinstance(code, str):
        _error(
            issues,
            f"{where}.code",
            f"is missing: a {_CODE_SYSTEM_NAMES[system]} coding needs a code",
            "required",
        )
    elif code not in _CODES[system]:
        allowed = ", ".join(sorted(_CODES[system]))
        _error(
            issues,
            f"{where}.code",
            f"is not a code of {_CODE_SYSTEM_NAMES[system]} (allowed: {allowed})",
            "code-invalid",
        )


# ------------------------------------------------------------------------ per resource


def _patient(r: dict[str, Any], base: str, issues: list[Issue]) -> None:
    _check_identifiers(r, "Patient", base, issues)
    _check_names(r, "name", base, issues)
    _check_addresses(r, "address", base, issues)
    for contact, where in _items(r, "contact", base):
        _check_names(contact, "name", where, issues)
        _check_addresses(contact, "address", where, issues)


def _person_like(rtype: str) -> Callable[[dict[str, Any], str, list[Issue]], None]:
    def rule(r: dict[str, Any], base: str, issues: list[Issue]) -> None:
        _check_identifiers(r, rtype, base, issues)
        _check_names(r, "name", base, issues)
        _check_addresses(r, "address", base, issues)
        if rtype == "Practitioner":
            for qualification, where in _items(r, "qualification", base):
                _check_codings_have_code(qualification, "code", _QUALIFICATION_SYSTEMS, where, issues)
        if rtype == "RelatedPerson":
            for concept, where in _items(r, "relationship", base):
                _check_no_basis_codes(concept, where, issues)

    return rule


def _organization(r: dict[str, Any], base: str, issues: list[Issue]) -> None:
    _check_identifiers(r, "Organization", base, issues)
    _check_addresses(r, "address", base, issues)
    for contact, where in _items(r, "contact", base):
        _check_addresses(contact, "address", where, issues)
    _check_codings_have_code(r, "type", _ORG_TYPE_SYSTEMS, base, issues)
    if not r.get("identifier") and not r.get("name"):
        _error(issues, base, "must have a name or an identifier (R4 invariant org-1)", "invariant")
    for address, where in _items(r, "address", base):
        if address.get("use") == "home":
            _error(
                issues,
                f"{where}.use",
                "must not be 'home' for an organisation (R4 invariant org-2)",
                "invariant",
            )


def _practitioner_role(r: dict[str, Any], base: str, issues: list[Issue]) -> None:
    _check_codings_have_code(r, "code", _ROLE_CODE_SYSTEMS, base, issues)
    _check_codings_have_code(r, "specialty", _DISCIPLINE_SYSTEMS, base, issues)


def _healthcare_service(r: dict[str, Any], base: str, issues: list[Issue]) -> None:
    _check_codings_have_code(r, "specialty", _SERVICE_SPECIALTY_SYSTEMS, base, issues)
    for provider, where in _items(r, "providedBy", base):
        ident = provider.get("identifier")
        if not isinstance(ident, dict):
            _error(
                issues,
                f"{where}.identifier",
                "is missing: no-basis requires the providing "
                "organisation's identifier (invariant no-basis-providedBy-identifier)",
                "invariant",
            )
            continue
        system, value = ident.get("system"), ident.get("value")
        if system is not None and system not in (ORGNR_SYSTEM, RESH_SYSTEM):
            _error(
                issues,
                f"{where}.identifier.system",
                f"must be {ORGNR_SYSTEM} (orgnr) or "
                f"{RESH_SYSTEM} (RESH) (invariant no-basis-identifier-system)",
                "invariant",
            )
        elif isinstance(system, str) and isinstance(value, str):
            problem = _id_value_problem(system, value)
            if problem:
                _error(issues, f"{where}.identifier.value", f"({_OID_SYSTEMS[system]}) {problem}")


def _endpoint(r: dict[str, Any], base: str, issues: list[Issue]) -> None:
    if not isinstance(r.get("address"), str):
        _error(issues, f"{base}.address", "is missing: an Endpoint needs its address (1..1)", "required")
    connection = r.get("connectionType")
    if isinstance(connection, dict):
        _check_no_basis_code(connection, f"{base}.connectionType", issues)


def _location(r: dict[str, Any], base: str, issues: list[Issue]) -> None:
    _check_addresses(r, "address", base, issues)


_RULES: Final[dict[str, Callable[[dict[str, Any], str, list[Issue]], None]]] = {
    "Patient": _patient,
    "Practitioner": _person_like("Practitioner"),
    "RelatedPerson": _person_like("RelatedPerson"),
    "Person": _person_like("Person"),
    "Organization": _organization,
    "PractitionerRole": _practitioner_role,
    "HealthcareService": _healthcare_service,
    "Endpoint": _endpoint,
    "Location": _location,
}
