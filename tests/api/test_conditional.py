"""Conditional create, update and delete, and their atomicity under concurrency (R4 http.html)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

SYS = "https://akson.test/sid/conditional"


def _ident() -> str:
    return uuid.uuid4().hex


def _patient(ident: str, **extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": ident}], **extra}


def _ids(client, ident: str) -> list[str]:
    bundle = client.get("/Patient", params={"identifier": f"{SYS}|{ident}"}).json()
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_conditional_create_no_match_creates(client):
    ident = _ident()
    resp = client.post("/Patient", json=_patient(ident),
                       headers={"If-None-Exist": f"identifier={SYS}|{ident}"})
    assert resp.status_code == 201
    assert resp.headers["location"]
    assert _ids(client, ident) == [resp.json()["id"]]


def test_conditional_create_one_match_returns_it_without_creating(client):
    ident = _ident()
    first = client.post("/Patient", json=_patient(ident)).json()
    resp = client.post("/Patient", json=_patient(ident, gender="female"),
                       headers={"If-None-Exist": f"identifier={SYS}|{ident}"})
    assert resp.status_code == 200
    assert resp.json()["id"] == first["id"]
    assert "gender" not in resp.json()
    assert _ids(client, ident) == [first["id"]]


def test_conditional_create_full_url_condition(client):
    ident = _ident()
    first = client.post("/Patient", json=_patient(ident)).json()
    resp = client.post("/Patient", json=_patient(ident),
                       headers={"If-None-Exist": f"Patient?identifier={SYS}|{ident}"})
    assert resp.status_code == 200
    assert resp.json()["id"] == first["id"]


def test_conditional_create_two_matches_is_412(client):
    ident = _ident()
    client.post("/Patient", json=_patient(ident))
    client.post("/Patient", json=_patient(ident))
    resp = client.post("/Patient", json=_patient(ident),
                       headers={"If-None-Exist": f"identifier={SYS}|{ident}"})
    assert resp.status_code == 412
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert len(_ids(client, ident)) == 2


def test_conditional_create_bad_condition_is_400(client):
    resp = client.post("/Patient", json=_patient(_ident()),
                       headers={"If-None-Exist": "nonsense-param=1"})
    assert resp.status_code == 400


def test_conditional_update_no_match_creates(client):
    ident = _ident()
    resp = client.put("/Patient", params={"identifier": f"{SYS}|{ident}"}, json=_patient(ident))
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"]
    assert _ids(client, ident) == [resp.json()["id"]]


def test_conditional_update_one_match_updates(client):
    ident = _ident()
    rid = client.post("/Patient", json=_patient(ident)).json()["id"]
    resp = client.put("/Patient", params={"identifier": f"{SYS}|{ident}"},
                      json=_patient(ident, active=False))
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == rid
    assert resp.headers["etag"] == 'W/"2"'
    assert client.get(f"/Patient/{rid}").json()["active"] is False


def test_conditional_update_many_matches_is_412(client):
    ident = _ident()
    client.post("/Patient", json=_patient(ident))
    client.post("/Patient", json=_patient(ident))
    resp = client.put("/Patient", params={"identifier": f"{SYS}|{ident}"},
                      json=_patient(ident, active=True))
    assert resp.status_code == 412


def test_conditional_update_body_id_mismatch_is_400(client):
    ident = _ident()
    client.post("/Patient", json=_patient(ident))
    resp = client.put("/Patient", params={"identifier": f"{SYS}|{ident}"},
                      json={**_patient(ident), "id": "someone-else"})
    assert resp.status_code == 400


def test_conditional_delete(client):
    ident = _ident()
    rid = client.post("/Patient", json=_patient(ident)).json()["id"]
    resp = client.delete("/Patient", params={"identifier": f"{SYS}|{ident}"})
    assert resp.status_code in (200, 204)
    assert client.get(f"/Patient/{rid}").status_code == 410
    assert _ids(client, ident) == []


def test_conditional_delete_no_match_is_fine(client):
    resp = client.delete("/Patient", params={"identifier": f"{SYS}|{_ident()}"})
    assert resp.status_code in (200, 204, 404)


def test_conditional_delete_many_is_412(client):
    ident = _ident()
    client.post("/Patient", json=_patient(ident))
    client.post("/Patient", json=_patient(ident))
    resp = client.delete("/Patient", params={"identifier": f"{SYS}|{ident}"})
    assert resp.status_code == 412
    assert len(_ids(client, ident)) == 2


def test_delete_on_type_without_condition_is_refused(client):
    assert client.delete("/Patient").status_code in (400, 405, 412)


def test_concurrent_conditional_creates_make_exactly_one(server, client):
    ident = _ident()
    body = _patient(ident)
    headers = {"If-None-Exist": f"identifier={SYS}|{ident}",
               "Content-Type": "application/fhir+json"}

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.url + "/fhir", timeout=60, auth=server.auth(),
                                     limits=limits) as ac:
            return await asyncio.gather(*[
                ac.post("/Patient", json=body, headers=headers) for _ in range(50)
            ])

    responses = asyncio.run(run())
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(200) == 49, statuses
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert _ids(client, ident) == list(ids)


def test_concurrent_conditional_updates_make_exactly_one(server, client):
    ident = _ident()

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url + "/fhir", timeout=60, auth=server.auth(),
                                     limits=httpx.Limits(max_connections=20)) as ac:
            return await asyncio.gather(*[
                ac.put("/Patient", params={"identifier": f"{SYS}|{ident}"},
                       json=_patient(ident)) for _ in range(20)
            ])

    responses = asyncio.run(run())
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(200) == 19, statuses
    assert len(_ids(client, ident)) == 1


def test_concurrent_conditional_creates_with_differently_written_conditions(server, client):
    """The same condition spelled differently (escaping, type prefix) is still one condition."""
    ident = _ident()
    spellings = [f"identifier={SYS}|{ident}",
                 f"identifier={SYS.replace(':', '%3A').replace('/', '%2F')}%7C{ident}",
                 f"Patient?identifier={SYS}|{ident}",
                 f"identifier={SYS}%7C{ident}&_count=1"]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url + "/fhir", timeout=60, auth=server.auth(),
                                     limits=httpx.Limits(max_connections=40)) as ac:
            return await asyncio.gather(*[
                ac.post("/Patient", json=_patient(ident),
                        headers={"If-None-Exist": spellings[i % len(spellings)]})
                for i in range(40)
            ])

    statuses = sorted(r.status_code for r in asyncio.run(run()))
    assert statuses.count(201) == 1, statuses
    assert len(_ids(client, ident)) == 1


def test_concurrent_if_match_updates_one_wins(server, client):
    rid = client.post("/Patient", json=_patient(_ident())).json()["id"]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url + "/fhir", timeout=60, auth=server.auth(),
                                     limits=httpx.Limits(max_connections=20)) as ac:
            return await asyncio.gather(*[
                ac.put(f"/Patient/{rid}", json={**_patient(_ident()), "id": rid},
                       headers={"If-Match": 'W/"1"'}) for _ in range(20)
            ])

    statuses = sorted(r.status_code for r in asyncio.run(run()))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(412) == 19, statuses
    assert client.get(f"/Patient/{rid}").headers["etag"] == 'W/"2"'


def test_concurrent_transactions_with_if_none_exist_make_one(server, client):
    ident = _ident()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": _patient(ident),
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier={SYS}|{ident}"}}]}

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url + "/fhir", timeout=60, auth=server.auth(),
                                     limits=httpx.Limits(max_connections=20)) as ac:
            return await asyncio.gather(*[ac.post("", json=bundle) for _ in range(20)])

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:2]
    created = [r for r in responses
               if r.json()["entry"][0]["response"]["status"].startswith("201")]
    assert len(created) == 1
    assert len(_ids(client, ident)) == 1
