"""KITH `HCP` (institution, department, person) → FHIR PractitionerRole with logical references.

NHN mapping ("Aktører knyttet til en melding"): every actor becomes a PractitionerRole whose
`practitioner` (HCPerson / HCProf) and `organization` (Inst, Dept overriding the id, names joined)
are logical references (identifier + display), never resources of their own. One person at one
organisation is one resource across reports: the id is
`resource_id(f"kith-role:{hpr or name}:{org id or name}", "role")`.
Identifier systems: HPR → HPR-nr, ENH → orgnr, HER → HER-id, RSH → RESH; a number that fails
its check digits (or a local id type) is kept without system so it never poses as a registry id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from xml.etree.ElementTree import Element

from akson.fhir.identifiers import her_id_is_valid, hpr_is_valid, orgnr_is_valid
from akson.fhir.naming import HER_ID_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM, RESH_SYSTEM
from akson.results.kith_values import attr
from akson.results.model import resource_id

#: KITH id types (Volven 9051/8116) → identifier system and the check its value must pass.
_ID_TYPES: Final = {
    "HPR": (HPR_SYSTEM, hpr_is_valid),
    "ENH": (ORGNR_SYSTEM, orgnr_is_valid),
    "HER": (HER_ID_SYSTEM, her_id_is_valid),
    "RSH": (RESH_SYSTEM, lambda v: v.isdigit()),
}
#: Preference when an element carries several ids (TypeId + AdditionalId).
_PERSON_ORDER: Final = ("HPR", "HER")
_ORG_ORDER: Final = ("ENH", "HER", "RSH")


@dataclass(frozen=True)
class Party:
    """One actor of the message, ready to become a PractitionerRole."""

    person: dict[str, Any] | None  # logical reference to the Practitioner
    org: dict[str, Any] | None  # logical reference to the Organization
    person_key: str | None
    org_key: str | None
    telecom: tuple[str, ...] = ()
    specialty: str | None = None

    @property
    def role_id(self) -> str:
        return resource_id(f"kith-role:{self.person_key or ''}:{self.org_key or ''}", "role")


def ids_of(el: Element) -> list[tuple[str | None, str]]:
    """(type, value) of the element's own Id/TypeId and its AdditionalIds."""
    out: list[tuple[str | None, str]] = []
    own = (el.findtext("Id") or "").strip()
    if own:
        out.append((attr(el.find("TypeId")), own))
    for extra in el.findall("AdditionalId"):
        value = (extra.findtext("Id") or "").strip()
        if value:
            out.append((attr(extra.find("Type")), value))
    return out


def _best(ids: list[tuple[str | None, str]], order: tuple[str, ...],
          warnings: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The preferred identifier (as FHIR Identifier) and a stable key for it."""
    for wanted in order:
        for kind, value in ids:
            if kind != wanted:
                continue
            system, valid = _ID_TYPES[wanted]
            if valid(value):
                return {"system": system, "value": value}, f"{wanted}:{value}"
            warnings.append(f"a {wanted} number of an actor fails its check; kept without system")
            return {"value": value, "type": {"text": wanted}}, f"{wanted}:{value}"
    if ids:
        kind, value = ids[0]
        ident: dict[str, Any] = {"value": value}
        if kind:
            ident["type"] = {"text": kind}
        return ident, f"{kind or 'ID'}:{value}"
    return None, None


def _reference(rtype: str, ident: dict[str, Any] | None, name: str | None) -> dict[str, Any] | None:
    if ident is None and not name:
        return None
    ref: dict[str, Any] = {"type": rtype}
    if ident is not None:
        ref["identifier"] = ident
    if name:
        ref["display"] = name
    return ref


def party(hcp: Element | None, warnings: list[str]) -> Party | None:
    """The actor an `HCP` element names (None when it names nobody)."""
    if hcp is None:
        return None
    inst, prof = hcp.find("Inst"), hcp.find("HCProf")
    person_el = prof if prof is not None else (inst.find("HCPerson") if inst is not None else None)
    person = org = None
    person_key = org_key = None
    if person_el is not None:
        name = (person_el.findtext("Name") or "").strip() or None
        ident, key = _best(ids_of(person_el), _PERSON_ORDER, warnings)
        person = _reference("Practitioner", ident, name)
        person_key = key or (f"name:{name}" if name else None)
    if inst is not None:
        names = [(inst.findtext("Name") or "").strip()]
        ids = ids_of(inst)
        for dept in inst.findall("Dept"):
            names.append((dept.findtext("Name") or "").strip())
            # NHN: the department's id overrides the institution's (a finer unit).
            ids = ids_of(dept) + ids
        name = ", ".join(n for n in names if n) or None
        ident, key = _best(ids, _ORG_ORDER, warnings)
        org = _reference("Organization", ident, name)
        org_key = key or (f"name:{name}" if name else None)
    if person is None and org is None:
        return None
    telecom = tuple(
        v for v in (attr(t) for t in hcp.findall("Address/TeleAddress")) if v
    )
    return Party(person, org, person_key, org_key, telecom, attr(hcp.find("MedSpeciality"), "DN"))


def practitioner_role(actor: Party, relation: Element | None) -> dict[str, Any]:
    """The PractitionerRole of `actor`; `relation` (CS, e.g. REK Rekvirent, ARP Ansvarlig for
    rapport, AUT Dokumentgodkjenner) becomes its `code`."""
    role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": actor.role_id}
    if actor.person:
        role["practitioner"] = actor.person
    if actor.org:
        role["organization"] = actor.org
    code = attr(relation)
    if code:
        # The relation code list's OID is not given in the message: keep the code system-less.
        display = attr(relation, "DN")
        role["code"] = [{"coding": [{"code": code, **({"display": display} if display else {})}],
                         **({"text": display} if display else {})}]
    if actor.specialty:
        role["specialty"] = [{"text": actor.specialty}]
    telecom = [_contact(t) for t in actor.telecom]
    if telecom:
        role["telecom"] = telecom
    return role


def _contact(url: str) -> dict[str, Any]:
    scheme, _, rest = url.partition(":")
    system = {"tel": "phone", "fax": "fax", "mailto": "email"}.get(scheme.lower(), "url")
    return {"system": system, "value": rest if system != "url" and rest else url}
