"""Synthetic lab results for `results_bench.py`: Patients, DiagnosticReports and Observations.

Everything is a pure function of (seed, person index), so a load can resume where it stopped and
the lookup phase can name patients without asking the database. Observations and
DiagnosticReports are turned into PostgreSQL COPY lines by a fast path that fills per-analysis
templates (`obs_ready`, `report_ready`); `verify` checks it byte for byte against the store's
own `akson.store.bulk.prepare` + `copy_ready`, and the loader runs it on a sample of every block,
so the fast path cannot drift from what the server would have written.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from akson.fhir import dates
from akson.fhir.identifiers import make_fnr
from akson.fhir.indexing import canonical_quantity
from akson.fhir.pairs import BUCKET
from akson.fhir.searchparams import SearchParamRegistry
from akson.results.model import (
    CATEGORY_SYSTEM,
    NLK_SYSTEM,
    ORIGIN_RESULTS,
    ORIGIN_SYSTEM,
    UCUM_SYSTEM,
    resource_id,
)
from akson.store.bulk import CopyReady, bytea_field, copy_ready, prepare
from names import FEMALE_GIVEN, MALE_GIVEN, SURNAMES

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
OSLO = ZoneInfo("Europe/Oslo")
TAG = {"system": ORIGIN_SYSTEM, "code": ORIGIN_RESULTS}
OBS_CATEGORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                             "code": "laboratory", "display": "Laboratory"}]}]
REPORT_CATEGORY = [{"coding": [{"system": CATEGORY_SYSTEM, "code": "CLIN",
                                "display": "Klinisk kjemi"}]}]
REPORT_CODE = {"coding": [{"system": "http://loinc.org", "code": "11502-2",
                           "display": "Laboratory report"}], "text": "Laboratoriesvar"}
REPORT_ID_SYSTEM = "https://bench.akson.no/lab/report-id"  # made up: the bench lab's own ids
LAB = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.2", "value": "8000001"},
       "display": "Benchlab, avdeling for medisinsk biokjemi"}
SENDER = "bench-lab"
PER_REPORT = 8  # Observations per DiagnosticReport
OLD_SHARE = 0.35  # share of reports older than two years (the rest fall within them)
YEARS = 6


@dataclass(frozen=True)
class Analysis:
    """One lab analysis: NLK code (made up but plausibly shaped), UCUM unit, reference range,
    and the mean/sd/decimals values are drawn with."""

    code: str
    display: str
    unit: str
    low: float
    high: float
    mean: float
    sd: float
    decimals: int


ANALYSES: tuple[Analysis, ...] = (
    Analysis("NPU02319", "Hemoglobin", "g/dL", 11.7, 15.3, 13.8, 1.3, 1),
    Analysis("NPU19748", "CRP", "mg/L", 0, 5, 3, 4, 0),
    Analysis("NPU18016", "Kreatinin", "umol/L", 45, 90, 75, 15, 0),
    Analysis("NPU02593", "Leukocytter", "10*9/L", 3.5, 10, 6.5, 1.8, 1),
    Analysis("NPU03568", "Trombocytter", "10*9/L", 145, 390, 250, 60, 0),
    Analysis("NPU01944", "MCV", "fL", 82, 98, 90, 4, 0),
    Analysis("NPU03429", "Natrium", "mmol/L", 137, 145, 140, 2, 0),
    Analysis("NPU03230", "Kalium", "mmol/L", 3.6, 4.6, 4.1, 0.3, 1),
    Analysis("NPU04998", "Glukose", "mmol/L", 4.0, 6.0, 5.4, 1.0, 1),
    Analysis("NPU27300", "HbA1c", "mmol/mol", 20, 42, 38, 8, 0),
    Analysis("NPU01566", "Kolesterol", "mmol/L", 3.3, 6.9, 5.2, 1.0, 1),
    Analysis("NPU01567", "HDL-kolesterol", "mmol/L", 1.0, 2.7, 1.5, 0.4, 1),
    Analysis("NPU01568", "LDL-kolesterol", "mmol/L", 1.2, 4.3, 3.2, 0.9, 1),
    Analysis("NPU04094", "Triglyserider", "mmol/L", 0.45, 2.6, 1.4, 0.6, 1),
    Analysis("NPU19651", "ALAT", "U/L", 10, 45, 28, 12, 0),
    Analysis("NPU19654", "ASAT", "U/L", 15, 35, 25, 8, 0),
    Analysis("NPU19657", "Gamma-GT", "U/L", 10, 80, 35, 20, 0),
    Analysis("NPU27783", "ALP", "U/L", 35, 105, 70, 18, 0),
    Analysis("NPU01370", "Bilirubin", "umol/L", 5, 25, 11, 5, 0),
    Analysis("NPU03577", "TSH", "m[IU]/L", 0.5, 3.6, 1.9, 0.8, 2),
    Analysis("NOR05863", "Fritt T4", "pmol/L", 12, 22, 16, 2.5, 1),
    Analysis("NPU19763", "Ferritin", "ug/L", 15, 200, 90, 60, 0),
    Analysis("NPU03688", "Albumin", "g/L", 36, 48, 42, 3, 0),
    Analysis("NPU01459", "Kalsium", "mmol/L", 2.15, 2.51, 2.35, 0.1, 2),
    Analysis("NPU03096", "Urat", "umol/L", 155, 400, 300, 70, 0),
    Analysis("NPU01685", "Urea", "mmol/L", 3.2, 8.1, 5.5, 1.5, 1),
    Analysis("NPU19673", "Kreatinkinase", "U/L", 40, 280, 120, 60, 0),
    Analysis("NPU17343", "PSA", "ug/L", 0, 4, 1.5, 1.2, 2),
    Analysis("NPU02636", "Kobalamin (B12)", "pmol/L", 150, 650, 350, 100, 0),
    Analysis("NOR05797", "25-OH-vitamin D", "nmol/L", 50, 150, 65, 20, 0),
)
#: In every report (a clinician's usual trend: Hb, CRP, kreatinin), so a trend query on one of
#: them always finds the patient's series.
CORE = ANALYSES[:3]
OTHERS = ANALYSES[3:]


def value_of(a: Analysis, rng: random.Random) -> float:
    v = max(0.0, rng.gauss(a.mean, a.sd))
    return round(v, a.decimals) if a.decimals else float(round(v))


# ------------------------------------------------------------------ people and layout


def patient_id(seed: int, person: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"akson-results-bench/{seed}/patient/{person}"))


_BORN_FROM = dt.date(1940, 1, 1)
_BORN_DAYS = (dt.date(2005, 12, 31) - _BORN_FROM).days


def fnr_of(person: int) -> tuple[str, dt.date]:
    """A synthetic (Tenor, month + 80) FNR unique per person index, and the birth date.

    The date walks the 1940–2005 range with a stride coprime to its length; each pass over it
    takes its own block of 20 individnummer, so two persons never share a number.
    """
    born = _BORN_FROM + dt.timedelta(days=(person * 7919) % _BORN_DAYS)
    block = person // _BORN_DAYS
    base = (500 if born.year >= 2000 else 0) + block * 20
    for individ in range(base, base + 20):
        fnr = make_fnr(born, individ, synthetic="tenor")
        if fnr is not None:
            return fnr, born
    raise ValueError("no valid FNR in the block")  # (2/11)^20: never


def obs_count(person: int, persons: int, observations: int) -> int:
    """Observations of one person: the mean ± a deterministic spread; pairs of persons cancel
    out, so the counts add up to exactly `observations`."""
    base, extra = divmod(observations, persons)
    spread = (person // 2 * 2654435761) % (base // 2 + 1) if base else 0
    n = base + (spread if person % 2 == 0 else -spread)
    if person % 2 == 0 and person == persons - 1:
        n = base  # odd number of persons: the unpaired last one gets the mean
    return n + (1 if person < extra else 0)


def resources_of(n_obs: int) -> int:
    """Patient + reports + observations of a person with `n_obs` Observations."""
    return 1 + n_obs + math.ceil(n_obs / PER_REPORT)


def patient_resource(person: int, rng: random.Random) -> dict[str, Any]:
    fnr, born = fnr_of(person)
    female = int(fnr[8]) % 2 == 0
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": FNR_SYSTEM, "value": fnr}],
        "name": [{"use": "official", "family": rng.choice(SURNAMES),
                  "given": [rng.choice(FEMALE_GIVEN if female else MALE_GIVEN)]}],
        "gender": "female" if female else "male",
        "birthDate": born.isoformat(),
    }


def report_time(rng: random.Random, anchor: dt.datetime) -> dt.datetime:
    """A sampling time: OLD_SHARE of them 2–6 years before `anchor`, the rest within 2 years."""
    old = rng.random() < OLD_SHARE
    days = rng.uniform(2 * 365 + 1, YEARS * 365) if old else rng.uniform(1, 2 * 365 - 1)
    day = (anchor - dt.timedelta(days=days)).date()
    return dt.datetime(day.year, day.month, day.day, rng.randint(7, 15), rng.randrange(60),
                       tzinfo=OSLO)


# ------------------------------------------------------------------ fast COPY lines


_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _t(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, float):
        return repr(v)
    return str(v).translate(_ESC)


def _tail(*values: Any) -> str:
    """A COPY line after its pk (`\\t`-joined, newline-terminated)."""
    return "".join("\t" + _t(v) for v in values) + "\n"


@dataclass(frozen=True)
class _Template:
    analysis: Analysis
    concept: dict[str, Any]
    ranges: list[dict[str, Any]]
    tokens: tuple[str, ...]  # the constant sp_token tails (tag, status, category, code)
    texts: tuple[str, ...]  # constant sp_token_text tails


def _template(a: Analysis, registry: SearchParamRegistry) -> _Template:
    concept = {"coding": [{"system": NLK_SYSTEM, "code": a.code, "display": a.display}],
               "text": a.display}
    q = {"unit": a.unit, "system": UCUM_SYSTEM, "code": a.unit}
    ranges = [{"low": {"value": float(a.low), **q}, "high": {"value": float(a.high), **q},
               "text": f"{a.low}–{a.high}"}]
    probe = prepare("Observation", "x", {"resourceType": "Observation", "meta": {"tag": [TAG]},
                                         "status": "final", "category": OBS_CATEGORY,
                                         "code": concept}, registry, 0)
    tokens = tuple(_tail("Observation", *row) for row in probe.rows["sp_token"])
    texts = tuple(_tail("Observation", *row) for row in probe.rows["sp_token_text"])
    return _Template(a, concept, ranges, tokens, texts)


class Generator:
    """Makes one person's resources, as `CopyReady` items (fast path) or plain dicts."""

    def __init__(self, seed: int, persons: int, observations: int, anchor: dt.datetime) -> None:
        self.seed, self.persons, self.observations, self.anchor = seed, persons, observations, anchor
        self.registry = SearchParamRegistry.default().copy()
        self.templates = {a.code: _template(a, self.registry) for a in ANALYSES}
        self.report_static = self._report_static()

    def _report_static(self) -> dict[str, tuple[str, ...]]:
        """The index rows every report has (tag, status, category, code, lab), per table."""
        probe = prepare("DiagnosticReport", "x", {"resourceType": "DiagnosticReport",
                                                  "meta": {"tag": [TAG]}, "status": "final",
                                                  "category": REPORT_CATEGORY, "code": REPORT_CODE,
                                                  "performer": [LAB]},
                        self.registry, 0)
        return {table: tuple(_tail("DiagnosticReport", *row) for row in probe.rows[table])
                for table in ("sp_token", "sp_token_text")}

    def report_key(self, person: int, k: int) -> str:
        return f"{SENDER}|{self.seed}-{person}-{k}"

    def person(self, person: int) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        """(Patient, [(id, resource)…]) of one person; reports and their observations, each
        report before its observations."""
        rng = random.Random(self.seed * 1_000_003 + person)
        pat = patient_resource(person, rng)
        pid = patient_id(self.seed, person)
        out: list[tuple[str, dict[str, Any]]] = []
        n = obs_count(person, self.persons, self.observations)
        for k in range(math.ceil(n / PER_REPORT)):
            key = self.report_key(person, k)
            size = min(PER_REPORT, n - k * PER_REPORT)
            picks = [*CORE, *rng.sample(OTHERS, PER_REPORT - len(CORE))][:size]
            taken = report_time(rng, self.anchor)
            issued = taken + dt.timedelta(hours=rng.randint(2, 30))
            when, iss = taken.isoformat(), issued.isoformat()
            obs_ids = [resource_id(key, f"obs/{i}") for i in range(size)]
            report = {
                "resourceType": "DiagnosticReport",
                "meta": {"tag": [TAG]},
                "identifier": [{"system": REPORT_ID_SYSTEM, "value": f"{self.seed}-{person}-{k}"}],
                "status": "final",
                "category": REPORT_CATEGORY,
                "code": REPORT_CODE,
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": when,
                "issued": iss,
                "performer": [LAB],
                "result": [{"reference": f"Observation/{o}"} for o in obs_ids],
            }
            out.append((resource_id(key, "report"), report))
            for oid, a in zip(obs_ids, picks, strict=True):
                tpl = self.templates[a.code]
                out.append((oid, {
                    "resourceType": "Observation",
                    "meta": {"tag": [TAG]},
                    "status": "final",
                    "category": OBS_CATEGORY,
                    "code": tpl.concept,
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": when,
                    "issued": iss,
                    "valueQuantity": {"value": value_of(a, rng), "unit": a.unit,
                                      "system": UCUM_SYSTEM, "code": a.unit},
                    "referenceRange": tpl.ranges,
                }))
        return pat, out

    # -- COPY lines

    def ready(self, res_id: str, resource: dict[str, Any], pk: int, now: int) -> CopyReady:
        """`copy_ready(prepare(…), pk)` for our Observations and DiagnosticReports, faster."""
        rtype = resource["resourceType"]
        doc: dict[str, Any] = {"resourceType": rtype, "id": res_id,
                               "meta": {**resource["meta"], "versionId": "1",
                                        "lastUpdated": dates.to_instant(now)}}
        for key, value in resource.items():
            if key not in doc:
                doc[key] = value
        content = orjson.dumps(doc)
        pid = resource["subject"]["reference"][8:]
        p = str(pk)
        blocks = {
            "resource": f"{p}\t{rtype}\t{res_id}\t1\t{now}\tf\t{pid}\t".encode()
            + bytea_field(content) + b"\n",
            "resource_version":
                f"{p}\t{rtype}\t{res_id}\t1\t{now}\tf\tPOST\t\\N\n".encode(),
        }
        low = _us(resource["effectiveDateTime"])
        refs = [("patient", "Patient", pid)]
        if rtype == "Observation":
            tpl = self.templates[resource["code"]["coding"][0]["code"]]
            a = tpl.analysis
            value = float(resource["valueQuantity"]["value"])
            quantities = [(value, UCUM_SYSTEM, a.unit)]
            canonical = canonical_quantity(resource["valueQuantity"]["value"], UCUM_SYSTEM, a.unit)
            if canonical is not None:
                quantities.append(canonical)
            qty = comp = ""
            for v, qsys, qcode in quantities:
                # escaping not needed: our codes and units hold no tab, newline or backslash
                q = f"\t{v!r}\t{qsys}\t{qcode}\n"
                qty += f"{p}\t{rtype}\tcombo-value-quantity{q}{p}\t{rtype}\tvalue-quantity{q}"
                c = f"\t{NLK_SYSTEM}\t{a.code}\t{qsys}\t{qcode}\t{v!r}\t\\N\t\\N\t\\N\n"
                comp += (f"{p}\t{rtype}\tcode-value-quantity{c}"
                         f"{p}\t{rtype}\tcombo-code-value-quantity{c}")
            # paired rows (akson.fhir.pairs): the code with its date's bucket, and with the patient
            comp += (f"{p}\t{rtype}\tcode+date\t{NLK_SYSTEM}\t{a.code}\t\\N\t\\N\t"
                     f"{float(low // BUCKET)!r}\t{low}\t{low + 999_999}\t\\N\n"
                     f"{p}\t{rtype}\tcode+patient\t{NLK_SYSTEM}\t{a.code}\tPatient\t{pid}\t"
                     "\\N\t\\N\t\\N\t\\N\n")
            blocks["sp_token"] = "".join(p + t for t in tpl.tokens).encode()
            blocks["sp_token_text"] = "".join(p + t for t in tpl.texts).encode()
            blocks["sp_quantity"] = qty.encode()
            blocks["sp_composite"] = comp.encode()
            blocks["sp_date"] = f"{p}\t{rtype}\tdate\t{low}\t{low + 999_999}\n".encode()
        else:
            ident = resource["identifier"][0]
            issued = _us(resource["issued"])
            static = self.report_static
            blocks["sp_token"] = ("".join(p + t for t in static["sp_token"])
                                  + p + _tail(rtype, "identifier", ident["system"],
                                              ident["value"])).encode()
            blocks["sp_token_text"] = "".join(p + t for t in static["sp_token_text"]).encode()
            blocks["sp_date"] = (f"{p}\t{rtype}\tdate\t{low}\t{low + 999_999}\n"
                                 f"{p}\t{rtype}\tissued\t{issued}\t{issued + 999_999}\n").encode()
            refs += [("result", "Observation", r["reference"][12:]) for r in resource["result"]]
        refs.append(("subject", "Patient", pid))
        blocks["sp_reference"] = "".join(f"{p}\t{rtype}\t{param}\t{t}\t{i}\t\\N\n"
                                         for param, t, i in refs).encode()
        return CopyReady(rtype, res_id, content, blocks, pid)

    def exact(self, res_id: str, resource: dict[str, Any], pk: int, now: int) -> CopyReady:
        """The store's own path, for `verify` and for Patients."""
        return copy_ready(prepare(resource["resourceType"], res_id, resource, self.registry, now),
                          pk)


def _us(when: str) -> int:
    return int(dt.datetime.fromisoformat(when).timestamp()) * 1_000_000


def verify(gen: Generator, res_id: str, resource: dict[str, Any], pk: int, now: int) -> None:
    """Raise if the fast path's COPY lines differ from the store's own (order within a table
    aside: it does not matter to the database)."""
    fast, exact = gen.ready(res_id, resource, pk, now), gen.exact(res_id, resource, pk, now)
    if fast.content != exact.content:
        raise AssertionError(f"content differs for {resource['resourceType']}:\n"
                             f"{fast.content!r}\n{exact.content!r}")
    tables = set(fast.blocks) | set(exact.blocks)
    for table in sorted(tables):
        a = sorted(fast.blocks.get(table, b"").splitlines())
        b = sorted(exact.blocks.get(table, b"").splitlines())
        if a != b:
            raise AssertionError(f"{table} differs for {resource['resourceType']}:\n"
                                 f"fast  {a}\nstore {b}")


# ------------------------------------------------------------------ HL7 v2 ORU^R01


def oru_r01(gen: Generator, person: int, n: int, when: dt.datetime) -> bytes:
    """An ORU^R01 v2.5.1 message: one order with PER_REPORT OBX of NLK analyses, for the
    person's FNR (PID-3 with the FNR OID, identifier type FNR). `n` makes the ids unique."""
    rng = random.Random(gen.seed * 7_000_003 + n)
    fnr, born = fnr_of(person)
    female = int(fnr[8]) % 2 == 0
    ts = when.strftime("%Y%m%d%H%M%S")
    taken = (when - dt.timedelta(hours=3)).strftime("%Y%m%d%H%M")
    order = f"BENCH{gen.seed}-{n}"
    segs = [
        f"MSH|^~\\&|BENCHLAB|Benchlab^8000001^L|AKSON|Akson|{ts}+0100||ORU^R01^ORU_R01|"
        f"MSG{order}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"PID|1||{fnr}^^^&{FNR_SYSTEM[8:]}&ISO^FNR||{rng.choice(SURNAMES)}^"
        f"{rng.choice(FEMALE_GIVEN if female else MALE_GIVEN)}||{born:%Y%m%d}|"
        f"{'F' if female else 'M'}",
        f"ORC|RE|{order}^BENCHGP|{order}^BENCHLAB||CM",
        f"OBR|1|{order}^BENCHGP|{order}^BENCHLAB|11502-2^Laboratoriesvar^LN|||{taken}|||||||"
        f"{taken}||9000001^Lege^Test^^^^^^HPR||||||{ts}||CH|F",
    ]
    picks = [*CORE, *rng.sample(OTHERS, PER_REPORT - len(CORE))]
    for i, a in enumerate(picks, 1):
        value = value_of(a, rng)
        flag = "H" if value > a.high else "L" if value < a.low else "N"
        shown = f"{value:.{a.decimals}f}"
        segs.append(f"OBX|{i}|NM|{a.code}^{a.display}^NLK||{shown}|{a.unit}^^UCUM|"
                    f"{a.low}-{a.high}|{flag}|||F|||{taken}")
    return ("\r".join(segs) + "\r").encode()
