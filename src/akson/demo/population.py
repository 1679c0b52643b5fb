"""Synthetic people: households with Norwegian names, Tenor national ids, addresses and families."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

from akson.fhir.identifiers import make_fnr

__all__ = [
    "AS_OF",
    "Household",
    "NinFactory",
    "Person",
    "add_years",
    "households",
    "make_id",
]

#: The demo's "today": every date is relative to it, so a seed gives the same data on any day.
AS_OF = date(2026, 11, 1)

GIVEN_F_OLD = ["Kari", "Ingrid", "Anne", "Bjørg", "Solveig", "Åse", "Ragnhild", "Gunvor", "Liv",
               "Astrid", "Randi", "Turid", "Grete", "Sigrid", "Målfrid", "Oddbjørg", "Torild"]
GIVEN_F_MID = ["Hilde", "Marit", "Heidi", "Kristin", "Silje", "Camilla", "Tone", "Lene", "Ingvild",
               "Siri", "Marte", "Stine", "Åshild", "Gro", "Trine", "Ragnhild", "Solfrid"]
GIVEN_F_NEW = ["Nora", "Emma", "Sofie", "Ella", "Maja", "Frøya", "Ingrid", "Sara", "Ida", "Olivia",
               "Leah", "Astrid", "Selma", "Tiril", "Åsa", "Sunniva", "Mia", "Vilde", "Thea"]
GIVEN_M_OLD = ["Ole", "Bjørn", "Knut", "Arne", "Tor", "Odd", "Kjell", "Svein", "Per", "Jan",
               "Håkon", "Ivar", "Øystein", "Gunnar", "Rolf", "Tormod", "Åge"]
GIVEN_M_MID = ["Lars", "Øyvind", "Espen", "Thomas", "Kristian", "Stian", "Morten", "Geir", "Eirik",
               "Trond", "Anders", "Jørgen", "Martin", "Sindre", "Rune", "Håvard", "Bård"]
GIVEN_M_NEW = ["Jakob", "Emil", "Noah", "Ask", "Håkon", "Sverre", "Filip", "Lucas", "Oskar",
               "Aksel", "Magnus", "Isak", "Ludvig", "Tobias", "Johannes", "Henrik", "Bjørn"]
FAMILY = ["Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
          "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen",
          "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Henriksen", "Lund",
          "Halvorsen", "Sørensen", "Jakobsen", "Moen", "Gundersen", "Iversen", "Strand", "Solberg",
          "Svendsen", "Eide", "Knutsen", "Martinsen", "Bakken", "Søreng", "Ødegård", "Kristoffersen",
          "Mathisen", "Lie", "Amundsen", "Nguyen", "Rasmussen", "Ahmed", "Berntsen", "Lunde",
          "Bråthen", "Solheim", "Holm", "Østby", "Sæther", "Aas", "Myklebust", "Løken", "Bjørnstad",
          "Grønlund", "Fjeld", "Vik", "Nygård", "Ruud", "Tangen", "Kvamme", "Hovland", "Brekke"]
STREETS = ["Storgata", "Kirkeveien", "Skolegata", "Fjordveien", "Bjørkeveien", "Åsveien",
           "Granlia", "Solbakken", "Kongens gate", "Fjellveien", "Sjøgata", "Møllevegen",
           "Løvåsveien", "Tømmerholtvegen", "Prestegårdsvegen", "Bekkeliveien", "Hagebyen",
           "Ringveien", "Stasjonsveien", "Nordre gate", "Søndre gate", "Øvre Åsgate", "Kløverveien",
           "Blåbærstien", "Rypevegen", "Furulia", "Lyngveien", "Tyttebærvegen", "Elvegata"]

#: First digits of postal codes by county number (rough, like the real distribution).
_POSTAL_BASE = {"03": 150, "11": 4000, "15": 6000, "18": 8000, "31": 1600, "32": 1300, "33": 3000,
                "34": 2200, "39": 3100, "40": 3600, "42": 4500, "46": 5000, "50": 7000,
                "55": 9000, "56": 9500}

#: Household kinds and their weights (about 2.2 persons per household, like Norway).
_KINDS = [("single_young", 14), ("single_mid", 10), ("single_old", 10), ("couple_young", 10),
          ("couple_mid", 12), ("couple_old", 8), ("family", 28), ("single_parent", 8)]


@lru_cache(maxsize=64)
def _namespace(seed: int) -> bytes:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://akson.no/demo/{seed}").bytes


def make_id(seed: int, kind: str, key: str) -> str:
    """A deterministic resource id: UUID v5 of the seed, a kind and a key (never uuid4).

    Equal to `str(uuid.uuid5(namespace, f"{kind}/{key}"))`, computed without the UUID object
    (the demo makes millions).
    """
    digest = bytearray(hashlib.sha1(_namespace(seed) + f"{kind}/{key}".encode(),  # noqa: S324
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def add_years(day: date, years: int) -> date:
    """`day` moved by whole years (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _born_at_age(rng: random.Random, age: int) -> date:
    """A birth date giving exactly `age` whole years at AS_OF."""
    latest = add_years(AS_OF, -age)
    return latest - timedelta(days=rng.randrange(0, 364))


class NinFactory:
    """Unique synthetic fødselsnumre (Tenor: month + 80) with the individnummer of the century."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, rng: random.Random, born: date, female: bool) -> str:
        if born.year >= 2000:
            low, high = 500, 1000
        elif born.year >= 1940 and rng.random() < 0.2:
            low, high = 900, 1000
        else:
            low, high = 0, 500
        while True:
            individ = rng.randrange(low, high)
            if individ % 2 != (0 if female else 1):  # third digit: even = female
                continue
            number = make_fnr(born, individ, synthetic="tenor")
            if number is not None and number not in self.used:
                self.used.add(number)
                return number


@dataclass(slots=True)
class Person:
    """One synthetic person and what the person register (FREG) knows about them."""

    nin: str
    patient_id: str
    born: date
    female: bool
    given: str
    middle: str | None
    family: str
    municipality: str
    address: dict | None
    protection: str = "unclassified"
    death: date | None = None
    relations: list[tuple[str, str]] = field(default_factory=list)
    responsibility: list[tuple[str, str]] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)

    def age(self, at: date = AS_OF) -> int:
        return at.year - self.born.year - ((at.month, at.day) < (self.born.month, self.born.day))

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.given, self.middle, self.family) if p)

    @property
    def alive_until(self) -> date:
        """The last day the person's history may cover."""
        return self.death or AS_OF

    def freg_record(self) -> dict:
        """The person as a `freg` register record (docs/registers.md)."""
        address = None
        if self.address is not None and self.protection != "strictly_confidential":
            address = dict(self.address)
        return {
            "nin": self.nin,
            "status": "doed" if self.death else "bosatt",
            "birth_date": self.born.isoformat(),
            "gender": "female" if self.female else "male",
            "name": {"given": self.given, "middle": self.middle, "family": self.family},
            "address": address,
            "address_protection": self.protection,
            "death_date": self.death.isoformat() if self.death else None,
            "family": [{"nin": nin, "relation": rel} for nin, rel in self.relations],
            "parental_responsibility": [{"child_nin": nin, "responsibility": code}
                                        for nin, code in self.responsibility],
            "guardianship": [],
        }


@dataclass(slots=True)
class Household:
    """People sharing an address: adults first, then children (youngest last)."""

    index: int
    members: list[Person]


def _given(rng: random.Random, female: bool, born: date) -> str:
    if born.year < 1960:
        names = GIVEN_F_OLD if female else GIVEN_M_OLD
    elif born.year < 1990:
        names = GIVEN_F_MID if female else GIVEN_M_MID
    else:
        names = GIVEN_F_NEW if female else GIVEN_M_NEW
    return rng.choice(names)


class _Builder:
    """Makes the households of one municipality, in a fixed order (deterministic per seed)."""

    def __init__(self, seed: int, kommune: dict, nins: NinFactory) -> None:
        self.seed = seed
        self.kommune = kommune
        self.nins = nins
        self.rng = random.Random(f"{seed}:population:{kommune['number']}")  # noqa: S311
        base = _POSTAL_BASE.get(kommune["county_number"], 2000)
        self.postal_base = base + random.Random(kommune["number"]).randrange(0, 300)  # noqa: S311

    def person(self, born: date, female: bool, family: str | None = None) -> Person:
        rng = self.rng
        nin = self.nins.make(rng, born, female)
        middle = rng.choice(FAMILY) if rng.random() < 0.12 else None
        return Person(nin=nin, patient_id=make_id(self.seed, "Patient", nin), born=born,
                      female=female, given=_given(rng, female, born), middle=middle,
                      family=family or rng.choice(FAMILY), municipality=self.kommune["number"],
                      address=None)

    def adult(self, low: int, high: int, female: bool | None = None,
              family: str | None = None) -> Person:
        female = self.rng.random() < 0.5 if female is None else female
        return self.person(_born_at_age(self.rng, self.rng.randint(low, high)), female, family)

    def address(self, members: list[Person]) -> None:
        rng = self.rng
        number = f"{rng.randrange(1, 160)}{rng.choice(['', '', '', 'A', 'B'])}"
        youngest_adult = max([p.born for p in members if p.age() >= 18] or [members[0].born])
        earliest = max(add_years(youngest_adult, 18), date(1990, 1, 1))
        span = max((AS_OF - earliest).days, 1)
        moved_in = earliest + timedelta(days=rng.randrange(span))
        street = rng.choice(STREETS)
        postal = f"{self.postal_base + rng.randrange(0, 40):04d}"
        for p in members:
            p.address = {"lines": [f"{street} {number}"], "postal_code": postal,
                         "city": self.kommune["name"], "municipality": self.kommune["number"],
                         "from": max(moved_in, p.born).isoformat()}

    def couple(self, low: int, high: int) -> list[Person]:
        rng = self.rng
        first = self.adult(low, high)
        same_sex = rng.random() < 0.03
        age = max(18, min(first.age() + rng.randint(-4, 4), 105))
        second_female = first.female if same_sex else not first.female
        family = first.family if rng.random() < 0.4 else None
        second = self.person(_born_at_age(rng, age), second_female, family)
        if rng.random() < 0.6:
            first.relations.append((second.nin, "ektefelle"))
            second.relations.append((first.nin, "ektefelle"))
        return [first, second]

    def children(self, parents: list[Person], ages: list[int], responsibility: str) -> list[Person]:
        rng = self.rng
        family = parents[0].family if rng.random() < 0.7 else parents[-1].family
        kids = []
        for age in ages:
            kid = self.person(_born_at_age(rng, age), rng.random() < 0.5, family)
            kids.append(kid)
            mothers = [p for p in parents if p.female]
            for parent in parents:
                relation = "far" if not parent.female else (
                    "mor" if parent is mothers[0] else "medmor")
                kid.relations.append((parent.nin, relation))
                parent.relations.append((kid.nin, "barn"))
                parent.responsibility.append((kid.nin, responsibility))
        return kids

    def family(self, size: int | None = None, single: bool = False) -> list[Person]:
        rng = self.rng
        n_kids = size if size is not None else rng.choice([1, 2, 2, 2, 3, 3, 4])
        oldest = rng.randint(0, 19)
        ages = [oldest]
        for _ in range(n_kids - 1):
            nxt = ages[-1] - rng.randint(1, 5)
            if nxt < 0:
                break
            ages.append(nxt)
        parent_age = oldest + rng.randint(24, 38)
        if single:
            female = rng.random() < 0.8
            parents = [self.adult(parent_age, parent_age, female)]
            code = "mor" if female else "far"
        else:
            parents = self.couple(parent_age, parent_age)
            code = "felles"
        return parents + self.children(parents, ages, code)

    def kind(self, kind: str) -> list[Person]:
        if kind == "single_young":
            return [self.adult(19, 39)]
        if kind == "single_mid":
            return [self.adult(40, 66)]
        if kind == "single_old":
            return [self.adult(67, 99, self.rng.random() < 0.65)]
        if kind == "couple_young":
            return self.couple(22, 45)
        if kind == "couple_mid":
            return self.couple(45, 70)
        if kind == "couple_old":
            return self.couple(67, 93)
        return self.family(single=kind == "single_parent")

    def showcase_family(self) -> list[Person]:
        """Two parents and children aged exactly 17, 13 and 11 (the demo's parent user)."""
        rng = self.rng
        mother = self.person(_born_at_age(rng, 46), True)
        father = self.person(_born_at_age(rng, 47), False, mother.family)
        mother.relations.append((father.nin, "ektefelle"))
        father.relations.append((mother.nin, "ektefelle"))
        parents = [mother, father]
        mother.tags.add("showcase_parent")
        kids = self.children(parents, [17, 13, 11], "felles")
        for kid in kids:
            kid.tags.add("showcase_child")
        return parents + kids

    def showcase_citizen(self) -> list[Person]:
        """A citizen with a chronic history (diabetes, hypertension) to log in as."""
        person = self.adult(58, 58, True)
        person.tags.add("showcase_citizen")
        return [person]

    def household(self, index: int, remaining: int, showcase: bool) -> Household:
        rng = self.rng
        if showcase and index == 0:
            members = self.showcase_family()
        elif showcase and index == 1:
            members = self.showcase_citizen()
        else:
            kind = rng.choices([k for k, _ in _KINDS], [w for _, w in _KINDS])[0]
            members = self.kind(kind)
        if len(members) > remaining:
            members = [self.adult(19, 90) for _ in range(remaining)]
        self.address(members)
        self._protect(index, members)
        self._deaths(members)
        return Household(index, members)

    def _protect(self, index: int, members: list[Person]) -> None:
        draw = self.rng.random()
        if index == 2 or draw < 0.002:
            level = "strictly_confidential"
        elif index == 4 or draw < 0.006:
            level = "confidential"
        elif draw < 0.008:
            level = "client_address"
        else:
            return
        for p in members:
            p.protection = level
            if level == "strictly_confidential":
                p.address = None

    def _deaths(self, members: list[Person]) -> None:
        for p in members:
            if p.tags or p.age() < 70:
                continue
            if self.rng.random() < 0.012 * (p.age() - 65) / 5:
                p.death = AS_OF - timedelta(days=self.rng.randrange(10, 1000))


def households(seed: int, kommune: dict, persons: int, nins: NinFactory,
               showcase: bool = False) -> Iterator[Household]:
    """The households of one municipality, `persons` people in all, in a deterministic order.

    With `showcase`, household 0 is the demo parent's family (children aged 17, 13 and 11) and
    household 1 the demo citizen. Household 2 is always strictly confidential (no address) and
    household 4 confidential, so every municipality has both.
    """
    builder = _Builder(seed, kommune, nins)
    made = 0
    index = 0
    while made < persons:
        household = builder.household(index, persons - made, showcase)
        made += len(household.members)
        index += 1
        yield household
