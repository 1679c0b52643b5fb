"""`akson demo`: a realistic, deterministic synthetic Norway (registers, GP lists, clinical history).

Only synthetic persons: national ids follow Skatteetaten's Tenor convention (birth month + 80), so
they never collide with a real fødselsnummer. The register content (FREG, HPR, Enhetsregisteret,
FLR, AR) is generated as register records (docs/registers.md) and turned into FHIR by
`akson.registry.mapping`; the clinical history is built in `akson.demo.history`. The same seed
gives the same resources with the same ids (UUID v5 of the seed), whatever the chunk size.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

from akson.config import Settings
from akson.demo.history import clinical_history
from akson.demo.load import Chunk, LoadStats, in_background, run
from akson.demo.population import AS_OF, Household, NinFactory, Person, households, make_id
from akson.demo.services import Contract, Item, Numbers, Services, build_services
from akson.demo.users import DemoUser, Showcase, demo_users, render_users
from akson.registry import mapping
from akson.registry.municipalities import (
    municipalities,
    municipality,
    municipality_organizations,
)

__all__ = ["AS_OF", "BIG", "Chunk", "Demo", "DemoUser", "LoadStats", "build_demo",
           "choose_municipalities", "render_users", "run_demo", "split_persons", "stream"]

#: Big municipalities; the demo always includes one (Oslo, Bergen, Trondheim, Stavanger, Bærum,
#: Kristiansand, Drammen, Tromsø).
BIG = ["0301", "4601", "5001", "1103", "3201", "4204", "3301", "5501"]
#: Share of the persons living in the big municipality when there are several.
BIG_SHARE = 0.4


@dataclass
class Demo:
    """A planned demo: the municipalities with their services, and a person stream."""

    seed: int
    persons: int
    municipalities: list[Services]
    inhabitants: list[int]
    nins: NinFactory
    showcase: Showcase = field(default_factory=Showcase)

    def register_items(self) -> list[Item]:
        """All 357 kommune Organizations (the chosen ones from Enhetsregisteret and AR), the
        units, HER-id services and endpoints, practitioners and GP contracts."""
        chosen = {svc.number: svc for svc in self.municipalities}
        items: list[Item] = [("Organization", org["id"], org)
                             for org in municipality_organizations()
                             if org["identifier"][0]["value"] not in chosen]
        for svc in self.municipalities:
            items += svc.resources()
        return items

    def chunks(self, size: int = 2000) -> Iterator[Chunk]:
        """The persons with their registers and history, about `size` persons per chunk."""
        chunk = Chunk()
        for svc, count in zip(self.municipalities, self.inhabitants, strict=True):
            showcase = svc is self.municipalities[0]
            for household in households(self.seed, _kommune(svc.number), count, self.nins,
                                        showcase):
                chunk.items += self._household(svc, household)
                chunk.persons += len(household.members)
                if chunk.persons >= size:
                    yield chunk
                    chunk = Chunk()
        if chunk.persons:
            yield chunk

    def _household(self, svc: Services, household: Household) -> list[Item]:
        rng = random.Random(f"{self.seed}:lists:{svc.number}:{household.index}")  # noqa: S311
        lists, gps = svc.memberships(household, rng)
        items: list[Item] = []
        ids = {p.nin: p.patient_id for p in household.members}
        for person in household.members:
            record = person.freg_record()
            items.append(("Patient", person.patient_id,
                          mapping.person_to_patient(record, patient_id=person.patient_id)))
            related = {nin: make_id(self.seed, "RelatedPerson", f"{person.patient_id}/{pid}")
                       for nin, pid in ids.items()}
            for rel in mapping.person_relations(record, patient_id=person.patient_id,
                                                related_ids=related):
                items.append(("RelatedPerson", rel["id"], rel))
        items += lists
        for person in household.members:
            gp = gps[person.patient_id]
            items += clinical_history(self.seed, person, svc, gp, household.index)
            self._remember(person, gp)
        return items

    def _remember(self, person: Person, gp: Contract) -> None:
        if "showcase_citizen" in person.tags:
            self.showcase.citizen, self.showcase.citizen_gp = person, gp
        elif "showcase_parent" in person.tags:
            self.showcase.parent = person
        elif "showcase_child" in person.tags:
            self.showcase.children = [*(self.showcase.children or []), person]

    def users(self) -> list[DemoUser]:
        """The demo users (complete once the person stream has been consumed)."""
        return demo_users(self.municipalities, self.showcase)


def _kommune(number: str) -> dict[str, str]:
    found = municipality(number)
    if found is None:
        raise ValueError(f"{number} is not a municipality number")
    return {"number": found.number, "name": found.name, "county_number": found.county_number}


def choose_municipalities(count: int, seed: int) -> list[str]:
    """`count` kommune numbers, deterministic by seed: one big municipality first."""
    rng = random.Random(f"{seed}:municipalities")  # noqa: S311 - synthetic data
    all_numbers = [m.number for m in municipalities()]
    count = max(1, min(count, len(all_numbers)))
    big = rng.choice(BIG)
    others = rng.sample([n for n in all_numbers if n != big], count - 1)
    return [big, *others]


def split_persons(persons: int, count: int, seed: int) -> list[int]:
    """Persons per municipality: BIG_SHARE in the big one, the rest by random weights."""
    if count == 1:
        return [persons]
    rng = random.Random(f"{seed}:split")  # noqa: S311 - synthetic data
    big = max(round(persons * BIG_SHARE), 1)
    weights = [rng.uniform(0.3, 1.0) for _ in range(count - 1)]
    rest = persons - big
    shares = [int(rest * w / sum(weights)) for w in weights]
    shares[0] += rest - sum(shares)
    return [big, *shares]


def build_demo(municipalities: int = 2, persons: int = 200, seed: int = 1) -> Demo:
    """Plan a demo: choose municipalities, size their services and staff."""
    if persons < 10 * municipalities:
        raise ValueError("at least 10 persons per municipality are needed")
    numbers = choose_municipalities(municipalities, seed)
    inhabitants = split_persons(persons, len(numbers), seed)
    ids = Numbers(seed)
    nins = NinFactory()
    services = [build_services(seed, number, count, ids, nins)
                for number, count in zip(numbers, inhabitants, strict=True)]
    return Demo(seed, persons, services, inhabitants, nins)


def stream(municipalities: int, persons: int, seed: int, chunk: int = 2000) -> Iterator[Chunk]:
    """The whole demo as chunks: the registers, the persons, then the demo users."""
    demo = build_demo(municipalities, persons, seed)
    yield Chunk(items=demo.register_items())
    yield from demo.chunks(chunk)
    yield Chunk(users=demo.users())


#: From this many persons on, the demo is generated in a child process while loading.
BACKGROUND_FROM = 5000


def run_demo(settings: Settings, municipalities: int = 2, persons: int = 200, seed: int = 1,
             if_empty: bool = False, progress: bool = True, chunk: int = 2000,
             background: bool | None = None) -> tuple[LoadStats, list[DemoUser]] | None:
    """Generate and load a demo into the database of `settings`; None if `if_empty` and the
    database already holds resources. Returns the load figures and the demo users.

    `background` (default: from BACKGROUND_FROM persons) generates in a child process, which
    overlaps generation with writing on a multi-core machine.
    """
    if persons < 10 * municipalities:
        raise ValueError("at least 10 persons per municipality are needed")
    factory = partial(stream, municipalities, persons, seed, chunk)
    if background is None:
        background = persons >= BACKGROUND_FROM

    def chunks() -> Iterable[Chunk]:
        return in_background(factory) if background else factory()

    stats = run(settings, chunks, persons, if_empty=if_empty, progress=progress)
    if stats is None:
        return None
    return stats, stats.users
