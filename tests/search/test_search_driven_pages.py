"""Pages led by a `system|code` clause's index rows (search_sql.driver) on both databases:
the same resources, in the same order, with the same links as any other search."""

from __future__ import annotations

import uuid

import httpx

from tests.search.conftest import LOINC


def _walk(client: httpx.Client, url: str, params: dict | None, relation: str) -> list[list[str]]:
    pages = []
    while url:
        bundle = client.get(url, params=params).json()
        params = None
        pages.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        url = next((lk["url"] for lk in bundle.get("link", []) if lk["relation"] == relation), "")
        if relation == "previous" and not pages[-1]:
            break
    return pages


def test_driven_pages_walk_forward_and_back_in_pk_order(client: httpx.Client) -> None:
    code = f"drv-{uuid.uuid4().hex[:8]}"
    ids = []
    for i in range(7):
        obs = {"resourceType": "Observation", "status": "final" if i % 3 else "preliminary",
               "code": {"coding": [{"system": LOINC, "code": code}]}}
        ids.append(client.post("/Observation", json=obs).json()["id"])
    client.delete(f"/Observation/{ids[4]}")
    live = [i for n, i in enumerate(ids) if n != 4]  # creation order is pk order

    pages = _walk(client, "/Observation", {"code": f"{LOINC}|{code}", "_count": "2"}, "next")
    assert [i for p in pages for i in p] == live
    assert [len(p) for p in pages] == [2, 2, 2]

    # Another clause filters inside the driven page; totals count what the pages hold.
    final = [i for n, i in enumerate(ids) if n != 4 and n % 3]
    bundle = client.get("/Observation", params={"code": f"{LOINC}|{code}", "status": "final",
                                                "_count": "2", "_total": "accurate"}).json()
    assert bundle["total"] == len(final)
    pages = _walk(client, "/Observation", {"code": f"{LOINC}|{code}", "status": "final",
                                           "_count": "2"}, "next")
    assert [i for p in pages for i in p] == final

    # From the last page back to the first with `previous`.
    last = client.get("/Observation", params={"code": f"{LOINC}|{code}", "_count": "2"}).json()
    while (nxt := next((lk["url"] for lk in last["link"] if lk["relation"] == "next"), None)):
        last = client.get(nxt).json()
    back = [[e["resource"]["id"] for e in last["entry"]]]
    prev = next((lk["url"] for lk in last["link"] if lk["relation"] == "previous"), "")
    back += _walk(client, prev, None, "previous")
    assert [i for p in reversed(back) for i in p] == live
