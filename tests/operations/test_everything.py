"""Patient and Encounter `$everything` (R4 patient-operation-everything.html), both databases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest


def _create(client, resource: dict) -> dict:
    resp = client.post(f"/{resource['resourceType']}", json=resource)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _key(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


@dataclass
class Record:
    """One patient's record, the shared resources it points at, and someone else's record."""

    patient: dict
    practitioner: dict
    organization: dict
    location: dict
    medication: dict
    encounter: dict
    observation: dict
    medication_request: dict
    condition: dict
    other_patient: dict
    other_practitioner: dict
    other_observation: dict


def _record(client) -> Record:
    tag = uuid.uuid4().hex[:8]
    prac = _create(client, {"resourceType": "Practitioner", "name": [{"family": f"Lege{tag}"}]})
    org = _create(client, {"resourceType": "Organization", "name": f"Legekontor {tag}"})
    loc = _create(client, {"resourceType": "Location", "name": f"Rom {tag}"})
    med = _create(client, {"resourceType": "Medication",
                           "code": {"coding": [{"system": "http://www.whocc.no/atc",
                                                "code": "N02BE01"}]}})
    pat = _create(client, {"resourceType": "Patient", "name": [{"family": f"Nordmann{tag}"}],
                           "generalPractitioner": [_ref(prac)], "managingOrganization": _ref(org)})
    enc = _create(client, {"resourceType": "Encounter", "status": "finished",
                           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                     "code": "AMB"},
                           "subject": _ref(pat), "participant": [{"individual": _ref(prac)}],
                           "location": [{"location": _ref(loc)}], "serviceProvider": _ref(org)})
    obs = _create(client, {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                           "subject": _ref(pat), "encounter": _ref(enc),
                           "performer": [_ref(prac)], "valueQuantity": {"value": 72}})
    mreq = _create(client, {"resourceType": "MedicationRequest", "status": "active",
                            "intent": "order", "medicationReference": _ref(med),
                            "subject": _ref(pat), "encounter": _ref(enc), "requester": _ref(prac)})
    cond = _create(client, {"resourceType": "Condition", "subject": _ref(pat),
                            "code": {"text": "Hodepine"}})
    other_prac = _create(client, {"resourceType": "Practitioner", "name": [{"family": "Annen"}]})
    other = _create(client, {"resourceType": "Patient", "name": [{"family": f"Annen{tag}"}],
                             "generalPractitioner": [_ref(other_prac)]})
    other_obs = _create(client, {"resourceType": "Observation", "status": "final",
                                 "code": {"text": "puls"}, "subject": _ref(other),
                                 "performer": [_ref(other_prac)]})
    return Record(pat, prac, org, loc, med, enc, obs, mreq, cond, other, other_prac, other_obs)


@pytest.fixture
def record(client) -> Record:
    return _record(client)


def _everything(client, url: str, params: dict | None = None) -> tuple[list[dict], int]:
    """All entries, following `next` links; returns them and the number of pages."""
    resp = client.get(url, params=params)
    entries: list[dict] = []
    for pages in range(1, 1000):
        assert resp.status_code == 200, resp.text
        bundle = resp.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        entries += bundle.get("entry", [])
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            return entries, pages
        resp = client.get(nxt[0])
    raise AssertionError("$everything paging did not end")


def _keys(entries: list[dict]) -> list[str]:
    return [_key(e["resource"]) for e in entries]


def test_patient_everything_is_the_record_and_what_it_references(client, record):
    entries, _ = _everything(client, f"/Patient/{record.patient['id']}/$everything")
    keys = _keys(entries)
    assert len(keys) == len(set(keys)), "no resource twice"
    expected = {_key(r) for r in (record.patient, record.encounter, record.observation,
                                  record.medication_request, record.condition,
                                  record.practitioner, record.organization, record.location,
                                  record.medication)}
    assert set(keys) == expected
    by_key = {_key(e["resource"]): e for e in entries}
    # The stored resources as a read returns them, and fullUrls that resolve.
    for key in (_key(record.observation), _key(record.practitioner)):
        assert by_key[key]["resource"] == client.get(f"/{key}").json()
        assert by_key[key]["fullUrl"].endswith(f"/fhir/{key}")


def test_patient_everything_pages_with_count(client, record):
    url = f"/Patient/{record.patient['id']}/$everything"
    whole, _ = _everything(client, url)
    first = client.get(url, params={"_count": 2}).json()
    assert len(first["entry"]) == 2
    assert "total" not in first, "the total is not free when the first page is not everything"
    paged, pages = _everything(client, url, {"_count": 2})
    assert pages == 5  # 9 resources, 2 a page
    assert _keys(paged) == _keys(whole)  # same order (pk), nothing lost or repeated
    assert client.get(url).json()["total"] == 9


def test_patient_everything_type_filter(client, record):
    entries, _ = _everything(client, f"/Patient/{record.patient['id']}/$everything",
                             {"_type": "Observation,Practitioner"})
    assert set(_keys(entries)) == {_key(record.observation), _key(record.practitioner)}


def test_patient_everything_since(client, record):
    since = max(r["meta"]["lastUpdated"] for r in (record.condition, record.other_observation))
    obs = {**record.observation, "status": "amended"}
    client.put(f"/Observation/{obs['id']}", json=obs).raise_for_status()
    new = _create(client, {"resourceType": "AllergyIntolerance", "patient": _ref(record.patient),
                           "code": {"text": "Penicillin"}})
    # `_since` is inclusive of its instant; use one microsecond past the last untouched write.
    entries, _ = _everything(client, f"/Patient/{record.patient['id']}/$everything",
                             {"_since": _plus_one_us(since)})
    assert set(_keys(entries)) == {_key(record.observation), _key(new)}
    assert next(e for e in entries if e["resource"]["id"] == obs["id"])["resource"][
        "status"] == "amended"


def _plus_one_us(instant: str) -> str:
    head, frac = instant.rstrip("Z").split(".")
    micro = int(frac.ljust(6, "0")) + 1
    assert micro < 1_000_000
    return f"{head}.{micro:06d}Z"


def test_patient_everything_unknown_deleted_and_bad_parameters(client, record):
    assert client.get(f"/Patient/{uuid.uuid4().hex}/$everything").status_code == 404
    pid = record.other_patient["id"]
    client.delete(f"/Patient/{pid}").raise_for_status()
    assert client.get(f"/Patient/{pid}/$everything").status_code == 410
    url = f"/Patient/{record.patient['id']}/$everything"
    for params in ({"start": "2020"}, {"_type": "NotAType"}, {"_count": "x"}, {"_since": "soon"}):
        resp = client.get(url, params=params)
        assert resp.status_code == 400, params
        assert resp.json()["resourceType"] == "OperationOutcome"
    assert client.post(url, json={"resourceType": "Parameters"}).status_code == 405


def test_deleted_resources_are_not_in_everything(client, record):
    client.delete(f"/Condition/{record.condition['id']}").raise_for_status()
    entries, _ = _everything(client, f"/Patient/{record.patient['id']}/$everything")
    assert _key(record.condition) not in _keys(entries)
    assert len(entries) == 8


def test_encounter_everything(client, record):
    entries, _ = _everything(client, f"/Encounter/{record.encounter['id']}/$everything")
    keys = _keys(entries)
    assert len(keys) == len(set(keys))
    assert set(keys) == {_key(r) for r in (
        record.encounter, record.observation, record.medication_request,  # refer to it
        record.patient, record.practitioner, record.location, record.organization,  # it refers to
        record.medication,  # shared, referenced by a resource that refers to it
    )}
    assert client.get(f"/Encounter/{uuid.uuid4().hex}/$everything").status_code == 404
    assert client.get(f"/Observation/{record.observation['id']}/$everything").status_code == 404
