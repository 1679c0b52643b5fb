"""History at instance, type and system level (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

import sqlite3
import uuid

SYS = "https://akson.test/sid/history"


def _patient(**extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": uuid.uuid4().hex}],
            **extra}


def _follow(client, url: str, params: dict | None = None) -> list[dict]:
    """Every entry of a history, following `next` until it is exhausted."""
    resp = client.get(url, params=params)
    entries: list[dict] = []
    for _ in range(1000):
        assert resp.status_code == 200, resp.text
        bundle = resp.json()
        assert bundle["type"] == "history"
        entries += bundle.get("entry", [])
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            return entries
        resp = client.get(nxt[0])
    raise AssertionError("history paging did not end")


def _key(entry: dict) -> tuple[str, str]:
    return entry["fullUrl"], entry["response"]["etag"]


def test_instance_history_newest_first_with_deletion(client):
    rid = client.post("/Patient", json=_patient(gender="male")).json()["id"]
    client.put(f"/Patient/{rid}", json={**_patient(gender="female"), "id": rid})
    client.delete(f"/Patient/{rid}")
    client.put(f"/Patient/{rid}", json={**_patient(gender="other"), "id": rid})
    bundle = client.get(f"/Patient/{rid}/_history").json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    entries = bundle["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert entries[0]["resource"]["gender"] == "other"
    assert entries[1]["request"]["method"] == "DELETE"
    assert "resource" not in entries[1]
    assert entries[2]["resource"]["gender"] == "female"
    assert entries[2]["request"] == {"method": "PUT", "url": f"Patient/{rid}"}
    assert entries[3]["request"]["method"] == "POST"
    assert entries[3]["response"]["status"].startswith("201")
    assert all("lastModified" in e["response"] for e in entries)
    assert bundle.get("total") in (None, 4)


def test_instance_history_of_unknown_is_404(client):
    assert client.get(f"/Patient/{uuid.uuid4().hex}/_history").status_code == 404


def test_instance_history_paging(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    for _ in range(6):
        client.put(f"/Patient/{rid}", json={**_patient(), "id": rid})
    entries = _follow(client, f"/Patient/{rid}/_history", {"_count": "2"})
    assert [e["response"]["etag"] for e in entries] == [f'W/"{n}"' for n in range(7, 0, -1)]


def test_instance_history_since(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    v2 = client.put(f"/Patient/{rid}", json={**_patient(), "id": rid}).json()
    client.put(f"/Patient/{rid}", json={**_patient(), "id": rid})
    since = v2["meta"]["lastUpdated"]
    entries = client.get(f"/Patient/{rid}/_history", params={"_since": since}).json()["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"']


def test_type_history_since_count_and_paging(client):
    first = client.post("/Patient", json=_patient()).json()
    since = first["meta"]["lastUpdated"]
    mine = {first["id"]}
    for _ in range(4):
        mine.add(client.post("/Patient", json=_patient()).json()["id"])
    rid = sorted(mine)[0]
    client.put(f"/Patient/{rid}", json={**_patient(), "id": rid})
    # an Observation must not show up in the Patient type history
    client.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                      "code": {"text": "x"}})
    entries = _follow(client, "/Patient/_history", {"_since": since, "_count": "2"})
    keys = [_key(e) for e in entries]
    assert len(keys) == len(set(keys)), "a history page repeated an entry"
    assert all("/Patient/" in k[0] for k in keys)
    base = str(client.base_url).rstrip("/")
    expected = {(f"{base}/Patient/{i}", 'W/"1"') for i in mine} | \
        {(f"{base}/Patient/{rid}", 'W/"2"')}
    assert expected <= set(keys), "history paging missed versions"


def test_system_history_since_and_paging(client):
    first = client.post("/Patient", json=_patient()).json()
    since = first["meta"]["lastUpdated"]
    obs = client.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                            "code": {"text": "x"}}).json()
    client.delete(f"/Patient/{first['id']}")
    entries = _follow(client, "/_history", {"_since": since, "_count": "1"})
    keys = [_key(e) for e in entries]
    assert len(keys) == len(set(keys))
    base = str(client.base_url).rstrip("/")
    assert {(f"{base}/Patient/{first['id']}", 'W/"1"'),
            (f"{base}/Patient/{first['id']}", 'W/"2"'),
            (f"{base}/Observation/{obs['id']}", 'W/"1"')} <= set(keys)


def test_history_since_in_future_is_empty(client):
    bundle = client.get("/_history", params={"_since": "2999-01-01T00:00:00Z"}).json()
    assert not bundle.get("entry")


def test_history_bad_parameters_are_400(client):
    assert client.get("/Patient/_history", params={"_count": "abc"}).status_code == 400
    assert client.get("/Patient/_history", params={"_since": "yesterday"}).status_code == 400
    assert client.get("/Patient/_history", params={"_cursor": "x"}).status_code == 400
    # beyond a 64-bit row number (SQLite would overflow): 400, not 500
    assert client.get("/Patient/_history", params={"_cursor": "9" * 30}).status_code == 400
    assert client.get("/Patient/_history", params={"bogus": "1"}).status_code == 400


def _version_rows(db_url: str, res_id: str) -> list[tuple[int, bool]]:
    """(version, content stored) of every `resource_version` row of one resource."""
    sql = ("SELECT version, content IS NOT NULL FROM resource_version WHERE res_id = %s "
           "ORDER BY version")
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return [(int(v), bool(c)) for v, c in conn.execute(sql.replace("%s", "?"), (res_id,))]
    import psycopg

    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        return [(int(v), bool(c)) for v, c in conn.execute(sql, (res_id,))]


def test_every_version_reads_back_while_the_current_one_is_stored_once(client, server):
    """ADR 0009: the current version's JSON lives in `resource` only; superseded versions keep
    their own. vread and history must return each version's own content through
    update, delete and re-creation."""
    rid = client.post("/Patient", json=_patient(gender="male")).json()["id"]
    assert _version_rows(server.app.settings.database_url, rid) == [(1, False)]
    assert client.put(f"/Patient/{rid}", json={**_patient(gender="female"), "id": rid}
                      ).status_code == 200
    assert client.delete(f"/Patient/{rid}").status_code in (200, 204)
    assert client.put(f"/Patient/{rid}", json={**_patient(gender="other"), "id": rid}
                      ).status_code == 201
    assert _version_rows(server.app.settings.database_url, rid) == [
        (1, True), (2, True), (3, False), (4, False)]
    assert client.get(f"/Patient/{rid}/_history/1").json()["gender"] == "male"
    assert client.get(f"/Patient/{rid}/_history/2").json()["gender"] == "female"
    assert client.get(f"/Patient/{rid}/_history/3").status_code == 410
    assert client.get(f"/Patient/{rid}/_history/4").json()["gender"] == "other"
    history = client.get(f"/Patient/{rid}/_history").json()["entry"]
    assert [e.get("resource", {}).get("gender") for e in history] == [
        "other", None, "female", "male"]
