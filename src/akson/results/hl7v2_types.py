"""HL7 v2 data types to FHIR data types (CWE/CE, EI, CX, XCN, NM, SN), per the HL7 v2-to-FHIR IG.

Spec: https://build.fhir.org/ig/HL7/v2-to-fhir/datatype_maps.html (CWE → CodeableConcept,
EI → Identifier, XCN → Practitioner, SN → Quantity/Range/Ratio). Components arrive as parsed by
`hl7v2_syntax` (a list of components, each a list of subcomponents). Pure.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from akson.fhir.identifiers import PersonIdKind, classify_person_id, hpr_is_valid
from akson.fhir.jsonio import ExactDecimal
from akson.fhir.naming import DNR_SYSTEM, FHN_SYSTEM, FNR_SYSTEM, HPR_SYSTEM
from akson.results.model import NCRP_SYSTEM, NLK_SYSTEM, NORPAT_SYSTEM, UCUM_SYSTEM

Comps = list[list[str]]

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

#: CWE-3 coding system names (HL7 table 0396) → FHIR code systems.
CODE_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "NLK": NLK_SYSTEM,
    "NPU": NLK_SYSTEM,  # NPU codes are carried in NLK (Volven 7280)
    "UCUM": UCUM_SYSTEM,
    "NCRP": NCRP_SYSTEM,  # Norwegian radiology procedures (Volven 7270)
    "NORPAT": NORPAT_SYSTEM,  # Norwegian pathology codes (Volven 7010)
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "HL70078": "http://terminology.hl7.org/CodeSystem/v2-0078",
}
_LOCAL = frozenset({"L", "LOCAL", "99ZZZ", ""})
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_HL7_TABLE = re.compile(r"HL7(\d{4})")


def sub(comps: Comps, c: int, s: int = 1) -> str:
    """Component c, subcomponent s ('' when absent)."""
    if c > len(comps) or s > len(comps[c - 1]):
        return ""
    return comps[c - 1][s - 1].strip()


def text(comps: Comps, c: int) -> str:
    """Component c with its subcomponents joined back (for a component that is plain text)."""
    if c > len(comps):
        return ""
    return "&".join(s for s in comps[c - 1]).strip("& ")


def system_uri(name: str, oid: str = "") -> str | None:
    """The FHIR system of a v2 coding system name; a local/unknown name gets `urn:oid:` from the
    OID (CWE-14/17) when one is given, else no system (a bare name is not a URI)."""
    key = name.strip().upper()
    if key in CODE_SYSTEMS:
        return CODE_SYSTEMS[key]
    if _OID.fullmatch(name.strip()):
        return f"urn:oid:{name.strip()}"
    if name.startswith(("http://", "https://", "urn:")):
        return name.strip()
    table = _HL7_TABLE.fullmatch(key)
    if table:
        return f"http://terminology.hl7.org/CodeSystem/v2-{table.group(1)}"
    if oid and _OID.fullmatch(oid):
        return f"urn:oid:{oid}"
    return None


def _coding(code: str, display: str, system: str, version: str, oid: str) -> dict[str, Any]:
    coding: dict[str, Any] = {}
    uri = system_uri(system, oid)
    if uri:
        coding["system"] = uri
    if version and uri:
        coding["version"] = version
    if code:
        coding["code"] = code
    if display:
        coding["display"] = display
    return coding


def codeable(comps: Comps) -> dict[str, Any] | None:
    """CWE/CE/CNE/CF → CodeableConcept: the primary (1-3, version 7, OID 14), alternate (4-6,
    version 8, OID 17) and v2.7 second alternate (10-12, version 13, OID 20) codings;
    text = CWE-9, else the display when there is no code."""
    codings = []
    for c, d, s, v, o in ((1, 2, 3, 7, 14), (4, 5, 6, 8, 17), (10, 11, 12, 13, 20)):
        if sub(comps, c):
            codings.append(_coding(sub(comps, c), text(comps, d), sub(comps, s),
                                   sub(comps, v), sub(comps, o)))
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    original = text(comps, 9) or (text(comps, 2) if not codings else "")
    if original:
        out["text"] = original
    return out or None


def number(value: str) -> int | float | None:
    """An NM value as a JSON number that keeps its digits ('5.80' stays 5.80); None if not one."""
    value = value.strip()
    if not value or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", value):
        return None
    try:
        dec = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        return None
    as_text = str(dec)
    if "." not in as_text and "E" not in as_text:
        # Beyond 64 bits no store or JSON encoder keeps it: not a number a lab reports.
        return int(dec) if -(2**63) <= dec < 2**63 else None
    return ExactDecimal(as_text)


def quantity(value: int | float, units: Comps) -> dict[str, Any]:
    """A Quantity with OBX-6 units: a UCUM code when CWE-3 says UCUM, else the unit text only
    (FHIR qty-3: a unit code needs a system)."""
    q: dict[str, Any] = {"value": value}
    code, label, system = sub(units, 1), text(units, 2), sub(units, 3)
    if code or label:
        q["unit"] = label or code
    if code and system.upper() == "UCUM":
        q["system"] = UCUM_SYSTEM
        q["code"] = code
    return q


_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}


def structured_numeric(comps: Comps, units: Comps) -> tuple[str, Any] | None:
    """SN → (FHIR value[x] name, value): `<^5` → valueQuantity with comparator, `^1^.^3` → 1.3
    (the "." separator joins a decimal), `^1^-^3` → valueRange, `^1^:^3` or `^1^/^3` →
    valueRatio, anything else (`^2^+` "2 or more") → valueString as written."""
    comparator, n1, sep, n2 = sub(comps, 1), sub(comps, 2), sub(comps, 3), sub(comps, 4)
    v1, v2 = number(n1), number(n2)
    if sep == "." and n2.isdigit():
        v1, sep, n2 = number(f"{n1}.{n2}"), "", ""
    if not sep and not n2 and v1 is not None and comparator in ("", "=", *_COMPARATORS):
        q = quantity(v1, units)
        if comparator in _COMPARATORS:
            q["comparator"] = _COMPARATORS[comparator]
        return "valueQuantity", q
    if sep == "-" and v1 is not None and v2 is not None and comparator in ("", "-", "="):
        return "valueRange", {"low": quantity(v1, units), "high": quantity(v2, units)}
    if sep in (":", "/") and v1 is not None and v2 is not None:
        return "valueRatio", {"numerator": {"value": v1}, "denominator": {"value": v2}}
    written = "".join((comparator, n1, sep, n2)).strip()
    return ("valueString", written) if written else None


def ei_identifier(comps: Comps, type_code: str | None = None) -> dict[str, Any] | None:
    """EI (entity identifier: 1 id, 2 namespace, 3 universal id, 4 its type) → Identifier; the
    system is `urn:oid:` when the universal id is an OID."""
    value = sub(comps, 1)
    if not value:
        return None
    ident: dict[str, Any] = {}
    if type_code:
        ident["type"] = {"coding": [{"system": V2_0203, "code": type_code}]}
    universal = sub(comps, 3)
    if universal and _OID.fullmatch(universal):
        ident["system"] = f"urn:oid:{universal}"
    ident["value"] = value
    namespace = sub(comps, 2)
    if namespace:
        ident["assigner"] = {"display": namespace}
    return ident


def hd_oid(comps: Comps, c: int) -> tuple[str, str]:
    """An HD held in component c as subcomponents: (namespace id, universal id)."""
    return sub(comps, c, 1), sub(comps, c, 2)


_FNR_OID = FNR_SYSTEM.removeprefix("urn:oid:")
_DNR_OID = DNR_SYSTEM.removeprefix("urn:oid:")
_HPR_OID = HPR_SYSTEM.removeprefix("urn:oid:")
_PERSON_KINDS = {PersonIdKind.FNR: FNR_SYSTEM, PersonIdKind.DNR: DNR_SYSTEM,
                 PersonIdKind.FHN: FHN_SYSTEM}


def person_id(comps: Comps) -> tuple[str, str] | None:
    """A CX naming a Norwegian national id → (system, value), else None.

    Recognised by the assigning authority (CX-4 namespace or OID: `FNR`/`2.16.578.1.12.4.1.4.1`,
    `DNR`/`...4.2`), the identifier type (CX-5 `FNR`, `NNNOR`, `DNR`), or else by the digits: an
    11-digit number that `classify_person_id` reads as FNR, D-number or felles hjelpenummer."""
    value = sub(comps, 1).replace(" ", "")
    if not value:
        return None
    namespace, universal = hd_oid(comps, 4)
    id_type = sub(comps, 5).upper()
    person = classify_person_id(value)
    if universal == _DNR_OID or namespace.upper() == "DNR" or id_type == "DNR":
        return DNR_SYSTEM, value
    if universal == _FNR_OID or namespace.upper() in ("FNR", "NNNOR") or id_type in (
        "FNR", "NNNOR", "NNNO"
    ):
        if person is not None and person.kind is PersonIdKind.DNR:
            return DNR_SYSTEM, value
        return FNR_SYSTEM, value
    if person is not None and person.kind in _PERSON_KINDS:
        return _PERSON_KINDS[person.kind], value
    return None


def xcn_person(comps: Comps) -> tuple[dict[str, Any] | None, str]:
    """XCN → (practitioner identifier, display name). The identifier is HPR-nr when the assigning
    authority (XCN-9) or identifier type (XCN-13) says HPR and the number is a valid HPR-nr;
    `urn:oid:` when XCN-9 gives another OID; bare otherwise."""
    value = sub(comps, 1)
    family = sub(comps, 2, 1)
    given = " ".join(p for p in (sub(comps, 3), sub(comps, 4)) if p)
    prefix = sub(comps, 6)
    display = " ".join(p for p in (prefix, given, family) if p)
    ident: dict[str, Any] | None = None
    if value:
        namespace, universal = hd_oid(comps, 9)
        says_hpr = (universal == _HPR_OID or namespace.upper() == "HPR"
                    or sub(comps, 13).upper() == "HPR")
        if says_hpr and hpr_is_valid(value):
            ident = {"system": HPR_SYSTEM, "value": value}
        elif universal and _OID.fullmatch(universal) and universal != _HPR_OID:
            ident = {"system": f"urn:oid:{universal}", "value": value}
        else:
            ident = {"value": value}
    return ident, display
