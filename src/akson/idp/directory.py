"""Registry lookups for the login page: a practitioner's workplaces, a citizen's Patient.

Through `akson.registry.lookup` (the FHIR search machinery): a Practitioner by HPR number, its
PractitionerRoles (R4 search parameter `practitioner`), each role's Organization (the unit,
child orgnr) and that unit's `partOf` (the legal entity, parent orgnr; a unit without `partOf`
is its own legal entity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from akson.fhir.naming import DNR_SYSTEM, FNR_SYSTEM, HELSEPERSONELLKATEGORI_SYSTEM, ORGNR_SYSTEM
from akson.idp.identity import Workplace
from akson.registry.lookup import patient_by_nin, practitioner_by_hpr, search_all
from akson.store.repository import ResourceStore, Session


@dataclass(frozen=True)
class PractitionerEntry:
    """A practitioner as the login page shows them."""

    practitioner_id: str
    hpr_number: str
    pid: str | None  # national id; never log or echo it
    name: str
    authorization: str | None
    workplaces: tuple[Workplace, ...]


@dataclass(frozen=True)
class CitizenEntry:
    patient_id: str
    name: str


def _json(stored: Any) -> dict[str, Any]:
    return dict(orjson.loads(stored.content or b"{}"))


def display_name(resource: dict[str, Any]) -> str:
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return ""


def _identifier(resource: dict[str, Any], *systems: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if ident.get("system") in systems and ident.get("value"):
            return str(ident["value"])
    return None


def _authorization(practitioner: dict[str, Any]) -> str | None:
    for qual in practitioner.get("qualification") or []:
        if (qual.get("period") or {}).get("end"):
            continue
        for coding in (qual.get("code") or {}).get("coding") or []:
            if coding.get("system") == HELSEPERSONELLKATEGORI_SYSTEM and coding.get("code"):
                return str(coding["code"])
    return None


async def _organization(s: Session, reference: Any) -> dict[str, Any] | None:
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str) or not ref.startswith("Organization/"):
        return None
    stored = await s.read("Organization", ref.split("/", 1)[1])
    return None if stored is None or stored.deleted else _json(stored)


async def _workplaces(s: Session, practitioner_id: str) -> list[Workplace]:
    found: dict[str, Workplace] = {}
    async for item in search_all(s, "PractitionerRole",
                                 [("practitioner", f"Practitioner/{practitioner_id}")]):
        role = _json(item)
        if role.get("active") is False:
            continue
        unit = await _organization(s, role.get("organization"))
        if unit is None or not _identifier(unit, ORGNR_SYSTEM):
            continue
        parent = await _organization(s, unit.get("partOf")) or unit
        parent_orgnr = _identifier(parent, ORGNR_SYSTEM) or _identifier(unit, ORGNR_SYSTEM)
        place = Workplace(str(parent_orgnr), str(parent.get("name", "")),
                          str(_identifier(unit, ORGNR_SYSTEM)), str(unit.get("name", "")))
        found.setdefault(place.key, place)
    return sorted(found.values(), key=lambda w: (w.parent_name, w.unit_name))


async def find_practitioner(store: ResourceStore, hpr: str) -> PractitionerEntry | None:
    """The practitioner with this HPR number and the places they work, or None."""
    if not (hpr.isascii() and hpr.isdigit()) or len(hpr) > 9:
        return None
    async with store.session(write=False) as s:
        stored = await practitioner_by_hpr(s, hpr)
        if stored is None or stored.deleted:
            return None
        practitioner = _json(stored)
        return PractitionerEntry(stored.res_id, hpr,
                                 _identifier(practitioner, FNR_SYSTEM, DNR_SYSTEM),
                                 display_name(practitioner), _authorization(practitioner),
                                 tuple(await _workplaces(s, stored.res_id)))


async def find_citizen(store: ResourceStore, nin: str) -> CitizenEntry | None:
    """The Patient with this national id (fødselsnummer or D-nummer), or None."""
    if not (nin.isascii() and nin.isdigit()) or len(nin) != 11:
        return None
    async with store.session(write=False) as s:
        stored = await patient_by_nin(s, nin)
        if stored is None or stored.deleted:
            return None
        return CitizenEntry(stored.res_id, display_name(_json(stored)))
