"""Clinical history: GP and legevakt encounters, problems, medication, vitals, labs, vaccines, care.

Representations (all plain FHIR R4):
- GP, legevakt, home and health-station contacts are Encounters (`class` AMB, EMER or HH, `type`
  from `ENCOUNTER_TYPE_SYSTEM`) with the unit as `serviceProvider` and the practitioner as
  participant. Problems are Conditions coded in ICPC-2; chronic ones are problem-list items,
  acute ones encounter diagnoses linked to their Encounter.
- Medication in use is a MedicationStatement coded in ATC (`ATC_SYSTEM`) with a reason.
- Vitals are LOINC/UCUM Observations (category vital-signs); labs are NLK-coded Observations
  (category laboratory, UCUM units).
- The childhood vaccination programme is Immunizations coded in ATC J07 with the dose number.
- A home-care service decision (vedtak om helsetjenester i hjemmet) is an EpisodeOfCare at the
  hjemmetjeneste: `type` = `episode-type|hjemmesykepleie` plus Volven 9151 code 15 (Helsetjenester
  i hjemmet), `period.start` = the decision's start, `period.end` = its end (death), `careManager`
  = the primary nurse (primærkontakt), identifier = the decision's case number. A nursing-home
  place is the same with `langtidsopphold` / 9151 code 21 at the sykehjem.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from akson.demo.population import AS_OF, Person, add_years, make_id
from akson.demo.services import Contract, Item, Services, Staff, Unit
from akson.fhir.naming import ATC_SYSTEM, ICPC2_SYSTEM, NLK_SYSTEM
from akson.registry.mapping import EPISODE_TYPE_SYSTEM

__all__ = ["CHILD_HEALTH_VISIT_SYSTEM", "ENCOUNTER_TYPE_SYSTEM", "PROGRAMME", "SCHOOL", "VACCINES",
           "clinical_history"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ENCOUNTER_TYPE_SYSTEM = "https://akson.no/fhir/CodeSystem/encounter-type"
#: The child-health programme's consultations (helsestasjon), codes in `PROGRAMME`.
CHILD_HEALTH_VISIT_SYSTEM = "https://akson.no/fhir/CodeSystem/helsestasjon-konsultasjon"
CASE_NUMBER_SYSTEM = "https://akson.no/fhir/NamingSystem/vedtak"
#: Volven 9151 "Tjenestetype i helse- og omsorgstjenesten" (KPR / IPLOS service types).
SERVICE_TYPE_9151 = "urn:oid:2.16.578.1.12.4.1.1.9151"

# (ICPC-2, display, prevalence(age, female), [(ATC, display, dosage)], lab key or None)
_Chronic = tuple[str, str, Any, list[tuple[str, str, str]], str | None]
CHRONIC: list[_Chronic] = [
    ("K86", "Hypertensjon ukomplisert", lambda a, f: min(max(a - 30, 0) * 0.009, 0.45),
     [("C09CA01", "Losartan", "50 mg 1 gang daglig"), ("C08CA01", "Amlodipin", "5 mg daglig")],
     "kreatinin"),
    ("T90", "Diabetes type 2", lambda a, f: min(max(a - 30, 0) * 0.0025, 0.12),
     [("A10BA02", "Metformin", "500 mg 2 ganger daglig")], "hba1c"),
    ("T93", "Lipidforstyrrelse", lambda a, f: min(max(a - 40, 0) * 0.005, 0.2),
     [("C10AA05", "Atorvastatin", "20 mg om kvelden")], "kolesterol"),
    ("R96", "Astma", lambda a, f: 0.06 if a >= 3 else 0.0,
     [("R03AC02", "Salbutamol", "1-2 inhalasjoner ved behov"),
      ("R03AK07", "Formoterol og budesonid", "1 inhalasjon morgen og kveld")], None),
    ("P76", "Depresjon", lambda a, f: (0.06 if f else 0.035) if a >= 15 else 0.0,
     [("N06AB10", "Escitalopram", "10 mg daglig")], None),
    ("P74", "Angstlidelse", lambda a, f: 0.04 if a >= 15 else 0.0, [], None),
    ("K78", "Atrieflimmer/flutter", lambda a, f: min(max(a - 60, 0) * 0.004, 0.15),
     [("B01AF02", "Apixaban", "5 mg 2 ganger daglig")], None),
    ("R95", "Kronisk obstruktiv lungesykdom", lambda a, f: 0.05 if a >= 50 else 0.0,
     [("R03BB04", "Tiotropiumbromid", "1 inhalasjon daglig")], None),
    ("T86", "Hypotyreose/myksødem", lambda a, f: (0.06 if f else 0.01) if a >= 30 else 0.0,
     [("H03AA01", "Levotyroksinnatrium", "75 mikrogram daglig")], None),
    ("L90", "Kneartrose", lambda a, f: 0.08 if a >= 55 else 0.0,
     [("N02BE01", "Paracetamol", "1 g inntil 3 ganger daglig")], None),
    ("K77", "Hjertesvikt", lambda a, f: 0.06 if a >= 70 else 0.0,
     [("C03CA01", "Furosemid", "40 mg om morgenen")], "kreatinin"),
    ("P70", "Demens", lambda a, f: min(max(a - 75, 0) * 0.012, 0.3),
     [("N06DA02", "Donepezil", "10 mg om kvelden")], None),
]
# (ICPC-2, display, (ATC, display, dosage) or None, at the legevakt?, for children?)
ACUTE: list[tuple[str, str, tuple[str, str, str] | None, bool, bool]] = [
    ("R74", "Akutt øvre luftveisinfeksjon", None, True, True),
    ("R78", "Akutt bronkitt/bronkiolitt", None, False, True),
    ("R81", "Lungebetennelse", ("J01CE02", "Fenoksymetylpenicillin", "1 g 4 ganger daglig i 7 dager"),
     True, True),
    ("U71", "Cystitt/urinveisinfeksjon IKA", ("J01CA08", "Pivmecillinam", "200 mg 3 ganger daglig i 3 dager"),
     True, False),
    ("L03", "Korsryggsymptomer/plager", None, False, False),
    ("H71", "Akutt mellomørebetennelse/myringitt",
     ("J01CE02", "Fenoksymetylpenicillin", "etter vekt i 5 dager"), True, True),
    ("D73", "Gastroenteritt antatt infeksiøs", None, True, True),
    ("L77", "Forstuing/forstrekking ankel", None, True, True),
    ("S18", "Kutt/rift", None, True, True),
    ("N01", "Hodepine", None, False, False),
    ("A03", "Feber", None, True, True),
    ("P06", "Søvnforstyrrelse", None, False, False),
]
#: Lab tests: key → (NLK code, display, UCUM unit, (low, high) typical value).
LABS = {
    "hba1c": ("NPU27300", "B—Hemoglobin A1c (IFCC); stoffrel. = ? mmol/mol", "mmol/mol", (44, 75)),
    "kolesterol": ("NPU01566", "P—Kolesterol; stoffk. = ? mmol/L", "mmol/L", (3.8, 7.2)),
    "kreatinin": ("NPU18016", "P—Kreatinin; stoffk. = ? µmol/L", "umol/L", (55, 130)),
    "crp": ("NPU19748", "P—C-reaktivt protein; massek. = ? mg/L", "mg/L", (1, 120)),
}
#: Childhood vaccines (ATC J07): key → (ATC, display).
VACCINES = {
    "rota": ("J07BH01", "Rotavirus, levende svekket"),
    "dtap_ipv_hib_hepb": ("J07CA09", "Difteri-Haemophilus influenzae B-kikhoste-poliomyelitt-"
                                     "tetanus-hepatitt B"),
    "dtap_ipv_hib": ("J07CA06", "Difteri-Haemophilus influenzae B-kikhoste-poliomyelitt-tetanus"),
    "pcv": ("J07AL02", "Pneumokokk, renset polysakkaridantigen konjugert"),
    "mmr": ("J07BD52", "Meslinger, kombinasjoner med kusma og røde hunder, levende svekket"),
    "dtap_ipv": ("J07CA02", "Difteri-kikhoste-poliomyelitt-tetanus"),
    "hpv": ("J07BM03", "Papillomavirus (humant type 6, 11, 16, 18, 31, 33, 45, 52, 58)"),
}
#: The child-health programme (helsestasjon): (code, display, age in days, vaccines given).
PROGRAMME: list[tuple[str, str, int, list[tuple[str, int]]]] = [
    ("hs-6u", "Helsestasjon 6 uker", 42, [("rota", 1)]),
    ("hs-3m", "Helsestasjon 3 måneder", 91, [("rota", 2), ("dtap_ipv_hib_hepb", 1), ("pcv", 1)]),
    ("hs-5m", "Helsestasjon 5 måneder", 152, [("dtap_ipv_hib_hepb", 2), ("pcv", 2)]),
    ("hs-6m", "Helsestasjon 6 måneder", 183, []),
    ("hs-10m", "Helsestasjon 10 måneder", 304, []),
    ("hs-12m", "Helsestasjon 12 måneder", 365, [("dtap_ipv_hib_hepb", 3), ("pcv", 3)]),
    ("hs-15m", "Helsestasjon 15–18 måneder", 456, [("mmr", 1)]),
    ("hs-2a", "Helsestasjon 2 år", 730, []),
    ("hs-4a", "Helsestasjon 4 år", 1461, []),
]
#: School vaccinations: (vaccine, dose, school grade, age in the calendar year given).
SCHOOL = [("dtap_ipv", 4, "2. trinn", 7), ("mmr", 2, "6. trinn", 11), ("hpv", 1, "7. trinn", 12),
          ("dtap_ipv", 5, "10. trinn", 15)]
#: WHO growth medians at the programme's visits (boys; girls about 4 % lighter, 1.5 % shorter).
_GROWTH = {"hs-6u": (5.0, 57.0), "hs-3m": (6.4, 61.4), "hs-5m": (7.5, 65.9), "hs-6m": (7.9, 67.6),
           "hs-10m": (9.2, 73.3), "hs-12m": (9.6, 75.7), "hs-15m": (10.3, 79.1),
           "hs-2a": (12.2, 87.1), "hs-4a": (16.3, 103.3)}
_WINDOW_START = add_years(AS_OF, -3)


def _dt(day: date, minutes: int) -> str:
    """A local Norwegian dateTime (CET/CEST by the EU rule) `minutes` after midnight."""
    summer = _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10)
    return f"{day.isoformat()}T{minutes // 60:02d}:{minutes % 60:02d}:00{'+02:00' if summer else '+01:00'}"


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def _ref(res_type: str, res_id: str) -> dict[str, str]:
    return {"reference": f"{res_type}/{res_id}"}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


class _History:
    """Builds one person's resources; ids are `<type>/<patient>/<n>` UUIDs in build order."""

    def __init__(self, seed: int, person: Person, svc: Services, gp: Contract,
                 household: int) -> None:
        self.seed = seed
        self.person = person
        self.svc = svc
        self.gp = gp
        self.household = household
        self.rng = random.Random(f"{seed}:history:{person.patient_id}")  # noqa: S311
        self.items: list[Item] = []
        self.n = 0
        self.patient = _ref("Patient", person.patient_id)

    def add(self, resource: dict[str, Any]) -> str:
        self.n += 1
        res_type = resource["resourceType"]
        res_id = make_id(self.seed, res_type, f"{self.person.patient_id}/{self.n}")
        resource["id"] = res_id
        self.items.append((res_type, res_id, resource))
        return res_id

    def day_between(self, start: date, end: date) -> date:
        """A weekday in [start, end] (end if the span is empty)."""
        span = (end - start).days
        day = end if span <= 0 else start + timedelta(days=self.rng.randrange(span + 1))
        while day.weekday() >= 5 and day > start:
            day -= timedelta(days=1)
        return day

    # ------------------------------------------------------------------------ resources

    def encounter(self, day: date, kind: str, unit: Unit, staff: Staff, reason: tuple[str, str]
                  | None = None, episode: str | None = None,
                  visit: tuple[str, str] | None = None) -> str:
        klass = {"legevakt": ("EMER", "emergency"), "hjemmebesok": ("HH", "home health")}.get(
            kind, ("AMB", "ambulatory"))
        displays = {"fastlege": "Konsultasjon hos fastlege", "legevakt": "Legevaktkonsultasjon",
                    "hjemmebesok": "Hjemmebesøk", "helsestasjon": "Helsestasjonskonsultasjon"}
        code, display = (kind, displays[kind]) if kind in displays else (kind, reason[1] if reason
                                                                         else kind)
        start = self.rng.randrange(8 * 60, 15 * 60 if kind != "legevakt" else 22 * 60)
        length = 30 if kind != "fastlege" else 20
        enc: dict[str, Any] = {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": ACT_CODE, "code": klass[0], "display": klass[1]},
            "type": [_concept(ENCOUNTER_TYPE_SYSTEM, code, display)],
            "subject": self.patient,
            "participant": [{"individual": {**_ref("Practitioner", staff.practitioner_id),
                                            "display": staff.name}}],
            "period": {"start": _dt(day, start), "end": _dt(day, start + length)},
            "serviceProvider": {**_ref("Organization", unit.id), "display": unit.name},
        }
        if visit:
            enc["type"].append(_concept(CHILD_HEALTH_VISIT_SYSTEM, *visit))
        if reason:
            enc["reasonCode"] = [_concept(ICPC2_SYSTEM, *reason)]
        if episode:
            enc["episodeOfCare"] = [_ref("EpisodeOfCare", episode)]
        return self.add(enc)

    def condition(self, code: str, display: str, onset: date, staff: Staff, *, chronic: bool,
                  encounter: str | None = None) -> str:
        cond: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": CLINICAL,
                                           "code": "active" if chronic else "resolved"}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
            "category": [{"coding": [{"system": CONDITION_CATEGORY,
                                      "code": "problem-list-item" if chronic else
                                      "encounter-diagnosis"}]}],
            "code": _concept(ICPC2_SYSTEM, code, display),
            "subject": self.patient,
            "onsetDateTime": onset.isoformat(),
            "recordedDate": onset.isoformat(),
            "asserter": _ref("Practitioner", staff.practitioner_id),
        }
        if not chronic:
            cond["abatementDateTime"] = min(onset + timedelta(days=self.rng.randint(3, 14)),
                                            self.person.alive_until).isoformat()
        if encounter:
            cond["encounter"] = _ref("Encounter", encounter)
        return self.add(cond)

    def medication(self, atc: tuple[str, str, str], start: date, end: date | None, reason: str,
                   staff: Staff) -> None:
        period = {"start": start.isoformat()}
        if end:
            period["end"] = end.isoformat()
        self.add({
            "resourceType": "MedicationStatement",
            "status": "completed" if end else "active",
            "medicationCodeableConcept": _concept(ATC_SYSTEM, atc[0], atc[1]),
            "subject": self.patient,
            "effectivePeriod": period,
            "dateAsserted": start.isoformat(),
            "informationSource": _ref("Practitioner", staff.practitioner_id),
            "reasonReference": [_ref("Condition", reason)],
            "dosage": [{"text": atc[2]}],
        })

    def observation(self, day: date, category: str, coding: dict[str, Any], value: dict[str, Any]
                    | None, encounter: str | None, performer: Staff | None = None,
                    components: list[dict[str, Any]] | None = None) -> None:
        obs: dict[str, Any] = {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
            "code": {"coding": [coding]},
            "subject": self.patient,
            "effectiveDateTime": day.isoformat(),
        }
        if encounter:
            obs["encounter"] = _ref("Encounter", encounter)
        if performer:
            obs["performer"] = [_ref("Practitioner", performer.practitioner_id)]
        if value:
            obs["valueQuantity"] = value
        if components:
            obs["component"] = components
        self.add(obs)

    def blood_pressure(self, day: date, encounter: str, staff: Staff, high: bool) -> None:
        systolic = self.rng.randint(135, 165) if high else self.rng.randint(108, 138)
        diastolic = self.rng.randint(82, 98) if high else self.rng.randint(65, 86)
        self.observation(day, "vital-signs", {"system": LOINC, "code": "85354-9",
                                              "display": "Blood pressure panel"}, None, encounter,
                         staff, [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6",
                                  "display": "Systolic blood pressure"}]},
             "valueQuantity": _quantity(systolic, "mm[Hg]")},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4",
                                  "display": "Diastolic blood pressure"}]},
             "valueQuantity": _quantity(diastolic, "mm[Hg]")}])

    def vital(self, day: date, loinc: str, display: str, value: float, unit: str,
              encounter: str | None, staff: Staff | None) -> None:
        self.observation(day, "vital-signs", {"system": LOINC, "code": loinc, "display": display},
                         _quantity(value, unit), encounter, staff)

    def lab(self, key: str, day: date, encounter: str | None, high: bool = False) -> None:
        code, display, unit, (low, top) = LABS[key]
        value = self.rng.uniform(low + (top - low) * (0.4 if high else 0), top)
        rounded = round(value) if top >= 20 else round(value, 1)
        self.observation(day, "laboratory", {"system": NLK_SYSTEM, "code": code,
                                             "display": display},
                         _quantity(rounded, unit), encounter)

    # -------------------------------------------------------------------------- content

    def build(self) -> list[Item]:
        p = self.person
        age = p.age(p.alive_until)
        if age < 18:
            self.childhood()
        chronic = self.chronic(age)
        self.gp_visits(chronic, age)
        if self.rng.random() < (0.15 if age < 18 else 0.1):
            self.legevakt(age)
        if age >= 67:
            self.care(age, chronic)
        return self.items

    def chronic(self, age: int) -> list[tuple[str, str, str, str | None]]:
        """Chronic problems (with medication): [(condition id, code, display, lab key)]."""
        p, rng = self.person, self.rng
        out = []
        forced = {"K86", "T90"} if "showcase_citizen" in p.tags else set()
        for code, display, prevalence, meds, lab in CHRONIC:
            if code not in forced and rng.random() >= prevalence(age, p.female):
                continue
            earliest = max(add_years(p.born, 3 if code == "R96" else max(15, age - 25)),
                           date(2000, 1, 1))
            onset = self.day_between(earliest, p.alive_until - timedelta(days=30))
            if onset < p.born:
                continue
            cond = self.condition(code, display, onset, self.gp.gp, chronic=True)
            for med in meds[: rng.randint(1, len(meds))] if meds else []:
                self.medication(med, onset + timedelta(days=rng.randint(0, 60)), p.death, cond,
                                self.gp.gp)
            out.append((cond, code, display, lab))
        return out

    def gp_visits(self, chronic: list[tuple[str, str, str, str | None]], age: int) -> None:
        p, rng = self.person, self.rng
        moved_in = date.fromisoformat(p.address["from"]) if p.address else p.born
        start = max(_WINDOW_START, p.born, self.gp.start, moved_in)
        if p.alive_until <= start:
            return
        visits = rng.choice([0, 1, 1, 2, 2, 3]) + min(len(chronic), 3)
        if age < 18:
            visits = rng.choice([0, 0, 1, 1, 2])
        gp, office = self.gp.gp, self.gp.office
        for _ in range(visits):
            day = self.day_between(start, p.alive_until)
            if chronic and rng.random() < 0.6:
                cond_id, code, display, lab = rng.choice(chronic)
                enc = self.encounter(day, "fastlege", office, gp, (code, display))
                if code == "K86" or (age >= 40 and rng.random() < 0.4):
                    self.blood_pressure(day, enc, gp, code == "K86")
                if lab:
                    self.lab(lab, day, enc, high=code == "T90")
                continue
            acute = rng.choice([a for a in ACUTE if a[4] or age >= 18])
            code, display, med, _, _ = acute
            enc = self.encounter(day, "fastlege", office, gp, (code, display))
            cond = self.condition(code, display, day, gp, chronic=False, encounter=enc)
            if med:
                self.medication(med, day, min(day + timedelta(days=7), p.alive_until), cond, gp)
            if code in ("R81", "A03", "U71"):
                self.lab("crp", day, enc, high=True)
            if age >= 18 and rng.random() < 0.3:
                self.vital(day, "8867-4", "Heart rate", rng.randint(55, 100), "/min", enc, gp)

    def legevakt(self, age: int) -> None:
        p, rng = self.person, self.rng
        start = max(_WINDOW_START, p.born)
        if p.alive_until <= start:
            return
        unit = self.svc.unit_for("legevakt", 0)
        doctor = self.svc.staff_at("legevakt", unit, rng.randrange(1000))
        code, display, med, _, _ = rng.choice([a for a in ACUTE if a[3] and (a[4] or age >= 18)])
        day = start + timedelta(days=rng.randrange(max((p.alive_until - start).days, 1)))
        enc = self.encounter(day, "legevakt", unit, doctor, (code, display))
        cond = self.condition(code, display, day, doctor, chronic=False, encounter=enc)
        if med:
            self.medication(med, day, min(day + timedelta(days=7), p.alive_until), cond, doctor)
        if code in ("R81", "A03"):
            self.lab("crp", day, enc, high=True)
        self.vital(day, "8310-5", "Body temperature", round(rng.uniform(36.5, 39.5), 1), "Cel",
                   enc, doctor)

    def childhood(self) -> None:
        """Helsestasjon visits with growth (children under 6) and the vaccination programme."""
        p, rng = self.person, self.rng
        unit = self.svc.unit_for("helsestasjon", self.household)
        nurse = self.svc.staff_at("helsestasjon", unit, self.household)
        declined = not p.tags and rng.random() < 0.02  # a few parents decline vaccination
        under_six = p.age(p.alive_until) < 6
        factor = rng.gauss(1.0, 0.07)
        for code, display, days, vaccines in PROGRAMME:
            day = p.born + timedelta(days=days + rng.randint(0, 10 if code != "hs-15m" else 60))
            if day > p.alive_until:
                break
            encounter = None
            if under_six:
                encounter = self.encounter(day, "helsestasjon", unit, nurse,
                                           visit=(code, display))
                weight, height = _GROWTH[code]
                scale = (0.96, 0.985) if p.female else (1.0, 1.0)
                self.vital(day, "29463-7", "Body weight",
                           round(weight * scale[0] * factor, 2), "kg", encounter, nurse)
                self.vital(day, "8302-2", "Body height",
                           round(height * scale[1] * (1 + (factor - 1) / 3), 1), "cm",
                           encounter, nurse)
            if declined:
                continue
            for key, dose in vaccines:
                given = self._vaccine_for(key)
                if given:
                    self.immunization(given, dose, day, nurse, unit, encounter)
        school_nurse = nurse
        for key, dose, _, age in SCHOOL:
            day = date(p.born.year + age, rng.randint(9, 11), rng.randint(1, 28))
            if declined or day > p.alive_until:
                continue
            self.immunization(key, dose, day, school_nurse, unit, None)

    def _vaccine_for(self, key: str) -> str | None:
        """Which vaccine the programme gave in the child's birth year."""
        born = self.person.born
        if key == "rota" and born < date(2014, 9, 1):
            return None
        if key == "dtap_ipv_hib_hepb" and born < date(2017, 11, 1):
            return "dtap_ipv_hib"
        return key

    def immunization(self, key: str, dose: int, day: date, nurse: Staff, unit: Unit,
                     encounter: str | None) -> None:
        atc, display = VACCINES[key]
        imm: dict[str, Any] = {
            "resourceType": "Immunization", "status": "completed",
            "vaccineCode": _concept(ATC_SYSTEM, atc, display),
            "patient": self.patient,
            "occurrenceDateTime": day.isoformat(),
            "primarySource": True,
            "location": {"display": unit.name},
            "performer": [{"actor": _ref("Practitioner", nurse.practitioner_id)}],
            "protocolApplied": [{"series": "Barnevaksinasjonsprogrammet",
                                 "doseNumberPositiveInt": dose}],
        }
        if encounter:
            imm["encounter"] = _ref("Encounter", encounter)
        self.add(imm)

    def care(self, age: int, chronic: list[tuple[str, str, str, str | None]]) -> None:
        """Home care or a nursing-home place for some elderly (a service decision each)."""
        p, rng = self.person, self.rng
        dementia = any(c[1] == "P70" for c in chronic)
        chance = 0.03 if age < 75 else 0.08 if age < 80 else 0.18 if age < 85 else 0.32
        draw = rng.random()
        if draw >= (0.8 if dementia else chance):
            return
        nursing_home = age >= 85 and draw < chance * 0.35
        kind = "sykehjem" if nursing_home else "hjemmetjeneste"
        unit = self.svc.unit_for(kind, self.household)
        nurse = self.svc.staff_at(kind, unit, self.household)
        start = self.day_between(max(add_years(p.born, 67), add_years(AS_OF, -6)),
                                 p.alive_until - timedelta(days=20))
        code, display, volven, volven_display = (
            ("langtidsopphold", "Langtidsopphold i sykehjem", "21", "Langtidsopphold i institusjon")
            if nursing_home else
            ("hjemmesykepleie", "Hjemmesykepleie", "15", "Helsetjenester i hjemmet"))
        episode: dict[str, Any] = {
            "resourceType": "EpisodeOfCare",
            "identifier": [{"system": CASE_NUMBER_SYSTEM,
                            "value": f"{self.svc.number}-{start.year}-{rng.randrange(10000):04d}"}],
            "status": "finished" if p.death else "active",
            "type": [{"coding": [{"system": EPISODE_TYPE_SYSTEM, "code": code, "display": display},
                                 {"system": SERVICE_TYPE_9151, "code": volven,
                                  "display": volven_display}]}],
            "patient": self.patient,
            "managingOrganization": {**_ref("Organization", unit.id), "display": unit.name},
            "period": {"start": start.isoformat(), **({"end": p.death.isoformat()} if p.death
                                                       else {})},
            "careManager": _ref("Practitioner", nurse.practitioner_id),
        }
        episode_id = self.add(episode)
        if nursing_home:
            return
        for _ in range(rng.randint(1, 3)):
            day = self.day_between(max(start, _WINDOW_START), p.alive_until)
            enc = self.encounter(day, "hjemmebesok", unit, nurse, None, episode_id)
            self.blood_pressure(day, enc, nurse, any(c[1] == "K86" for c in chronic))
            self.vital(day, "8867-4", "Heart rate", rng.randint(55, 95), "/min", enc, nurse)


def clinical_history(seed: int, person: Person, svc: Services, gp: Contract,
                     household: int) -> list[Item]:
    """The person's clinical history as resources, deterministic per seed and person."""
    return _History(seed, person, svc, gp, household).build()
