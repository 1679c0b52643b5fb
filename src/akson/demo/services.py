"""Municipal services: kommune, units, GPs with lists, legevakt, home care and health-station staff."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from akson.demo.population import AS_OF, Household, NinFactory, Person, add_years, make_id
from akson.fhir.identifiers import make_orgnr
from akson.registry import mapping
from akson.registry.municipalities import (
    municipality,
    municipality_id,
    municipality_organization,
)

__all__ = ["Contract", "Item", "Numbers", "Services", "Staff", "Unit", "build_services"]

#: A resource ready for `bulk_create`: (type, id, resource).
Item = tuple[str, str, dict[str, Any]]

#: Inhabitants per GP (Norway: about 1,100 per fastlege).
PER_GP = 1100
#: Volven 7426 (HPR specialities): 1 = Allmennmedisin.
ALLMENNMEDISIN = ("1", "Allmennmedisin")
#: AR services every kommune has (DOMAIN.md §6); Volven 8663 codes. KP02 is from DOMAIN.md §3;
#: the Legetjeneste code is unverified.
PLO_SERVICES = [("Sykepleietjeneste PLO", "KP02", "Sykepleietjeneste"),
                ("Legetjeneste PLO", "KP01", "Legetjeneste")]

_OFFICE_NAMES = ["Sentrum legesenter", "Fjordsiden legekontor", "Torget legesenter",
                 "Nordbyen legekontor", "Sørsiden legesenter", "Brygga legekontor",
                 "Øvre Byen legesenter", "Elvebakken legekontor", "Løkka legesenter",
                 "Åsen legekontor", "Kirkebakken legesenter", "Stasjonen legekontor"]
_ZONES = ["Sentrum", "Nord", "Sør", "Øst", "Vest", "Fjellet", "Sjøsiden", "Dalen"]
_HOMES = ["Solbakken", "Furulund", "Fjordtun", "Lyngtun", "Bjørkely", "Åsheim", "Granheim",
          "Sjøtun"]
_STAFF_F = ["Kari", "Ingrid", "Hilde", "Marit", "Silje", "Camilla", "Tone", "Ragnhild", "Åse",
            "Sigrid", "Ingvild", "Solveig", "Maren", "Tiril", "Guro", "Eli", "Kjersti", "Mette",
            "Synnøve", "Hanne", "Randi", "Torunn", "Vigdis", "Bodil", "Live", "Åshild", "Gunhild"]
_STAFF_M = ["Ole", "Lars", "Øyvind", "Espen", "Kristian", "Bjørn", "Håkon", "Eirik", "Jørgen",
            "Sindre", "Trond", "Anders", "Torbjørn", "Audun", "Ståle", "Geir", "Halvard", "Knut",
            "Steinar", "Vegard", "Arild", "Pål", "Sigurd", "Magne", "Tarjei", "Åsmund", "Even"]
_STAFF_FAMILY = ["Bakke", "Lien", "Foss", "Haug", "Moe", "Aasen", "Sæterdal", "Nygaard", "Ødegaard",
                 "Kristoffersen", "Rønning", "Løvås", "Hellesøy", "Grønvold", "Vestre", "Bjørge",
                 "Myhre", "Tveit", "Sandvik", "Fjærli", "Krogh", "Strøm", "Kvale", "Aune",
                 "Thorsen", "Berge", "Dale", "Hovde", "Næss", "Sunde", "Rønningen", "Vik",
                 "Grimstad", "Skjelbred", "Torp", "Eggen", "Haugland", "Aarseth", "Brøndbo",
                 "Solli", "Langeland", "Engen", "Mæland", "Nærø", "Østli", "Ravndal", "Helland"]


class Numbers:
    """Unique HPR numbers, HER-ids, organisation numbers and FLR contract ids for one demo."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"{seed}:numbers")  # noqa: S311 - synthetic data
        self.hpr: set[str] = set()
        self.orgnr: set[str] = set()
        self.next_her = 8_000_000 + self.rng.randrange(0, 900_000)
        self.next_contract = 100_000

    def hpr_number(self) -> str:
        while True:
            value = str(self.rng.randrange(1_000_000, 10_000_000))
            if value not in self.hpr:
                self.hpr.add(value)
                return value

    def her_id(self) -> str:
        self.next_her += self.rng.randint(1, 40)
        return str(self.next_her)

    def org(self) -> str:
        while True:
            value = make_orgnr(self.rng)
            if value not in self.orgnr:
                self.orgnr.add(value)
                return value

    def contract(self) -> str:
        self.next_contract += 1
        return str(self.next_contract)


@dataclass(slots=True)
class Unit:
    """An organisation: the kommune itself or one of its service units."""

    kind: str
    name: str
    orgnr: str
    id: str
    her_id: str


@dataclass(slots=True)
class Staff:
    """Health personnel (HPR) working at a unit."""

    hpr_number: str
    nin: str
    given: str
    family: str
    category: str  # Volven 9060: LE lege, SP sykepleier
    role: str  # fastlege | legevakt | hjemmetjeneste | helsestasjon | sykehjem
    unit: Unit
    practitioner_id: str
    her_id: str
    authorised: date
    speciality: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"

    def hpr_record(self) -> dict[str, Any]:
        specialities = []
        if self.speciality:
            specialities.append({"code": self.speciality[0], "display": self.speciality[1],
                                 "from": add_years(self.authorised, 6).isoformat(), "to": None})
        return {"hpr_number": self.hpr_number, "nin": self.nin,
                "name": {"given": self.given, "family": self.family},
                "authorizations": [{"category": self.category,
                                    "from": self.authorised.isoformat(), "to": None}],
                "specialities": specialities}


@dataclass(slots=True)
class Contract:
    """A GP contract (fastlegeavtale) and its list."""

    contract_id: str
    gp: Staff
    office: Unit
    municipality: str
    start: date
    end: date | None
    max_patients: int
    role_id: str
    successor: Contract | None = None
    members: int = 0

    def record(self) -> dict[str, Any]:
        return {"kind": "contract", "contract_id": self.contract_id,
                "hpr_number": self.gp.hpr_number, "orgnr": self.office.orgnr,
                "municipality": self.municipality, "from": self.start.isoformat(),
                "to": self.end.isoformat() if self.end else None,
                "max_patients": self.max_patients}


@dataclass
class Services:
    """One municipality's organisation, units and staff, and its register records."""

    seed: int
    number: str
    name: str
    inhabitants: int
    kommune: Unit
    units: dict[str, list[Unit]] = field(default_factory=dict)
    staff: list[Staff] = field(default_factory=list)
    contracts: list[Contract] = field(default_factory=list)

    def staff_in(self, role: str) -> list[Staff]:
        return [s for s in self.staff if s.role == role]

    def unit_for(self, kind: str, household: int) -> Unit:
        units = self.units[kind]
        return units[household % len(units)]

    def staff_at(self, role: str, unit: Unit, pick: int) -> Staff:
        people = [s for s in self.staff if s.role == role and s.unit is unit] or self.staff_in(role)
        return people[pick % len(people)]

    @property
    def open_contracts(self) -> list[Contract]:
        return [c for c in self.contracts if c.end is None]

    # --------------------------------------------------------------------- register records

    def enhet_records(self) -> list[tuple[Unit, dict[str, Any]]]:
        out = [(self.kommune, {"orgnr": self.kommune.orgnr, "name": self.kommune.name,
                               "kind": "kommune", "municipality": self.number,
                               "parent_orgnr": None, "resh": None})]
        for kind, units in self.units.items():
            for unit in units:
                out.append((unit, {"orgnr": unit.orgnr, "name": unit.name, "kind": kind,
                                   "municipality": self.number,
                                   "parent_orgnr": self.kommune.orgnr, "resh": None}))
        return out

    def resources(self) -> list[Item]:
        """Organizations, HER-id services and endpoints, Practitioners and GP contracts."""
        seed = self.seed
        items: list[Item] = []
        services_parent = self.kommune
        for unit, record in self.enhet_records():
            parent = None if unit is self.kommune else self.kommune.id
            org = mapping.enhet_to_organization(record, organization_id=unit.id, parent_id=parent)
            ar = {"her_id": unit.her_id, "kind": "organization", "name": unit.name,
                  "orgnr": unit.orgnr}
            ar_org, endpoint = mapping.ar_to_resources(ar, ids={
                "self": unit.id, "endpoint": make_id(seed, "Endpoint", unit.her_id)})
            layers = [org, ar_org]
            if unit is self.kommune:
                found = municipality(self.number)
                assert found is not None
                layers.insert(0, municipality_organization(found))
            items.append(("Organization", unit.id, _merge_organization(*layers)))
            items.append(("Endpoint", endpoint["id"], endpoint))
        for name, code, display in PLO_SERVICES:
            her = _service_her_id(self, code)
            record = {"her_id": her, "kind": "service", "parent_her_id": services_parent.her_id,
                      "name": name, "service": {"code": code, "display": display}}
            for res in mapping.ar_to_resources(record, ids={
                    "self": make_id(seed, "HealthcareService", her),
                    "endpoint": make_id(seed, "Endpoint", her),
                    "organization": services_parent.id,
                    "organization_orgnr": services_parent.orgnr}):
                items.append((res["resourceType"], res["id"], res))
        for person in self.staff:
            practitioner = mapping.hpr_to_practitioner(person.hpr_record(),
                                                       practitioner_id=person.practitioner_id)
            items.append(("Practitioner", person.practitioner_id, practitioner))
            record = {"her_id": person.her_id, "kind": "person",
                      "parent_her_id": person.unit.her_id, "hpr_number": person.hpr_number,
                      "name": person.name}
            for res in mapping.ar_to_resources(record, ids={
                    "self": make_id(seed, "PractitionerRole", person.her_id),
                    "endpoint": make_id(seed, "Endpoint", person.her_id),
                    "organization": person.unit.id, "practitioner": person.practitioner_id}):
                items.append((res["resourceType"], res["id"], res))
        for contract in self.contracts:
            role = mapping.gp_contract_to_role(contract.record(), role_id=contract.role_id,
                                               practitioner_id=contract.gp.practitioner_id,
                                               organization_id=contract.office.id)
            items.append(("PractitionerRole", contract.role_id, role))
        return items

    # ------------------------------------------------------------------------ GP lists

    def memberships(self, household: Household, rng: random.Random
                    ) -> tuple[list[Item], dict[str, Contract]]:
        """FLR list memberships for a household (EpisodeOfCare) and each member's latest GP.

        A household shares a GP. A list whose GP retired moved to the successor on the day the
        old contract ended; about one person in ten changed GP by choice once.
        """
        current = self._pick_contract(rng)
        items: list[Item] = []
        latest: dict[str, Contract] = {}
        for person in household.members:
            person_items, latest[person.patient_id] = self._person_lists(person, current, rng)
            items += person_items
        return items, latest

    def _pick_contract(self, rng: random.Random) -> Contract:
        open_ = self.open_contracts
        free = [c for c in open_ if c.members < c.max_patients] or open_
        choice = min(rng.sample(free, min(2, len(free))), key=lambda c: c.members)
        retired = [c for c in self.contracts if c.successor is choice]
        if retired and rng.random() < 0.5:
            return retired[0]  # the household joined the retired GP's list, later moved over
        return choice

    def _person_lists(self, person: Person, contract: Contract, rng: random.Random
                      ) -> tuple[list[Item], Contract]:
        start = max(contract.start, person.born, _address_from(person))
        periods: list[tuple[Contract, date, date | None]] = []
        if contract.successor is not None and contract.end is not None:
            if start < contract.end:
                periods.append((contract, start, contract.end))
                start = contract.end + timedelta(days=1)
            contract = contract.successor
            start = max(start, contract.start)
        others = [c for c in self.open_contracts if c is not contract]
        change_span = (person.alive_until - start).days
        if others and change_span > 400 and rng.random() < 0.1:
            before = rng.choice(others)
            switch = start + timedelta(days=rng.randrange(200, change_span - 100))
            periods.append((before, max(start, before.start), switch - timedelta(days=1)))
            start = switch
        periods.append((contract, start, person.death))
        items: list[Item] = []
        for c, begin, end in periods:
            if end is not None and end < begin:
                continue
            c.members += 1 if end is None else 0
            record = {"kind": "membership", "contract_id": c.contract_id, "nin": person.nin,
                      "from": begin.isoformat(), "to": end.isoformat() if end else None}
            episode_id = make_id(self.seed, "EpisodeOfCare",
                                 f"flr/{c.contract_id}/{person.patient_id}/{begin}")
            episode = mapping.gp_membership_to_episode(
                record, episode_id=episode_id, patient_id=person.patient_id,
                practitioner_id=c.gp.practitioner_id, organization_id=c.office.id)
            items.append(("EpisodeOfCare", episode_id, episode))
        return items, contract


def _address_from(person: Person) -> date:
    if person.address and person.address.get("from"):
        return date.fromisoformat(person.address["from"])
    return person.born


def _service_her_id(services: Services, code: str) -> str:
    base = int(services.kommune.her_id)
    return str(base + 1 + [c for _, c, _ in PLO_SERVICES].index(code))


def _merge_organization(*docs: dict[str, Any]) -> dict[str, Any]:
    """One Organization described by several registers, as the register loader merges them:
    later documents win element by element, identifiers and source tags accumulate. The AR
    document adds its HER-id and endpoint, not a name (docs/registers.md, AR)."""
    merged: dict[str, Any] = {}
    identifiers: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    for doc in docs:
        for key, value in doc.items():
            if key == "identifier":
                identifiers += [i for i in value if i not in identifiers]
            elif key == "meta":
                tags += [t for t in value.get("tag", []) if t not in tags]
            elif not (merged and key in ("name", "active") and doc["meta"]["tag"][0]["code"] == "ar"):
                merged[key] = value
    merged["identifier"] = identifiers
    merged["meta"] = {"tag": tags}
    return merged


def build_services(seed: int, number: str, inhabitants: int, numbers: Numbers,
                   nins: NinFactory) -> Services:
    """The units, staff and GP contracts of kommune `number` sized for `inhabitants`."""
    found = municipality(number)
    if found is None:
        raise ValueError(f"{number} is not a municipality number")
    rng = random.Random(f"{seed}:services:{number}")  # noqa: S311 - synthetic data
    kommune = Unit("kommune", f"{found.name} kommune", numbers.org(), municipality_id(number),
                   numbers.her_id())
    numbers.next_her += len(PLO_SERVICES) + 1  # the PLO services take the HER-ids after it
    svc = Services(seed, number, found.name, inhabitants, kommune)
    gps = max(2, round(inhabitants / PER_GP))
    sizes = {
        "legekontor": math.ceil(gps / 5),
        "legevakt": 1,
        "hjemmetjeneste": max(1, round(inhabitants / 10_000)),
        "helsestasjon": max(1, round(inhabitants / 10_000)),
        "sykehjem": max(1, round(inhabitants / 8_000)),
    }
    for kind, count in sizes.items():
        svc.units[kind] = [_unit(svc, kind, i, count, numbers) for i in range(count)]

    def hire(role: str, category: str, unit: Unit, speciality: tuple[str, str] | None = None
             ) -> Staff:
        female = rng.random() < 0.55
        age = rng.randint(30, 64)
        born = add_years(AS_OF, -age) - timedelta(days=rng.randrange(365))
        person = Staff(numbers.hpr_number(), nins.make(rng, born, female),
                       rng.choice(_STAFF_F if female else _STAFF_M), rng.choice(_STAFF_FAMILY),
                       category, role, unit, "", numbers.her_id(),
                       add_years(born, rng.randint(25, 29)), speciality)
        person.practitioner_id = make_id(seed, "Practitioner", person.hpr_number)
        svc.staff.append(person)
        return person

    offices = svc.units["legekontor"]
    for i in range(gps):
        office = offices[i % len(offices)]
        gp = hire("fastlege", "LE", office, ALLMENNMEDISIN)
        start = max(add_years(gp.authorised, rng.randint(3, 8)),
                    AS_OF - timedelta(days=rng.randrange(365, 20 * 365)))
        svc.contracts.append(_contract(svc, gp, office, min(start, AS_OF), None, numbers, rng))
    if gps >= 3:  # a GP retired: the successor took over the list the day after
        successor = svc.contracts[-1]
        successor.start = AS_OF - timedelta(days=rng.randrange(200, 1200))
        old = hire("fastlege", "LE", successor.office, ALLMENNMEDISIN)
        old.authorised = add_years(successor.start, -38)
        retired = _contract(svc, old, successor.office, add_years(successor.start, -22),
                            successor.start - timedelta(days=1), numbers, rng)
        retired.successor = successor
        svc.contracts.append(retired)
    for unit in svc.units["legevakt"]:
        for _ in range(max(1, gps // 6)):
            hire("legevakt", "LE", unit)
        for _ in range(max(1, gps // 8)):
            hire("legevakt", "SP", unit)
    for kind, per in (("hjemmetjeneste", 1500), ("helsestasjon", 3000), ("sykehjem", 3000)):
        units = svc.units[kind]
        for i in range(max(len(units), math.ceil(inhabitants / per))):
            hire(kind, "SP", units[i % len(units)])
    return svc


def _unit(svc: Services, kind: str, i: int, count: int, numbers: Numbers) -> Unit:
    zone = _ZONES[i % len(_ZONES)] + (f" {i // len(_ZONES) + 1}" if i >= len(_ZONES) else "")
    if kind == "legekontor":
        name = (f"{svc.name} legesenter" if i == 0 else
                _OFFICE_NAMES[(i - 1) % len(_OFFICE_NAMES)] + (
                    f" {svc.name}" if i > len(_OFFICE_NAMES) else ""))
    elif kind == "legevakt":
        name = f"{svc.name} legevakt"
    elif kind == "hjemmetjeneste":
        name = f"Hjemmetjenesten {svc.name}" + (f" sone {zone}" if count > 1 else "")
    elif kind == "helsestasjon":
        name = f"{svc.name} helsestasjon" + (f" {zone}" if count > 1 else "")
    else:
        name = f"{_HOMES[i % len(_HOMES)]} sykehjem" + (
            f" {i // len(_HOMES) + 1}" if i >= len(_HOMES) else "")
    return Unit(kind, name, numbers.org(), make_id(svc.seed, "Organization", f"{svc.number}/{kind}/{i}"),
                numbers.her_id())


def _contract(svc: Services, gp: Staff, office: Unit, start: date, end: date | None,
              numbers: Numbers, rng: random.Random) -> Contract:
    contract_id = numbers.contract()
    return Contract(contract_id, gp, office, svc.number, start, end,
                    rng.choice([1000, 1100, 1200, 1300, 1500]),
                    make_id(svc.seed, "PractitionerRole", f"flr/{contract_id}"))
