"""The Norwegian municipalities (kommuner, 2024 division) and their FHIR Organizations.

The list is `data/kommuner.json` (sources in `data/KOMMUNER-SOURCE.md`): 357 entries keyed by
the four-digit kommunenummer, which is the key — names are not unique (Herøy, Våler).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from akson.fhir.naming import KOMMUNENR_SYSTEM

__all__ = [
    "Municipality",
    "municipalities",
    "municipality",
    "municipality_id",
    "municipality_name",
    "municipality_organization",
    "municipality_organizations",
]

@dataclass(frozen=True, slots=True)
class Municipality:
    """One kommune: number (kommunenummer), Norwegian name, county and Sámi/Kven names."""

    number: str
    name: str
    county_number: str
    county: str
    other_names: tuple[str, ...] = ()


@cache
def _by_number() -> dict[str, Municipality]:
    raw = json.loads(resources.files("akson.registry.data").joinpath("kommuner.json").read_text(
        encoding="utf-8"))
    return {
        m["number"]: Municipality(m["number"], m["name"], m["county_number"], m["county"],
                                  tuple(m.get("other_names") or ()))
        for m in raw
    }


def municipalities() -> list[Municipality]:
    """All municipalities, sorted by number."""
    return list(_by_number().values())


def municipality(number: str) -> Municipality | None:
    """The municipality with this kommunenummer, or None if there is none (in the 2024 list)."""
    return _by_number().get(number)


def municipality_name(number: str) -> str | None:
    """The Norwegian name of kommune `number`, or None if it is not a municipality number."""
    found = _by_number().get(number)
    return found.name if found else None


def municipality_id(number: str) -> str:
    """The deterministic Organization id of kommune `number`: `kommune-<number>`."""
    return f"kommune-{number}"


def municipality_organization(m: Municipality) -> dict[str, Any]:
    """Organization for one kommune: id `kommune-<number>`, kommunenummer identifier, name
    "<name> kommune", Sámi/Kven names as `alias`, type govt. Tagged source `kommuner`.

    When Enhetsregisteret delivers the same kommune (kind `kommune`), the register loader
    updates this resource (found by its kommunenummer) instead of creating a second one.
    """
    # mapping imports this module for municipality names; import it here, not at the top.
    from akson.registry import mapping

    org: dict[str, Any] = {
        "resourceType": "Organization",
        "id": municipality_id(m.number),
        "meta": {"tag": [mapping.source_tag("kommuner")]},
        "identifier": [{"system": KOMMUNENR_SYSTEM, "value": m.number}],
        "active": True,
        "type": [mapping.organization_type("kommune")],
        "name": f"{m.name} kommune",
    }
    if m.other_names:
        org["alias"] = list(m.other_names)
    return org


def municipality_organizations() -> list[dict[str, Any]]:
    """One Organization per kommune (357), in kommunenummer order; see
    `municipality_organization`."""
    return [municipality_organization(m) for m in municipalities()]
