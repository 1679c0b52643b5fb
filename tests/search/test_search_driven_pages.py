"""Pages led by a `system|code` clause's index rows (search_sql.driver) on both databases:
the same resources, in the same order, with the same links as any other search. Likewise
pages sorted newest first (`_sort=-date`), read from the date index on PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

from akson.store import repository
from tests.search.conftest import LOINC


def _walk(client: httpx.Client, url: str, params: dict | None, relation: str) -> list[list[str]]:
    pages: list[list[str]] = []
    while url:
        assert len(pages) < 50, "paging does not end"
        bundle = client.get(url, params=params).json()
        params = None
        pages.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        url = next((lk["url"] for lk in bundle.get("link", []) if lk["relation"] == relation), "")
        if relation == "previous" and not pages[-1]:
            break
    return pages


def _backwards(client: httpx.Client, params: dict) -> list[str]:
    """Follow `next` to the last Observation page, then `previous` back: every id, in order."""
    last = client.get("/Observation", params=params).json()
    while (nxt := next((lk["url"] for lk in last["link"] if lk["relation"] == "next"), None)):
        last = client.get(nxt).json()
    back = [[e["resource"]["id"] for e in last["entry"]]]
    prev = next((lk["url"] for lk in last["link"] if lk["relation"] == "previous"), "")
    back += _walk(client, prev, None, "previous")
    return [i for p in reversed(back) for i in p]


@pytest.mark.parametrize(("walk", "long_walk"),
                         [(repository.WALK, repository.LONG_WALK), (1, 100), (2, 2)])
def test_driven_pages_walk_forward_and_back_in_pk_order(
        client: httpx.Client, walk: int, long_walk: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same pages whether the bounded walk fills them or, with `walk` = 1 index row (the
    server runs in this process), the longer index-only walk does, or with both at 2 the usual
    statement does: from index rows alone when the other clauses read only the pk
    (`status`), through `resource` when not (`_lastUpdated`)."""
    monkeypatch.setattr(repository, "WALK", walk)
    monkeypatch.setattr(repository, "LONG_WALK", long_walk)
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
    pages = _walk(client, "/Observation", {"code": f"{LOINC}|{code}", "_lastUpdated": "gt2000",
                                           "_count": "2"}, "next")
    assert [i for p in pages for i in p] == live

    # From the last page back to the first with `previous`.
    assert _backwards(client, {"code": f"{LOINC}|{code}", "_count": "2"}) == live


def test_newest_first_pages_match_the_sort_with_ties_periods_undated_and_deleted(
        client: httpx.Client) -> None:
    """`_sort=-date` (read in index order on PostgreSQL, ix_sp_date_newest): a period sorts by
    its end, ties by creation, undated matches come last, a deleted one never; every page and
    both directions agree with the generic sort on SQLite."""
    code = f"new-{uuid.uuid4().hex[:8]}"
    dates: list[dict] = [
        {"effectiveDateTime": "2020-01-01"},                                     # a
        {"effectiveDateTime": "2021-06-01"},                                     # b
        {"effectiveDateTime": "2021-06-01"},                                     # c: ties b
        {},                                                                      # d: undated
        {"effectiveDateTime": "2019-03-03T10:00:00+01:00"},                      # e
        {"effectivePeriod": {"start": "2018-01-01", "end": "2022-01-01"}},       # f: newest end
        {"effectiveDateTime": "2030-01-01"},                                     # g: deleted
        {},                                                                      # h: undated
    ]
    ids = []
    for extra in dates:
        obs = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": LOINC, "code": code}]}, **extra}
        ids.append(client.post("/Observation", json=obs).json()["id"])
    a, b, c, d, e, f, g, h = ids
    client.delete(f"/Observation/{g}")
    expected = [f, b, c, a, e, d, h]
    query = {"code": f"{LOINC}|{code}", "_sort": "-date"}
    for count in ("1", "2", "3", "10"):
        pages = _walk(client, "/Observation", {**query, "_count": count}, "next")
        assert [i for p in pages for i in p] == expected, count

    assert _backwards(client, {**query, "_count": "2"}) == expected


def test_newest_first_takes_a_resource_once_at_its_newest_of_several_dates(
        client: httpx.Client) -> None:
    """A parameter with several values (Encounter.location.period) sorts descending by the
    latest of them, and the resource appears once."""
    tag = f"multi-{uuid.uuid4().hex[:8]}"

    def encounter(*periods: tuple[str, str]) -> str:
        enc = {"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                         "code": "AMB"},
               "meta": {"tag": [{"system": "https://akson.test/tag", "code": tag}]},
               "location": [{"location": {"display": "Rom"}, "period": {"start": s, "end": e}}
                            for s, e in periods]}
        return str(client.post("/Encounter", json=enc).json()["id"])

    one = encounter(("2023-04-01", "2023-05-02"), ("2019-01-01", "2019-01-02"),
                    ("2023-05-01", "2023-05-02"))  # two values end together: still once
    two = encounter(("2021-01-01", "2021-01-02"))
    three = encounter(("2022-01-01", "2022-01-02"), ("2020-01-01", "2020-01-02"))
    four = encounter(("2018-01-01", "2018-01-02"))
    five = encounter(("2024-01-01", "2024-01-02"))
    six = encounter(("2016-01-01", "2016-01-02"), ("2017-01-01", "2017-01-02"))
    query = {"_tag": f"https://akson.test/tag|{tag}", "_sort": "-location-period"}
    for count in ("1", "2", "3", "5", "10"):
        pages = _walk(client, "/Encounter", {**query, "_count": count}, "next")
        assert [i for p in pages for i in p] == [five, one, three, two, four, six], count


def test_driven_totals_count_each_live_visible_match_once(client: httpx.Client) -> None:
    """`_total=accurate` of a search led by `system|code` counts from the index rows
    (Session._driven_count_sql): a deleted match, one updated to another code, and one the
    caller may not see (NORS, hidden from system clients) are not counted; one updated
    keeping its code, or carrying the code twice, is counted once — as the pages show."""
    code = f"cnt-{uuid.uuid4().hex[:8]}"

    def obs(status: str = "final", twice: bool = False, **more: object) -> dict:
        coding = [{"system": LOINC, "code": code}] * (2 if twice else 1)
        return {"resourceType": "Observation", "status": status, "code": {"coding": coding},
                "effectiveDateTime": "2024-05-01", **more}

    ids = [client.post("/Observation", json=obs(status=s)).json()["id"]
           for s in ("final", "final", "preliminary", "final", "final")]
    ids.append(client.post("/Observation", json=obs(twice=True)).json()["id"])
    client.post("/Observation", json=obs(meta={"security": [
        {"system": "http://helsedir.no/fhir/CodeSystem/no-kodeverk-9603", "code": "NORS"}]}))
    client.delete(f"/Observation/{ids[0]}")
    moved = obs()
    moved["code"]["coding"][0]["code"] = code + "-other"
    client.put(f"/Observation/{ids[1]}", json={**moved, "id": ids[1]})
    client.put(f"/Observation/{ids[3]}", json={**obs(), "id": ids[3]})  # a second version
    live = [ids[2], ids[3], ids[4], ids[5]]

    for more, expected in (({}, live), ({"status": "final"}, [ids[3], ids[4], ids[5]]),
                           ({"_sort": "-date"}, live),
                           # a clause on another column of the row: counted from `resource`
                           ({"_id": f"{ids[0]},{ids[2]},{ids[4]}"}, [ids[2], ids[4]]),
                           ({"_lastUpdated": "gt2000"}, live)):
        params = {"code": f"{LOINC}|{code}", "_total": "accurate", "_count": "1", **more}
        bundle = client.get("/Observation", params=params).json()
        assert bundle["total"] == len(expected), more
        pages = _walk(client, "/Observation", {**params, "_total": "none"}, "next")
        assert sorted(i for p in pages for i in p) == sorted(expected), more


@pytest.mark.parametrize("walk", [repository.HAS_WALK, 2])
def test_has_pages_probe_only_live_visible_referrers(client: httpx.Client, walk: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`Patient?_has:Observation:patient:code=` (a bounded walk of Patients probing a hashed
    set of matches on PostgreSQL, Session._has_walk_sql): a patient is found through a live
    Observation the caller may see, once however many match, in pk order on every page and
    backwards; a deleted, recoded or NORS-labelled Observation finds nobody. A walk too short
    to fill a page (`walk` = 2, with the server in this process) leaves it to the planner."""
    monkeypatch.setattr(repository, "HAS_WALK", walk)
    code = f"has-{uuid.uuid4().hex[:8]}"
    nors = {"security": [{"system": "http://helsedir.no/fhir/CodeSystem/no-kodeverk-9603",
                          "code": "NORS"}]}

    def obs(pid: str, meta: dict | None = None) -> str:
        body = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": f"Patient/{pid}"}, **({"meta": meta} if meta else {})}
        return str(client.post("/Observation", json=body).json()["id"])

    pids = [client.post("/Patient", json={"resourceType": "Patient", "gender": g}).json()["id"]
            for g in ("female", "male", "female", "male", "female", "female", "male")]
    obs(pids[0]), obs(pids[0])                      # twice: found once
    obs(pids[2]), obs(pids[3]), obs(pids[5]), obs(pids[6])
    client.delete(f"/Observation/{obs(pids[1])}")   # deleted: finds nobody
    obs(pids[4], meta=nors)                         # hidden from this client
    recoded = obs(pids[3])
    client.put(f"/Observation/{recoded}", json={
        "resourceType": "Observation", "id": recoded, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "other"}]},
        "subject": {"reference": f"Patient/{pids[4]}"}})  # moved to pids[4], other code
    found = [pids[0], pids[2], pids[3], pids[5], pids[6]]

    params = {"_has:Observation:patient:code": f"{LOINC}|{code}", "_count": "2"}
    pages = _walk(client, "/Patient", params, "next")
    assert [i for p in pages for i in p] == found
    assert [len(p) for p in pages] == [2, 2, 1]
    last = client.get("/Patient", params=params).json()
    while (nxt := next((lk["url"] for lk in last["link"] if lk["relation"] == "next"), None)):
        last = client.get(nxt).json()
    prev = next(lk["url"] for lk in last["link"] if lk["relation"] == "previous")
    back = _walk(client, prev, None, "previous")
    assert [i for p in reversed(back) for i in p] + [e["resource"]["id"] for e in
                                                     last["entry"]] == found
    # with another clause, and with one on the Observation's own row (`_id`): the same rules
    females = client.get("/Patient", params={**params, "gender": "female", "_count": "10"}).json()
    assert [e["resource"]["id"] for e in females["entry"]] == [pids[0], pids[2], pids[5]]
    by_id = client.get("/Patient", params={"_has:Observation:patient:_id": recoded}).json()
    assert [e["resource"]["id"] for e in by_id.get("entry", [])] == [pids[4]]


@pytest.mark.parametrize("few", [repository.FEW_IN_RANGE, 0])
def test_index_pages_keep_only_live_visible_matches_in_pk_order(
        client: httpx.Client, few: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsorted page whose clauses read only index rows (Session._index_page_sql: its pks
    come from `ix_resource_type_pk` and the index tables) shows what the usual statement
    would: a date range over periods (one row per Encounter, so tested on that row; periods
    longer than `search_sql.SHORT_SPAN` read from their own index), without
    deleted or NORS-labelled matches, in pk order both ways, whether all matches are found
    first (few) or read in pk order (`few` = 0); a clause that needs no index row
    (`:missing=true`) still finds the undated."""
    monkeypatch.setattr(repository, "FEW_IN_RANGE", few)
    tag = f"idx-{uuid.uuid4().hex[:8]}"

    def enc(start: str | None, end: str | None = None, **more: object) -> str:
        body: dict = {"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "AMB"}, "meta": {"tag": [{"system": LOINC, "code": tag}]}}
        if start:
            body["period"] = {"start": start, **({"end": end} if end else {})}
        body["meta"] = {**body["meta"], **more.pop("meta", {})}  # type: ignore[dict-item]
        return str(client.post("/Encounter", json={**body, **more}).json()["id"])

    ids = [enc("1961-01-10", "1961-01-11"), enc("1960-12-30", "1961-01-02"),  # overlaps
           enc("1961-02-01"), enc("1960-06-01", "1960-06-02"),                 # outside
           enc("1961-01-20"), enc(None),                                       # undated
           enc("1955-03-01", "1961-01-05"), enc("1950-01-01"),  # long: reach in from far back
           enc("1950-01-01", "1960-12-31")]                     # long, ends before
    gone = enc("1961-01-15")
    client.delete(f"/Encounter/{gone}")
    enc("1961-01-16", meta={"security": [
        {"system": "http://helsedir.no/fhir/CodeSystem/no-kodeverk-9603", "code": "NORS"}]})
    params = {"_tag": tag, "date": ["ge1961-01-01", "lt1961-02-01"],  # `_tag` leads no walk
              "_count": "2"}
    pages = _walk(client, "/Encounter", params, "next")
    assert [i for p in pages for i in p] == [ids[0], ids[1], ids[4], ids[6], ids[7]]
    last = client.get("/Encounter", params=params).json()
    nxt = next(lk["url"] for lk in last["link"] if lk["relation"] == "next")
    last = client.get(nxt).json()
    prev = next(lk["url"] for lk in last["link"] if lk["relation"] == "previous")
    assert [i for p in _walk(client, prev, None, "previous") for i in p] == [ids[0], ids[1]]
    undated = client.get("/Encounter", params={"_tag": tag,
                                               "date:missing": "true"}).json()
    assert [e["resource"]["id"] for e in undated["entry"]] == [ids[5]]
    # only clauses that hold without an index row: a deleted resource (it has none) must
    # not pass them
    gone_undated = enc(None)
    client.delete(f"/Encounter/{gone_undated}")
    found = {i for p in _walk(client, "/Encounter", {"date:missing": "true",
                                                     "status:not": "cancelled",
                                                     "_count": "500"}, "next") for i in p}
    assert ids[5] in found and gone_undated not in found


@pytest.mark.parametrize("few", [repository.FEW_IN_RANGE, 0])
def test_name_prefix_pages_keep_only_live_visible_matches_in_pk_order(
        client: httpx.Client, few: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page led by a name prefix's index rows (search_sql.leading_rows) shows what the usual
    statement would: each matching Patient once though several of its names match, without
    deleted or NORS-labelled ones, filtered by the other clauses, in pk order both ways."""
    monkeypatch.setattr(repository, "FEW_IN_RANGE", few)
    stem = f"Pfx{uuid.uuid4().hex[:8]}"

    def patient(family: str, gender: str = "female", **more: object) -> str:
        body = {"resourceType": "Patient", "gender": gender,
                "name": [{"family": family}, {"family": family + "sen"}], **more}
        return str(client.post("/Patient", json=body).json()["id"])

    ids = [patient(stem + "a"), patient(stem + "b", "male"), patient(stem + "c"),
           patient(stem + "d"), patient(stem.lower() + "e")]
    client.delete(f"/Patient/{patient(stem + 'f')}")
    patient(stem + "g", meta={"security": [
        {"system": "http://helsedir.no/fhir/CodeSystem/no-kodeverk-9603", "code": "NORS"}]})
    patient("Other" + stem)
    pages = _walk(client, "/Patient", {"family": stem, "_count": "2"}, "next")
    assert [i for p in pages for i in p] == ids
    females = _walk(client, "/Patient", {"family": stem, "gender": "female", "_count": "2"},
                    "next")
    assert [i for p in females for i in p] == [ids[0], ids[2], ids[3], ids[4]]
    first = client.get("/Patient", params={"family": stem, "_count": "2"}).json()
    nxt = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
    second = client.get(nxt).json()
    prev = next(lk["url"] for lk in second["link"] if lk["relation"] == "previous")
    assert [i for p in _walk(client, prev, None, "previous") for i in p] == ids[:2]


def test_a_date_range_over_several_values_is_met_by_any_of_them(client: httpx.Client) -> None:
    """`date=geX&date=ltY` holds when some value is ≥ X and some value is < Y
    (search.html#combining). Observation.date can be a Timing with several events, so its two
    clauses are not tested on one index row (search_sql.same_row_ranges); an Encounter's one
    period must meet both."""
    tag = f"rng-{uuid.uuid4().hex[:8]}"
    meta = {"tag": [{"system": LOINC, "code": tag}]}
    events = client.post("/Observation", json={
        "resourceType": "Observation", "status": "final", "meta": meta,
        "code": {"coding": [{"system": LOINC, "code": "x"}]},
        "effectiveTiming": {"event": ["2019-06-01", "2021-06-01"]}}).json()["id"]
    params = {"_tag": tag, "date": ["ge2021-01-01", "lt2020-01-01"]}
    found = client.get("/Observation", params=params).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [events]
    client.post("/Encounter", json={
        "resourceType": "Encounter", "status": "finished", "meta": meta,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "period": {"start": "2019-06-01", "end": "2019-06-02"}})
    assert "entry" not in client.get("/Encounter", params=params).json()
