"""`akson demo`: a small, deterministic synthetic Norwegian population for demos and `make run`.

Only synthetic persons: national ids follow Skatteetaten's Tenor convention (birth month + 80),
so they can never collide with a real person's fødselsnummer. The full population generator
(registries, GP lists, child-health programme) is the Grunndata issue's; this is its seed.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date, timedelta

from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest
from akson.config import Settings
from akson.fhir.identifiers import make_fnr, make_orgnr
from akson.fhir.searchparams import SearchParamRegistry
from akson.importer import Summary, call, count_bundle
from akson.store.database import connect
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
KOMMUNE = "https://register.geonorge.no/sosi-kodelister/kommunenummer"
ICPC2 = "http://hl7.org/fhir/sid/icpc-2"

GIVEN_F = ["Ingrid", "Kari", "Anne", "Marit", "Nora", "Emma", "Sofie", "Ida", "Sara", "Astrid"]
GIVEN_M = ["Ole", "Lars", "Jan", "Per", "Kjetil", "Jakob", "Emil", "Noah", "Magnus", "Håkon"]
FAMILY = ["Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
          "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen",
          "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Henriksen", "Lund",
          "Halvorsen", "Sørensen", "Jakobsen", "Moen", "Gundersen", "Iversen", "Strand",
          "Solberg", "Svendsen", "Eide", "Knutsen", "Martinsen", "Bakken", "Søreng", "Ødegård"]
STREETS = ["Storgata", "Kirkeveien", "Skolegata", "Fjordveien", "Bjørkeveien", "Åsveien"]
KOMMUNER = [("0301", "Oslo"), ("4601", "Bergen"), ("5001", "Trondheim"), ("1103", "Stavanger"),
            ("5501", "Tromsø")]
PROBLEMS = [("T90", "Diabetes type 2"), ("K86", "Hypertensjon ukomplisert"), ("R96", "Astma"),
            ("P76", "Depresjon"), ("L03", "Korsryggsymptomer")]

def synthetic_fnr(rng: random.Random, born: date, female: bool) -> str:
    """A Tenor-style synthetic fødselsnummer (month + 80) with valid check digits.

    The third individnummer digit is even for women and odd for men, as in numbers issued
    before 2032.
    """
    low, high = (500, 1000) if born.year >= 2000 else (0, 500)
    while True:
        individ = rng.randrange(low, high)
        if individ % 2 == female:
            continue
        number = make_fnr(born, individ, synthetic="tenor")
        if number is not None:
            return number


def population(persons: int, seed: int) -> dict:
    """A transaction Bundle: one municipality per kommune, a GP each, persons with history."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data: determinism, not secrecy
    entries: list[dict] = []

    def add(resource: dict) -> str:
        full_url = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"
        entries.append({"fullUrl": full_url, "resource": resource,
                        "request": {"method": "POST", "url": resource["resourceType"]}})
        return full_url

    gps = []
    for i, (number, name) in enumerate(KOMMUNER):
        org = add({"resourceType": "Organization", "name": f"{name} kommune",
                   "identifier": [{"system": ORGNR, "value": make_orgnr(rng)}],
                   "address": [{"city": name, "district": number}]})
        female = rng.random() < 0.5
        gp = add({"resourceType": "Practitioner",
                  "identifier": [{"system": HPR, "value": str(9100000 + i * 17)}],
                  "name": [{"family": rng.choice(FAMILY),
                            "given": [rng.choice(GIVEN_F if female else GIVEN_M)]}],
                  "qualification": [{"code": {"coding": [{
                      "system": "urn:oid:2.16.578.1.12.4.1.1.9060", "code": "LE",
                      "display": "Lege"}]}}]})
        gps.append((gp, org, number, name))
    for _ in range(persons):
        female = rng.random() < 0.5
        born = date(1935, 1, 1) + timedelta(days=rng.randrange(0, 32000))
        gp, org, number, city = rng.choice(gps)
        patient = add({
            "resourceType": "Patient",
            "identifier": [{"system": FNR, "value": synthetic_fnr(rng, born, female)}],
            "name": [{"use": "official", "family": rng.choice(FAMILY),
                      "given": [rng.choice(GIVEN_F if female else GIVEN_M)]}],
            "gender": "female" if female else "male",
            "birthDate": born.isoformat(),
            "address": [{"use": "home", "line": [f"{rng.choice(STREETS)} {rng.randrange(1, 120)}"],
                         "city": city, "district": number,
                         "postalCode": f"{rng.randrange(0, 9999):04d}"}],
            "generalPractitioner": [{"reference": gp}],
            "managingOrganization": {"reference": org},
        })
        for _ in range(rng.randrange(0, 3)):
            code, text = rng.choice(PROBLEMS)
            add({"resourceType": "Condition", "subject": {"reference": patient},
                 "code": {"coding": [{"system": ICPC2, "code": code, "display": text}]},
                 "clinicalStatus": {"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                     "code": "active"}]}})
        for _ in range(rng.randrange(1, 4)):
            when = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 700))
            add({"resourceType": "Observation", "status": "final",
                 "category": [{"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                     "code": "vital-signs"}]}],
                 "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                      "display": "Heart rate"}]},
                 "subject": {"reference": patient}, "effectiveDateTime": when.isoformat(),
                 "valueQuantity": {"value": rng.randrange(50, 110), "unit": "/min",
                                   "system": "http://unitsofmeasure.org", "code": "/min"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def _load(settings: Settings, persons: int, seed: int, if_empty: bool) -> Summary | None:
    registry = SearchParamRegistry.default()
    db = connect(settings.database_url, pool_size=2)
    await db.open()
    try:
        ctx = FhirContext(ResourceStore(db, registry), registry, settings)
        if if_empty:
            async with ctx.store.session(write=False) as s:
                if await s.tx.fetchone("SELECT 1 FROM resource LIMIT 1"):
                    return None
        summary = Summary()
        resp = await call(ctx, FhirRequest("POST", [], parsed_body=population(persons, seed),
                                            base_url="urn:akson:demo"))
        count_bundle(resp, "demo", summary)
        return summary
    finally:
        await db.close()


def run_demo(settings: Settings, persons: int, seed: int, if_empty: bool) -> Summary | None:
    upgrade(settings.database_url)
    return asyncio.run(_load(settings, persons, seed, if_empty))
