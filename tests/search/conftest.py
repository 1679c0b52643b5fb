"""A small clinical data set shared by the search tests, scoped by a tag unique to the run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
FNR = "https://akson.test/sid/person"  # not the real fnr OID: values are validated
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


class DataSet:
    """Resources with short names (`p1`, `ob1`, …) mapped to their server ids."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.tag = f"https://akson.test/run/{run}"
        self.vs = f"http://akson.test/vs/{run}"

    def id(self, name: str) -> str:
        return f"{self.run}-{name}"

    def name(self, res_id: str) -> str:
        return res_id.removeprefix(f"{self.run}-")

    def resources(self) -> list[dict]:
        i = self.id

        def q(value: float, code: str, unit: str | None = None) -> dict:
            return {"value": value, "unit": unit or code, "system": UCUM, "code": code}

        def comp(code: str, value: float) -> dict:
            return {"code": {"coding": [{"system": LOINC, "code": code}]},
                    "valueQuantity": q(value, "mm[Hg]", "mmHg")}

        return [
            {"resourceType": "Organization", "id": i("o1"), "name": "Legekontoret Søreng"},
            {"resourceType": "Organization", "id": i("o2"), "name": "Bergen Helse"},
            {"resourceType": "Practitioner", "id": i("pr1"), "name": [{"family": "Hansen"}]},
            {"resourceType": "Patient", "id": i("p1"),
             "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                    "code": "R"}],
                      "profile": [f"http://akson.test/profile/{self.run}"]},
             "identifier": [{"system": FNR, "value": "111",
                             "type": {"coding": [{"system": V2_0203, "code": "NI"}],
                                      "text": "Fødselsnummer"}}],
             "name": [{"family": "Øster", "given": ["Åse"]}], "gender": "female",
             "birthDate": "1980-05-17", "managingOrganization": {"reference": f"Organization/{i('o1')}"},
             "generalPractitioner": [{"reference": f"Practitioner/{i('pr1')}"}]},
            {"resourceType": "Patient", "id": i("p2"),
             "identifier": [{"system": FNR, "value": "222",
                             "type": {"coding": [{"system": V2_0203, "code": "MR"}]}}],
             "name": [{"family": "Müller"}], "gender": "male", "birthDate": "1980",
             "managingOrganization": {"reference": f"Organization/{i('o2')}"}},
            {"resourceType": "Patient", "id": i("p3"), "name": [{"family": "Aas"}],
             "gender": "other", "birthDate": "1975-01-01"},
            {"resourceType": "Observation", "id": i("ob1"), "status": "final",
             "code": {"coding": [{"system": LOINC, "code": "8480-6",
                                  "display": "Systolic blood pressure"}], "text": "Systolisk BT"},
             "subject": {"reference": f"Patient/{i('p1')}"},
             "effectiveDateTime": "2024-03-01T10:00:00+01:00", "valueQuantity": q(120, "mm[Hg]", "mmHg"),
             "component": [comp("8480-6", 120), comp("8462-4", 80)]},
            {"resourceType": "Observation", "id": i("ob2"), "status": "preliminary",
             "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
             "subject": {"reference": f"Patient/{i('p2')}"},
             "effectiveDateTime": "2024-03-01T23:30:00Z", "valueQuantity": q(72.5, "kg"),
             "component": [comp("8480-6", 95), comp("8462-4", 130)]},
            {"resourceType": "Observation", "id": i("ob3"), "status": "final",
             "code": {"coding": [{"system": SNOMED, "code": "271649006"}]},
             "subject": {"reference": f"Patient/{i('p1')}"},
             "effectivePeriod": {"start": "2023-01-01", "end": "2023-12-31"}},
            {"resourceType": "Condition", "id": i("c1"),
             "subject": {"reference": f"Patient/{i('p1')}",
                         "identifier": {"system": FNR, "value": "111"}}},
            {"resourceType": "RiskAssessment", "id": i("ra1"), "status": "final",
             "subject": {"reference": f"Patient/{i('p1')}"},
             "prediction": [{"probabilityDecimal": 0.25}]},
            {"resourceType": "RiskAssessment", "id": i("ra2"), "status": "final",
             "subject": {"reference": f"Patient/{i('p2')}"},
             "prediction": [{"probabilityDecimal": 0.8}]},
            {"resourceType": "RiskAssessment", "id": i("ra3"), "status": "final",
             "subject": {"reference": f"Patient/{i('p3')}"}},
            {"resourceType": "ValueSet", "id": i("vs1"), "url": f"{self.vs}/a", "status": "active",
             "compose": {"include": [{"system": LOINC, "concept": [{"code": "8480-6"}]}]}},
            {"resourceType": "ValueSet", "id": i("vs2"), "url": f"{self.vs}/a/b",
             "status": "active", "compose": {"include": [{"system": SNOMED}]}},
            {"resourceType": "ValueSet", "id": i("vs3"), "url": f"{self.vs}/x", "status": "active",
             "expansion": {"timestamp": "2024-01-01T00:00:00Z",
                           "contains": [{"system": LOINC, "code": "29463-7"}]}},
        ]


@pytest.fixture(scope="session")
def data(server) -> Iterator[DataSet]:
    """Load the data set once per backend (tagged, so queries can scope to it)."""
    import httpx

    ds = DataSet(uuid.uuid4().hex[:10])
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, auth=server.auth()) as c:
        for res in ds.resources():
            meta = dict(res.get("meta") or {})
            meta["tag"] = [{"system": ds.tag, "code": "t"}]
            resp = c.put(f"/{res['resourceType']}/{res['id']}", json={**res, "meta": meta})
            assert resp.status_code in (200, 201), resp.text
    yield ds


def walk_pages(client: httpx.Client, path: str, params: dict) -> tuple[list[str], list[str]]:
    """Every id of a search forward by `next`, and again backwards by `previous` from the
    last page."""
    forward: list[list[str]] = []
    url: str | None = path
    bundle: dict = {}
    while url:
        assert len(forward) < 30, "paging does not end"
        bundle = client.get(url, params=params if not forward else None).json()
        forward.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
    back: list[list[str]] = [forward[-1]]
    url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "previous"), None)
    while url:
        bundle = client.get(url).json()
        back.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "previous"), None)
    return [i for p in forward for i in p], [i for p in reversed(back) for i in p]
