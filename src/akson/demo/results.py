"""Demo lab results: synthetic HL7 v2 ORU^R01 messages for demo patients, delivered through the
results service's real ingestion (akson.results.ingest), so `/results/fhir` has data to show.

Deterministic for a seed. The analyses are a small table of common NLK codes with plausible
values; everything is synthetic.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from akson.config import Settings
from akson.fhir import jsonio
from akson.fhir import search as fhir_search
from akson.fhir.naming import FNR_SYSTEM
from akson.results_cli import local_ingestor, local_principal

#: (NLK code, name, UCUM unit, reference low, high, typical value)
ANALYSES = (
    ("NOR05863", "fT4", "pmol/L", 12.0, 22.0, 16.0),
    ("NPU01370", "Hemoglobin", "g/dL", 11.7, 15.3, 13.5),
    ("NPU02319", "Hemoglobin A1c", "mmol/mol", 20.0, 42.0, 38.0),
    ("NPU04998", "Kreatinin", "umol/L", 45.0, 90.0, 70.0),
    ("NPU01566", "Kolesterol", "mmol/L", 3.3, 6.9, 5.2),
    ("NPU19748", "CRP", "mg/L", 0.0, 5.0, 3.0),
    ("NPU03429", "Natrium", "mmol/L", 137.0, 145.0, 140.0),
    ("NPU03230", "Kalium", "mmol/L", 3.5, 4.4, 4.0),
)
LABS = (("Fürst Medisinsk Laboratorium", "982157613"), ("Unilab Sykehuset Telemark", "983975267"))


def oru_messages(fnr: str, family: str, given: str, born: str, rng: random.Random,
                 now: datetime, reports: int = 3) -> list[bytes]:
    """`reports` ORU^R01 messages for one person over the last two years."""
    out = []
    for _ in range(reports):
        lab, orgnr = rng.choice(LABS)
        taken = now - timedelta(days=rng.randint(1, 700), minutes=rng.randint(0, 600))
        stamp = taken.strftime("%Y%m%d%H%M%S")
        order = f"{rng.getrandbits(40):010x}"  # never derived from the national id
        lines = [
            f"MSH|^~\\&|LIS|{lab}^{orgnr}^L|AKSON|NHN|{stamp}||ORU^R01^ORU_R01|DEMO-{order}|P"
            "|2.5.1|||||NO|UNICODE UTF-8",
            f"PID|1||{fnr}^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR||{family}^{given}||{born}",
            f"OBR|1|R{order}|L{order}|PAKKE^Blodprøver^L|||{stamp}|||||||||||||||{stamp}|||F",
        ]
        for i, (code, name, unit, low, high, typical) in enumerate(
                rng.sample(ANALYSES, rng.randint(3, 6)), start=1):
            value = round(rng.gauss(typical, (high - low) / 5), 1)
            flag = "H" if value > high else "L" if value < low else "N"
            lines.append(f"OBX|{i}|NM|{code}^{name}^NLK||{value}|{unit}^{unit}^UCUM|{low}-{high}"
                         f"|{flag}|||F|||{stamp}")
        out.append("\r".join(lines).encode("utf-8"))
    return out


def deliver(settings: Settings, seed: int, persons: int = 60) -> int:
    """Deliver demo results for up to `persons` Patients; returns the messages stored."""
    return asyncio.run(_deliver(settings, seed, persons))


async def _deliver(settings: Settings, seed: int, persons: int) -> int:
    rng = random.Random(seed)  # noqa: S311 - synthetic demo data
    now = datetime.now(UTC)
    stored = 0
    async with local_ingestor(settings) as ingestor:
        store = ingestor.gate.store
        async with store.session(write=False) as s:
            page = await s.search(fhir_search.parse(
                "Patient", [("identifier", f"{FNR_SYSTEM}|"), ("_count", str(persons))],
                registry=store.registry))
        lab = local_principal("akson-demo-lab")
        for item in page.items:
            if item.content is None:
                continue
            doc = jsonio.loads(item.content)
            fnr = next(i["value"] for i in doc["identifier"] if i.get("system") == FNR_SYSTEM)
            name = (doc.get("name") or [{}])[0]
            born = str(doc.get("birthDate", "")).replace("-", "")
            for message in oru_messages(fnr, name.get("family", ""),
                                        " ".join(name.get("given", [])), born, rng, now):
                delivery = await ingestor.ingest(lab, message, "hl7v2")
                stored += delivery.state == "stored"
    return stored
