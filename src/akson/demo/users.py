"""The demo users to log in as: GPs, legevakt, home care, health station, a citizen and a parent."""

from __future__ import annotations

from dataclasses import dataclass

from akson.demo.population import Person
from akson.demo.services import Contract, Services

__all__ = ["DemoUser", "Showcase", "demo_users", "render_users"]


@dataclass(slots=True)
class Showcase:
    """The people generated on purpose for the demo users (filled while generating)."""

    citizen: Person | None = None
    citizen_gp: Contract | None = None
    parent: Person | None = None
    children: list[Person] | None = None


@dataclass(frozen=True, slots=True)
class DemoUser:
    """Someone to log in as: a role, a name, the id to log in with and where they belong."""

    role: str
    name: str
    id_kind: str  # "HPR" or "FNR"
    id_value: str
    where: str


def _staff_user(role: str, svc: Services, kind: str, category: str) -> DemoUser | None:
    for person in svc.staff:
        if person.role == kind and person.category == category:
            return DemoUser(role, person.name, "HPR", person.hpr_number,
                            f"{person.unit.name} (orgnr {person.unit.orgnr}), {svc.kommune.name}")
    return None


def demo_users(municipalities: list[Services], showcase: Showcase) -> list[DemoUser]:
    """Three GPs of the first municipality and one of each other, then one of every other role."""
    users: list[DemoUser] = []
    for i, svc in enumerate(municipalities):
        for contract in svc.open_contracts[: 3 if i == 0 else 1]:
            users.append(DemoUser("Fastlege", contract.gp.name, "HPR", contract.gp.hpr_number,
                                  f"{contract.office.name} (orgnr {contract.office.orgnr}), "
                                  f"{svc.kommune.name}; {contract.members} on the list"))
    first = municipalities[0]
    for role, kind, category in (("Legevaktlege", "legevakt", "LE"),
                                 ("Sykepleier hjemmetjenesten", "hjemmetjeneste", "SP"),
                                 ("Helsesykepleier", "helsestasjon", "SP")):
        user = _staff_user(role, first, kind, category)
        if user:
            users.append(user)
    if showcase.citizen:
        gp = showcase.citizen_gp
        users.append(DemoUser("Innbygger", showcase.citizen.name, "FNR", showcase.citizen.nin,
                              f"{first.kommune.name}; fastlege {gp.gp.name if gp else '-'}"))
    if showcase.parent:
        users.append(DemoUser("Forelder", showcase.parent.name, "FNR", showcase.parent.nin,
                              f"{first.kommune.name}; felles foreldreansvar for "
                              f"{len(showcase.children or [])} barn"))
        for child in showcase.children or []:
            users.append(DemoUser(f"  barn, {child.age()} år", child.name, "FNR", child.nin,
                                  first.kommune.name))
    return users


def render_users(users: list[DemoUser]) -> str:
    """A table of the demo users (synthetic people only: Tenor national ids, month + 80)."""
    width = max(len(u.role) for u in users) if users else 0
    name_width = max(len(u.name) for u in users) if users else 0
    lines = ["Demo users (synthetic; national ids are Tenor test numbers):"]
    for u in users:
        lines.append(f"  {u.role:<{width}}  {u.name:<{name_width}}  {u.id_kind} {u.id_value:<11}  "
                     f"{u.where}")
    return "\n".join(lines)
