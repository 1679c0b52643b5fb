"""The generated demo: deterministic, valid R4, and holding what it promises."""

from __future__ import annotations

from collections import Counter
from datetime import date

import orjson

from akson.demo import AS_OF, build_demo, choose_municipalities
from akson.demo.history import (
    CHILD_HEALTH_VISIT_SYSTEM,
    ENCOUNTER_TYPE_SYSTEM,
    PROGRAMME,
    SCHOOL,
    VACCINES,
)
from akson.demo.population import add_years
from akson.fhir.identifiers import classify_person_id
from akson.fhir.naming import ATC_SYSTEM, FNR_SYSTEM, HPR_SYSTEM, ICPC2_SYSTEM, NLK_SYSTEM
from akson.fhir.validation import validate
from akson.registry.mapping import (
    ADDRESS_PROTECTION_SYSTEM,
    EPISODE_TYPE_SYSTEM,
    PARENTAL_RESPONSIBILITY_EXT,
)


def _first(seed: int, n: int = 400, municipalities: int = 2, persons: int = 120,
           chunk: int = 2000, registers: bool = True) -> list[bytes]:
    demo = build_demo(municipalities, persons, seed)
    items = demo.register_items() if registers else []
    items += [i for c in demo.chunks(chunk) for i in c.items]
    return [orjson.dumps(item, option=orjson.OPT_SORT_KEYS) for item in items[:n]]


def _age_days(born: str, when: str) -> int:
    return (date.fromisoformat(when[:10]) - date.fromisoformat(born)).days


def _ref_id(ref: dict) -> str:
    return ref["reference"].split("/", 1)[1]


def _codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def test_same_seed_gives_identical_resources_and_ids():
    first = _first(3)
    assert first == _first(3)
    # The chunk size groups the stream; it changes nothing in it.
    assert _first(3, n=2000, chunk=7) == _first(3, n=2000, chunk=5000)


def test_different_seed_gives_different_resources():
    assert _first(3) != _first(4)
    # Persons, their ids and histories differ (the 357 kommune Organizations do not).
    a, b = _first(3, registers=False), _first(4, registers=False)
    assert not set(a) & set(b)


def test_municipalities_are_chosen_by_seed_and_include_a_big_one():
    from akson.demo import BIG

    for seed in range(5):
        chosen = choose_municipalities(4, seed)
        assert chosen == choose_municipalities(4, seed)
        assert chosen[0] in BIG and len(set(chosen)) == 4


def test_every_resource_validates(generated):
    failures = []
    for res_type, res_id, resource in generated.items:
        assert resource["resourceType"] == res_type and resource["id"] == res_id
        issues = validate(resource, allow_synthetic_ids=True)
        if issues:
            failures.append((res_type, res_id, [i.diagnostics for i in issues][:3]))
    assert failures == []


def test_ids_are_unique_and_references_resolve(generated):
    keys = [(t, i) for t, i, _ in generated.items]
    assert len(keys) == len(set(keys))
    known = set(keys)
    dangling = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                res_type, _, res_id = ref.partition("/")
                if (res_type, res_id) not in known:
                    dangling.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for _, _, resource in generated.items:
        walk(resource)
    assert dangling == []


def test_persons_have_valid_synthetic_national_ids_and_an_age_pyramid(generated):
    patients = generated.of_type("Patient")
    assert len(patients) == 600
    nins = [i["value"] for p in patients for i in p["identifier"] if i["system"] == FNR_SYSTEM]
    assert len(nins) == len(set(nins)) == 600
    for nin in nins:
        person = classify_person_id(nin)
        assert person is not None and person.synthetic == "tenor"
    ages = Counter(min((AS_OF - date.fromisoformat(p["birthDate"])).days // 3652, 9)
                   for p in patients)
    assert ages[0] > 30 and ages[1] > 30  # children
    assert ages[8] + ages[9] > 10  # the very old
    assert max(ages.values()) < 0.25 * len(patients)  # no decade dominates
    names = " ".join(p["name"][0]["text"] for p in patients)
    assert any(ch in names for ch in "æøåÆØÅ")
    assert any("deceasedDateTime" in p for p in patients)


def test_strictly_confidential_persons_have_no_address(generated):
    strict = [p for p in generated.of_type("Patient")
              if {"system": ADDRESS_PROTECTION_SYSTEM, "code": "strictly-confidential",
                  "display": "Strengt fortrolig adresse"} in p["meta"].get("security", [])]
    assert strict
    assert all("address" not in p for p in strict)
    confidential = [p for p in generated.of_type("Patient")
                    if any(s["code"] == "confidential" for s in p["meta"].get("security", []))]
    assert confidential and all(p["address"] for p in confidential)
    ordinary = [p for p in generated.of_type("Patient") if not p["meta"].get("security")]
    assert all(p["address"][0]["city"] for p in ordinary)


def test_families_carry_parental_responsibility(generated):
    related = generated.of_type("RelatedPerson")
    responsibility = [r for r in related if any(e["url"] == PARENTAL_RESPONSIBILITY_EXT
                                                for e in r.get("extension", []))]
    assert len(responsibility) > 50
    codes = Counter(e["valueCoding"]["code"] for r in responsibility for e in r["extension"])
    assert codes["felles"] > codes["mor"] > 0
    assert all(any(s["code"] == "R" for s in r["meta"]["security"]) for r in related)


def test_the_showcase_users_exist(generated):
    demo = generated.demo
    users = demo.users()
    roles = [u.role.strip() for u in users]
    assert roles.count("Fastlege") >= 3
    for role in ("Legevaktlege", "Sykepleier hjemmetjenesten", "Helsesykepleier", "Innbygger",
                 "Forelder"):
        assert role in roles
    showcase = demo.showcase
    assert sorted(c.age() for c in showcase.children or []) == [11, 13, 17]
    parent = showcase.parent
    assert parent is not None
    resp = {nin for nin, code in parent.responsibility if code == "felles"}
    assert resp == {c.nin for c in showcase.children or []}
    hprs = {i["value"] for p in generated.of_type("Practitioner") for i in p["identifier"]
            if i["system"] == HPR_SYSTEM}
    assert {u.id_value for u in users if u.id_kind == "HPR"} <= hprs


def test_children_are_immunised_at_the_programme_ages(generated):
    patients = {p["id"]: p for p in generated.of_type("Patient")}
    windows: dict[str, list[tuple[int, int]]] = {}
    for _, _, days, vaccines in PROGRAMME:
        for key, _ in vaccines:
            windows.setdefault(VACCINES[key][0], []).append((days, days + 61))
    windows["J07CA06"] = windows["J07CA09"]  # before HepB joined the combination vaccine
    for key, _, _, age in SCHOOL:
        windows.setdefault(VACCINES[key][0], []).append((age * 365 - 380, age * 365 + 330))
    immunisations = generated.of_type("Immunization")
    assert len(immunisations) > 300
    per_child = Counter()
    for imm in immunisations:
        (system, code), = _codes(imm["vaccineCode"])
        assert system == ATC_SYSTEM and code.startswith("J07")
        born = patients[_ref_id(imm["patient"])]["birthDate"]
        age = _age_days(born, imm["occurrenceDateTime"])
        assert any(low <= age <= high for low, high in windows[code]), (code, age)
        per_child[imm["patient"]["reference"]] += 1
    children = [p for p in patients.values() if add_years(date.fromisoformat(p["birthDate"]),
                                                          18) > AS_OF]
    vaccinated = [c for c in children if per_child[f"Patient/{c['id']}"]]
    assert len(vaccinated) >= 0.9 * len([c for c in children if
                                         _age_days(c["birthDate"], AS_OF.isoformat()) > 60])
    # the 11-year-old showcase child has had the 6th-grade MMR or is due this autumn; the
    # 17-year-old has the whole programme through 10th grade
    oldest = max(generated.demo.showcase.children or [], key=lambda c: c.age())
    codes = Counter(_codes(i["vaccineCode"]).pop()[1] for i in immunisations
                    if _ref_id(i["patient"]) == oldest.patient_id)
    assert codes["J07BD52"] == 2 and codes["J07BM03"] == 1 and codes["J07CA02"] == 2


def test_under_six_have_health_station_visits_with_growth(generated):
    encounters = [e for e in generated.of_type("Encounter")
                  if (ENCOUNTER_TYPE_SYSTEM, "helsestasjon") in _codes(e["type"][0])]
    assert encounters
    orgs = {o["id"]: o for o in generated.of_type("Organization")}
    assert all("helsestasjon" in orgs[_ref_id(e["serviceProvider"])]["name"] for e in encounters)
    patients = {p["id"]: p for p in generated.of_type("Patient")}
    assert all(_age_days(patients[_ref_id(e["subject"])]["birthDate"], AS_OF.isoformat())
               < 6 * 366 for e in encounters)
    programme = {code: days for code, _, days, _ in PROGRAMME}
    for e in encounters:
        (system, code), = _codes(e["type"][1])
        assert system == CHILD_HEALTH_VISIT_SYSTEM
        age = _age_days(patients[_ref_id(e["subject"])]["birthDate"], e["period"]["start"])
        assert programme[code] <= age <= programme[code] + 60
    growth = Counter()
    for obs in generated.of_type("Observation"):
        if obs.get("encounter", {}).get("reference") in {f"Encounter/{e['id']}"
                                                         for e in encounters[:50]}:
            growth[obs["code"]["coding"][0]["code"]] += 1
            assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert growth["29463-7"] == growth["8302-2"] == min(len(encounters), 50)


def test_gp_lists_have_members_and_some_changes(generated):
    episodes = generated.of_type("EpisodeOfCare")
    lists = [e for e in episodes if (EPISODE_TYPE_SYSTEM, "fastlegeliste") in _codes(e["type"][0])]
    roles = [r for r in generated.of_type("PractitionerRole")
             if any(c["code"] == "fastlege" for c in r.get("code", [{}])[0].get("coding", []))]
    gp_ids = {_ref_id(r["practitioner"]) for r in roles}
    members = Counter(_ref_id(e["careManager"]) for e in lists if e["status"] == "active")
    assert set(members) <= gp_ids and len(members) >= 4
    assert all(n > 20 for n in members.values())
    per_patient = Counter(_ref_id(e["patient"]) for e in lists)
    assert any(n > 1 for n in per_patient.values())  # someone changed GP
    assert all(n >= 1 for n in per_patient.values()) and len(per_patient) == 600
    finished = [e for e in lists if e["status"] == "finished"]
    assert finished and all("end" in e["period"] for e in finished)


def test_home_care_decisions_at_the_home_care_unit(generated):
    orgs = {o["id"]: o for o in generated.of_type("Organization")}
    decisions = [e for e in generated.of_type("EpisodeOfCare")
                 if (EPISODE_TYPE_SYSTEM, "hjemmesykepleie") in _codes(e["type"][0])]
    assert decisions
    for decision in decisions:
        assert orgs[_ref_id(decision["managingOrganization"])]["name"].startswith(
            "Hjemmetjenesten")
        assert decision["period"]["start"] and decision["careManager"]
    visits = [e for e in generated.of_type("Encounter") if e["class"]["code"] == "HH"]
    assert visits and all(e["episodeOfCare"] for e in visits)


def test_clinical_codes(generated):
    conditions = generated.of_type("Condition")
    icpc = Counter(c["code"]["coding"][0]["code"] for c in conditions
                   if c["code"]["coding"][0]["system"] == ICPC2_SYSTEM)
    assert len(icpc) == len(conditions) or sum(icpc.values()) == len(conditions)
    for code in ("K86", "T90", "R74"):
        assert icpc[code] > 0
    meds = generated.of_type("MedicationStatement")
    assert meds and all(m["medicationCodeableConcept"]["coding"][0]["system"] == ATC_SYSTEM
                        for m in meds)
    labs = [o for o in generated.of_type("Observation")
            if o["category"][0]["coding"][0]["code"] == "laboratory"]
    assert any(o["code"]["coding"][0] == {
        "system": NLK_SYSTEM, "code": "NPU27300",
        "display": "B—Hemoglobin A1c (IFCC); stoffrel. = ? mmol/mol"} for o in labs)
    assert all(o["valueQuantity"]["system"] == "http://unitsofmeasure.org" for o in labs)
    kinds = Counter(e["class"]["code"] for e in generated.of_type("Encounter"))
    assert kinds["AMB"] and kinds["EMER"] and kinds["HH"]
