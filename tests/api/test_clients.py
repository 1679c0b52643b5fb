"""Real FHIR client libraries work against Akson without special casing."""

from __future__ import annotations

import uuid

import pytest
from fhirclient import server as fhir_server
from fhirclient.models import humanname, identifier, patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

SYS = "https://akson.test/sid/clients"


@pytest.fixture
def base(server) -> str:
    return f"{server.url}/fhir"


@pytest.fixture
def bearer(server) -> str:
    """The Authorization header value of the server's built-in system client (system/*.*)."""
    return str(server.auth().header)


def _fhirclient(base: str, bearer: str) -> fhir_server.FHIRServer:
    """fhirclient's server object; its requests session sends the token with every call."""
    srv = fhir_server.FHIRServer(None, base_uri=base + "/")
    srv.session.headers["Authorization"] = bearer
    return srv


def test_fhirpy_crud_and_search(base, bearer):
    fhir = SyncFHIRClient(base, authorization=bearer)
    ident = uuid.uuid4().hex
    pat = fhir.resource("Patient", identifier=[{"system": SYS, "value": ident}],
                        name=[{"family": "Søreng", "given": ["Kari"]}], gender="female")
    pat.save()
    assert pat.id
    assert pat["meta"]["versionId"] == "1"

    read = fhir.reference("Patient", pat.id).to_resource()
    assert read["name"][0]["family"] == "Søreng"

    read["active"] = True
    read.save()
    assert read["meta"]["versionId"] == "2"
    assert fhir.reference("Patient", pat.id).to_resource()["active"] is True

    found = fhir.resources("Patient").search(identifier=f"{SYS}|{ident}").fetch_all()
    assert [p.id for p in found] == [pat.id]
    found = fhir.resources("Patient").search(family="sore", identifier=f"{SYS}|{ident}").fetch()
    assert [p.id for p in found] == [pat.id]
    # (fhirpy's .count() adds Aidbox's `_totalMethod`, which a strict server refuses; the
    # standard way is _count=0 and Bundle.total.)
    raw = fhir.resources("Patient").search(identifier=f"{SYS}|{ident}").limit(0).fetch_raw()
    assert raw["total"] == 1

    read.delete()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", pat.id).to_resource()
    assert fhir.resources("Patient").search(identifier=f"{SYS}|{ident}").fetch_all() == []


def test_fhirpy_paging_fetch_all(base, bearer):
    fhir = SyncFHIRClient(base, authorization=bearer)
    system = f"{SYS}/{uuid.uuid4().hex}"
    made = set()
    for i in range(5):
        p = fhir.resource("Patient", identifier=[{"system": system, "value": str(i)}])
        p.save()
        made.add(p.id)
    found = fhir.resources("Patient").search(identifier=f"{system}|").limit(2).fetch_all()
    assert sorted(p.id for p in found) == sorted(made)


def test_fhirpy_update_and_get(base, bearer):
    # fhirpy's .patch() sends an Aidbox-style merge patch, which is not a FHIR patch format.
    fhir = SyncFHIRClient(base, authorization=bearer)
    ident = uuid.uuid4().hex
    pat = fhir.resource("Patient", identifier=[{"system": SYS, "value": ident}])
    pat.save()
    pat["gender"] = "male"
    pat.update()
    got = fhir.resources("Patient").search(identifier=f"{SYS}|{ident}").get()
    assert got.id == pat.id and got["gender"] == "male"
    assert got["meta"]["versionId"] == "2"


def test_fhirclient_crud_and_search(base, bearer):
    srv = _fhirclient(base, bearer)
    ident = uuid.uuid4().hex
    pat = patient.Patient()
    ident_el = identifier.Identifier()
    ident_el.system, ident_el.value = SYS, ident
    pat.identifier = [ident_el]
    name = humanname.HumanName()
    name.family, name.given = "Ærlig", ["Ola"]
    pat.name = [name]
    created = pat.create(srv)
    assert created and created["resourceType"] == "Patient"
    rid = created["id"]

    read = patient.Patient.read(rid, srv)
    assert read.name[0].family == "Ærlig"
    assert read.meta.versionId == "1"

    read.gender = "male"
    updated = read.update()
    assert updated["meta"]["versionId"] == "2"
    assert patient.Patient.read(rid, srv).gender == "male"

    search = patient.Patient.where(struct={"identifier": f"{SYS}|{ident}"})
    found = list(search.perform_resources_iter(srv))
    assert [p.id for p in found] == [rid]
    found = list(patient.Patient.where(struct={"family": "aerlig",
                                               "identifier": f"{SYS}|{ident}"})
                 .perform_resources_iter(srv))
    assert [p.id for p in found] == [rid]

    read.delete()
    import requests

    with pytest.raises(requests.exceptions.HTTPError) as err:
        patient.Patient.read(rid, srv)
    assert err.value.response.status_code == 410


def test_fhirclient_paging(base, bearer):
    srv = _fhirclient(base, bearer)
    system = f"{SYS}/{uuid.uuid4().hex}"
    made = set()
    for i in range(5):
        pat = patient.Patient({"identifier": [{"system": system, "value": str(i)}]})
        made.add(pat.create(srv)["id"])
    search = patient.Patient.where(struct={"identifier": f"{system}|", "_count": "2"})
    found = [p.id for p in search.perform_resources_iter(srv)]
    assert sorted(found) == sorted(made)


def test_fhirclient_capability_statement(base, bearer):
    srv = _fhirclient(base, bearer)
    srv.get_capability()
    assert srv.capabilityStatement.fhirVersion == "4.0.1"
