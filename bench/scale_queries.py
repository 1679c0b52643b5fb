"""Search shapes for bench/scale.py, filled with ids and codes sampled from the loaded database."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

SAMPLE = 400  # rows sampled per kind


@dataclass
class Sample:
    """Real values from the database the queries are built from."""

    patients: list[str] = field(default_factory=list)
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    obs: list[tuple[str, str, str, int]] = field(default_factory=list)  # patient, system, code, year
    codes: list[tuple[str, str]] = field(default_factory=list)  # the most common Observation codes


def sample(conninfo: str, seed: int) -> Sample:
    """Sample patients, identifiers, family names and (patient, code, year) of Observations."""
    import psycopg

    out = Sample()
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT setseed(%s)", (((seed % 1000) / 1000.0),))
        live = "r.deleted = false AND r.res_type = 'Patient'"
        out.patients = [r[0] for r in conn.execute(
            f"SELECT r.res_id FROM resource r WHERE {live} ORDER BY random() LIMIT {SAMPLE}")]
        out.identifiers = [(r[0], r[1]) for r in conn.execute(
            "SELECT t.system, t.code FROM sp_token t JOIN resource r ON r.pk = t.res_pk "
            f"WHERE {live} AND t.param = 'identifier' AND t.system IS NOT NULL "
            f"ORDER BY random() LIMIT {SAMPLE}")]
        out.families = [r[0] for r in conn.execute(
            "SELECT s.value_exact FROM sp_string s WHERE s.res_type = 'Patient' AND "
            f"s.param = 'family' ORDER BY random() LIMIT {SAMPLE}")]
        out.obs = [(r[0], r[1], r[2], int(r[3])) for r in conn.execute(
            "SELECT p.target_id, t.system, t.code, "
            "  extract(year FROM to_timestamp(d.low / 1000000.0))::int "
            "FROM sp_token t JOIN sp_reference p ON p.res_pk = t.res_pk AND p.param = 'patient' "
            "JOIN sp_date d ON d.res_pk = t.res_pk AND d.param = 'date' "
            "WHERE t.res_type = 'Observation' AND t.param = 'code' AND t.system IS NOT NULL "
            f"ORDER BY random() LIMIT {SAMPLE}")]
        out.codes = [(r[0], r[1]) for r in conn.execute(
            "SELECT system, code FROM sp_token WHERE res_type = 'Observation' AND param = 'code' "
            "AND system IS NOT NULL GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 20")]
    if not (out.patients and out.identifiers and out.families and out.obs and out.codes):
        raise RuntimeError(f"the database holds too little data to sample queries: {out}")
    return out


def _tok(system: str, code: str) -> str:
    return quote(f"{system}|{code}", safe="")


@dataclass(frozen=True)
class Shape:
    """One kind of request; `make` builds a concrete path from the sample."""

    key: str
    desc: str
    make: Callable[[random.Random, Sample], str]
    patient_scoped: bool = False
    pages: int = 1  # > 1: follow `next` links this many pages; the latency is the whole walk


def _obs(rng: random.Random, s: Sample) -> tuple[str, str, str, int]:
    return rng.choice(s.obs)


def _common(rng: random.Random, s: Sample) -> str:
    return _tok(*rng.choice(s.codes[:5]))


SHAPES: list[Shape] = [
    Shape("read", "Patient/{id}", lambda r, s: f"/Patient/{r.choice(s.patients)}"),
    Shape("identifier", "Patient?identifier=system|value",
          lambda r, s: f"/Patient?identifier={_tok(*r.choice(s.identifiers))}"),
    Shape("family", "Patient?family=<name>&_count=10",
          lambda r, s: f"/Patient?family={quote(r.choice(s.families))}&_count=10"),
    Shape("birthdate_gender", "Patient?birthdate=<year>&gender=female&_count=20",
          lambda r, s: f"/Patient?birthdate={_obs(r, s)[3] - 40}&gender=female&_count=20"),
    Shape("code_date", "Observation?code=&date=ge<y>&date=lt<y+1>&_count=20",
          lambda r, s: (lambda o: f"/Observation?code={_tok(o[1], o[2])}&date=ge{o[3]}-01-01"
                        f"&date=lt{o[3] + 1}-01-01&_count=20")(_obs(r, s))),
    Shape("chain_name", "Observation?subject:Patient.name=<family>&_count=20",
          lambda r, s: f"/Observation?subject:Patient.name={quote(r.choice(s.families))}&_count=20"),
    Shape("has_code", "Patient?_has:Observation:patient:code=<code>&_count=20",
          lambda r, s: f"/Patient?_has:Observation:patient:code={_common(r, s)}&_count=20"),
    Shape("include", "Observation?code=&_include=Observation:subject&_count=20",
          lambda r, s: f"/Observation?code={_common(r, s)}&_include=Observation:subject&_count=20"),
    Shape("revinclude", "Patient?_id=<id>&_revinclude=Observation:subject",
          lambda r, s: f"/Patient?_id={_obs(r, s)[0]}&_revinclude=Observation:subject",
          patient_scoped=True),
    Shape("sort_date", "Observation?code=&_sort=-date&_count=20",
          lambda r, s: f"/Observation?code={_common(r, s)}&_sort=-date&_count=20"),
    Shape("paging5", "Observation?code=&_count=50, then 5 pages via next",
          lambda r, s: f"/Observation?code={_common(r, s)}&_count=50", pages=5),
    Shape("total_accurate", "Observation?code=&_total=accurate&_count=1",
          lambda r, s: f"/Observation?code={_common(r, s)}&_total=accurate&_count=1"),
    Shape("encounter_date", "Encounter?date=ge<y>&date=lt<y>-02&_count=20",
          lambda r, s: (lambda y: f"/Encounter?date=ge{y}-01-01&date=lt{y}-02-01&_count=20")(
              _obs(r, s)[3])),
    Shape("everything", "Patient/{id}/$everything",
          lambda r, s: f"/Patient/{_obs(r, s)[0]}/$everything", patient_scoped=True),
    Shape("pat_obs_code", "Observation?patient=&code=",
          lambda r, s: (lambda o: f"/Observation?patient={o[0]}&code={_tok(o[1], o[2])}")(_obs(r, s)),
          patient_scoped=True),
    Shape("pat_obs_sorted", "Observation?patient=&_sort=-date&_count=10",
          lambda r, s: f"/Observation?patient={_obs(r, s)[0]}&_sort=-date&_count=10",
          patient_scoped=True),
    Shape("pat_obs_date", "Observation?patient=&date=ge<y>",
          lambda r, s: (lambda o: f"/Observation?patient={o[0]}&date=ge{o[3]}-01-01")(_obs(r, s)),
          patient_scoped=True),
    Shape("pat_conditions", "Condition?patient=",
          lambda r, s: f"/Condition?patient={_obs(r, s)[0]}", patient_scoped=True),
    Shape("pat_encounters", "Encounter?patient=&_sort=-date&_count=10",
          lambda r, s: f"/Encounter?patient={_obs(r, s)[0]}&_sort=-date&_count=10",
          patient_scoped=True),
    Shape("pat_immunizations", "Immunization?patient=",
          lambda r, s: f"/Immunization?patient={_obs(r, s)[0]}", patient_scoped=True),
]
