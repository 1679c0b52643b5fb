"""Lookups in the registers as stored: by natural key, and who was whose GP at a given date.

All through the FHIR search machinery (`akson.fhir.search.parse` + `Session.search`) with the
R4 parameters `identifier`, `patient`, `care-manager`, `date` and `type` — no SQL here.

GP list membership semantics (docs/registers.md, `flr`): an EpisodeOfCare of type
`fastlegeliste` covers the days `period.start` through `period.end`, both inclusive (FHIR
Period). When two memberships of one patient both cover a day — the day of a GP change, when an
exporter writes the old `to` equal to the new `from` — the one that started later wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import date
from typing import Any

import orjson

from akson.fhir.naming import HER_ID_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM
from akson.fhir.search import parse
from akson.registry.mapping import EPISODE_TYPE_SYSTEM, person_id_system
from akson.store.repository import Session, Stored

__all__ = [
    "HER_ID_TYPES",
    "by_her_id",
    "by_identifier",
    "gp_at",
    "gp_episode_at",
    "gp_list_at",
    "organization_by_orgnr",
    "patient_by_nin",
    "practitioner_by_hpr",
    "search_all",
]

#: The resource types a HER-id can name, in the order they are searched.
HER_ID_TYPES = ("Organization", "HealthcareService", "PractitionerRole")
_GP_LIST = f"{EPISODE_TYPE_SYSTEM}|fastlegeliste"
_PAGE = 500


async def search_all(s: Session, res_type: str,
                     params: Iterable[tuple[str, str]]) -> AsyncIterator[Stored]:
    """Every current match of a search, following the keyset cursor page by page."""
    base = list(params)
    cursor: int | None = None
    while True:
        query_params = [*base, ("_count", str(_PAGE))]
        if cursor is not None:
            query_params.append(("_cursor", str(cursor)))
        page = await s.search(parse(res_type, query_params, registry=s.registry,
                                    max_count=_PAGE))
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def _first(s: Session, res_type: str, params: list[tuple[str, str]]) -> Stored | None:
    page = await s.search(parse(res_type, [*params, ("_count", "1")], registry=s.registry))
    return page.items[0] if page.items else None


def _token(system: str, value: str) -> str:
    # Register values are digits / [A-Za-z0-9._:-]; escape the search syntax characters anyway.
    for ch in "\\,|$":
        value = value.replace(ch, "\\" + ch)
    return f"{system}|{value}"


async def by_identifier(s: Session, res_type: str, system: str, value: str,
                        *, extra: Iterable[tuple[str, str]] = ()) -> Stored | None:
    """The `res_type` resource with identifier `system|value` (and `extra` search params)."""
    return await _first(s, res_type, [("identifier", _token(system, value)), *extra])


async def patient_by_nin(s: Session, nin: str) -> Stored | None:
    """The Patient with this fødselsnummer / D-nummer / felles hjelpenummer, or None (also for
    a value that is no such number)."""
    try:
        system = person_id_system(nin)
    except ValueError:
        return None
    return await by_identifier(s, "Patient", system, nin)


async def practitioner_by_hpr(s: Session, hpr: str) -> Stored | None:
    """The Practitioner with this HPR-nummer, or None."""
    return await by_identifier(s, "Practitioner", HPR_SYSTEM, hpr)


async def organization_by_orgnr(s: Session, orgnr: str) -> Stored | None:
    """The Organization with this organisasjonsnummer, or None."""
    return await by_identifier(s, "Organization", ORGNR_SYSTEM, orgnr)


async def by_her_id(s: Session, her_id: str) -> Stored | None:
    """The communication party (Organization, HealthcareService or PractitionerRole) with this
    HER-id, or None. The party's Endpoint is in its `endpoint`."""
    for res_type in HER_ID_TYPES:
        found = await by_identifier(s, res_type, HER_ID_SYSTEM, her_id)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------- point in time


def _covers(episode: dict[str, Any], when: date) -> bool:
    period = episode.get("period") or {}
    day = when.isoformat()
    start, end = period.get("start"), period.get("end")
    return (start is None or start[:10] <= day) and (end is None or day <= end[:10])


def _start(episode: dict[str, Any]) -> str:
    return str((episode.get("period") or {}).get("start") or "")


def _covering(when: date) -> list[tuple[str, str]]:
    # R4 date search on a Period: le = starts on/before the day, ge = ends on/after it (or is
    # open), so both together select the periods that overlap the day.
    day = when.isoformat()
    return [("type", _GP_LIST), ("date", f"le{day}"), ("date", f"ge{day}")]


async def gp_episode_at(s: Session, patient_id: str, when: date) -> Stored | None:
    """The patient's GP list membership (EpisodeOfCare) on day `when`, or None."""
    best: tuple[str, Stored] | None = None
    async for item in search_all(s, "EpisodeOfCare",
                                 [("patient", f"Patient/{patient_id}"), *_covering(when)]):
        episode = orjson.loads(item.content or b"{}")
        if _covers(episode, when) and (best is None or _start(episode) > best[0]):
            best = (_start(episode), item)
    return best[1] if best else None


def _reference_id(ref: object, res_type: str) -> str | None:
    if isinstance(ref, dict):
        raw = ref.get("reference")
        if isinstance(raw, str) and raw.startswith(f"{res_type}/"):
            return raw.split("/", 1)[1]
    return None


async def gp_at(s: Session, patient_id: str, when: date) -> Stored | None:
    """The Practitioner who was the patient's GP (fastlege) on day `when`, or None."""
    found = await gp_episode_at(s, patient_id, when)
    if found is None:
        return None
    practitioner_id = _reference_id(orjson.loads(found.content or b"{}").get("careManager"),
                                    "Practitioner")
    if practitioner_id is None:
        return None
    stored = await s.read("Practitioner", practitioner_id)
    return stored if stored is not None and not stored.deleted else None


async def gp_list_at(s: Session, practitioner_id: str, when: date) -> list[str]:
    """Ids of the Patients on the practitioner's GP list on day `when`, sorted.

    A patient whose membership with this GP ends on `when` is on the list only if no other
    membership of theirs starts that day (see the module docstring).
    """
    out: set[str] = set()
    async for item in search_all(s, "EpisodeOfCare", [
        ("care-manager", f"Practitioner/{practitioner_id}"), *_covering(when)
    ]):
        episode = orjson.loads(item.content or b"{}")
        patient_id = _reference_id(episode.get("patient"), "Patient")
        if patient_id is None or not _covers(episode, when):
            continue
        end = (episode.get("period") or {}).get("end")
        if end is not None and end[:10] == when.isoformat():
            current = await gp_episode_at(s, patient_id, when)
            if current is None or current.res_id != item.res_id:
                continue
        out.add(patient_id)
    return sorted(out)
