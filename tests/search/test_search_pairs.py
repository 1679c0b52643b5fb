"""Paired index rows (akson.fhir.pairs, ADR 0018) on both databases: a code with its date and
with its patient. Searches that use them (a code in a date range, led by the pairs on
PostgreSQL; `_has` by code) find exactly what they find without them, in the same order and
pages, also for resources with several date rows, whose pair holds only their hull."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from akson.fhir import pairs
from akson.fhir.search import index_rows
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.database import sqlalchemy_url
from akson.store.repository import Session
from akson.store.search_sql import compile_where
from tests.conftest import ThreadServer
from tests.search.conftest import LOINC


class Dated:
    """Observations of one new code in, around and outside 2019, and the patients they are of."""

    def __init__(self, client: httpx.Client) -> None:
        self.code = f"pair-{uuid.uuid4().hex[:8]}"
        self.other = f"{self.code}-other"
        self.ids: dict[str, str] = {}
        for name in ("p1", "p2", "p3"):
            self.ids[name] = self._post(client, {"resourceType": "Patient"})

        def obs(name: str, patient: str, dated: dict, *codes: str) -> None:
            codings = [{"system": LOINC, "code": c} for c in codes or (self.code,)]
            self.ids[name] = self._post(client, {
                "resourceType": "Observation", "status": "final", "code": {"coding": codings},
                "subject": {"reference": f"Patient/{self.ids[patient]}"}, **dated})

        obs("o1", "p1", {"effectiveDateTime": "2019-06-01"})
        obs("o2", "p1", {"effectivePeriod": {"start": "2018-12-01", "end": "2019-02-01"}})
        # Two date rows, 2018 and 2021: it matches `ge2019&lt2020` (each clause by one row),
        # not `eq2019`; its pair holds the hull 2018–2021.
        obs("o3", "p1", {"effectiveTiming": {"event": ["2018-05-01", "2021-05-01"]}})
        obs("o4", "p1", {"effectiveDateTime": "2020-03-01"})
        obs("o5", "p1", {})
        obs("o6", "p2", {"effectiveDateTime": "2019-06-01"}, self.other)
        obs("o7", "p1", {"effectiveDateTime": "2019-12-31T23:30:00+01:00"})
        obs("o8", "p1", {"effectiveDateTime": "2019-03-01"})
        obs("o9", "p1", {"effectiveDateTime": "2019-04-01"}, self.code, self.other)
        assert client.delete(f"/Observation/{self.ids['o8']}").status_code in (200, 204)
        cond = {"resourceType": "Condition", "subject": {"reference": f"Patient/{self.ids['p3']}"},
                "code": {"coding": [{"system": LOINC, "code": self.code}]}}
        self.ids["c1"] = self._post(client, cond)

    @staticmethod
    def _post(client: httpx.Client, body: dict) -> str:
        resp = client.post(f"/{body['resourceType']}", json=body)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def names(self, ids: list[str]) -> list[str]:
        back = {v: k for k, v in self.ids.items()}
        return [back.get(i, i) for i in ids]


@pytest.fixture
def dated(client: httpx.Client) -> Dated:
    return Dated(client)


@pytest.fixture
def without_pairs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Searches in this process as if every pair were still being built (none is used)."""
    monkeypatch.setattr(Session, "_ready_pairs", lambda self: frozenset())
    yield


def _pages(client: httpx.Client, path: str, params: dict | None,
           relation: str = "next") -> tuple[list[list[str]], str | None]:
    """The pages from `path` on, following `relation` links, and the last page's link the
    other way (to page back from it)."""
    pages: list[list[str]] = []
    url: str | None = path
    turn = None
    while url:
        assert len(pages) < 20, "paging does not end"
        bundle = client.get(url, params=params if not pages else None).json()
        pages.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        links = {lk["relation"]: lk["url"] for lk in bundle.get("link", [])}
        url = links.get(relation)
        turn = links.get("previous" if relation == "next" else "next")
    return pages, turn


DATE_CASES = [
    (["ge2019-01-01", "lt2020-01-01"], ["o1", "o2", "o3", "o7", "o9"]),
    (["eq2019"], ["o1", "o7", "o9"]),
    (["2019-06"], ["o1"]),
    (["sa2018"], ["o1", "o3", "o4", "o7", "o9"]),
    (["eb2019"], ["o3"]),
    (["le2018-12-31"], ["o2", "o3"]),
    (["gt2020-12-31"], ["o3"]),
    (["ne2019"], ["o2", "o3", "o4"]),
    (["lt2019-01-01,ge2021-01-01"], ["o2", "o3"]),
]


@pytest.mark.parametrize(("dates", "expected"), DATE_CASES)
def test_a_code_in_a_date_range(client: httpx.Client, dated: Dated, dates: list, expected: list,
                                request: pytest.FixtureRequest) -> None:
    """Every date prefix, with and without the pairs: the same matches in pk order (creation
    order), one page or pages of two."""
    params = {"code": f"{LOINC}|{dated.code}", "date": dates}
    whole, _ = _pages(client, "/Observation", {**params, "_count": "50"})
    assert dated.names(whole[0]) == expected
    paged, turn = _pages(client, "/Observation", {**params, "_count": "2"})
    assert [i for p in paged for i in p] == whole[0]
    if turn:  # and back from the last page, page by page
        back, _ = _pages(client, turn, None, "previous")
        assert [i for p in reversed(back) for i in p] == [i for p in paged[:-1] for i in p]
    request.getfixturevalue("without_pairs")
    assert _pages(client, "/Observation", {**params, "_count": "50"})[0] == whole
    assert _pages(client, "/Observation", {**params, "_count": "2"})[0] == paged


def test_pairs_lead_the_page_on_postgresql(client: httpx.Client, dated: Dated, backend: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The operators' plan names the pairs' rows: on PostgreSQL a code in a date range is led
    by them; `_has` by code probes them on both databases. Not while they are being built."""
    monkeypatch.setenv("AKSON_ENABLE_EXPLAIN", "1")

    def plan(path: str, params: dict) -> str:
        resp = client.get(path, params={**params, "_explain": "true"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["issue"][0]["diagnostics"])

    dated_query = {"code": f"{LOINC}|{dated.code}", "date": "eq2019"}
    has_query = {"_has:Observation:patient:code": f"{LOINC}|{dated.code}"}
    assert ("sp_composite" in plan("/Observation", dated_query)) == (backend == "postgresql")
    assert "sp_composite" in plan("/Patient", has_query)
    monkeypatch.setattr(Session, "_ready_pairs", lambda self: frozenset())
    assert "sp_composite" not in plan("/Observation", dated_query)
    assert "sp_composite" not in plan("/Patient", has_query)


@pytest.mark.parametrize("use_pairs", [True, False])
def test_has_by_code(client: httpx.Client, dated: Dated, use_pairs: bool,
                     request: pytest.FixtureRequest) -> None:
    """`_has` by a code, with a system or without, several codes ORed, a Condition's: the
    patients with such a resource, and only live resources count."""
    if not use_pairs:
        request.getfixturevalue("without_pairs")

    def has(target: str, value: str, **more: str) -> list[str]:
        bundle = client.get("/Patient", params={f"_has:{target}:patient:code": value, **more})
        assert bundle.status_code == 200, bundle.text
        return dated.names([e["resource"]["id"] for e in bundle.json().get("entry", [])])

    assert has("Observation", f"{LOINC}|{dated.code}") == ["p1"]
    assert has("Observation", dated.code) == ["p1"]
    assert has("Observation", f"{LOINC}|{dated.other}") == ["p1", "p2"]
    assert has("Observation", f"{LOINC}|{dated.other},{LOINC}|{dated.code}") == ["p1", "p2"]
    assert has("Condition", f"{LOINC}|{dated.code}") == ["p3"]
    assert has("Observation", f"http://snomed.info/sct|{dated.code}") == []
    client.delete(f"/Observation/{dated.ids['o6']}")
    assert has("Observation", f"{LOINC}|{dated.other}") == ["p1"]


def _pair_rows(server: ThreadServer, res_id: str) -> list[tuple]:
    engine = sa.create_engine(sqlalchemy_url(server.app.settings.database_url))
    try:
        with engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(sa.text(
                "SELECT c.param, c.system, c.code, c.v_system, c.v_code, c.v_low, c.v_high "
                "FROM sp_composite c JOIN resource r ON r.pk = c.res_pk WHERE r.res_id = :id "
                "AND c.param LIKE '%+%'"), {"id": res_id}))
    finally:
        engine.dispose()


def test_rows_follow_every_write(client: httpx.Client, server: ThreadServer,
                                 dated: Dated) -> None:
    """A create writes the pairs, an update replaces them, a delete removes them."""
    from akson.fhir.dates import date_range

    o3 = dated.ids["o3"]
    lo, hi = date_range("2018-05-01")[0], date_range("2021-05-01")[1]
    patient = dated.ids["p1"]
    assert _pair_rows(server, o3) == [
        ("code+date", LOINC, dated.code, None, None, lo, hi),
        ("code+patient", LOINC, dated.code, "Patient", patient, None, None)]
    body = client.get(f"/Observation/{o3}").json()
    body["effectiveTiming"] = {"event": ["2022-01-01"]}
    body["code"]["coding"][0]["code"] = dated.other
    assert client.put(f"/Observation/{o3}", json=body).status_code == 200
    lo, hi = date_range("2022-01-01")
    assert _pair_rows(server, o3) == [
        ("code+date", LOINC, dated.other, None, None, lo, hi),
        ("code+patient", LOINC, dated.other, "Patient", patient, None, None)]
    assert client.delete(f"/Observation/{o3}").status_code in (200, 204)
    assert _pair_rows(server, o3) == []


def test_buckets_are_as_wide_as_the_short_span() -> None:
    """A short hull lies in its bucket or reaches into the next: the walk's bucket range and
    the long hulls' index both rely on the two widths being one."""
    from akson.store.search_sql import SHORT_SPAN

    assert pairs.BUCKET == SHORT_SPAN


def test_pair_rows_agree_with_the_index_rows() -> None:
    """Derived from the token, date and reference rows: a coding without a system pairs too;
    no date or no patient, no pair; a type without pairs has none."""
    registry = SearchParamRegistry.default()
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"code": "x"}, {"system": LOINC, "code": "y"}]},
           "subject": {"reference": "Patient/a"}}
    _, extra = index_rows(obs, registry)
    assert [r for r in extra.composites if "+" in r[0]] == [
        ("code+patient", None, "x", "Patient", "a", None, None, None, None),
        ("code+patient", LOINC, "y", "Patient", "a", None, None, None, None)]
    _, extra = index_rows({"resourceType": "Encounter", "status": "planned",
                           "class": {"code": "AMB"}, "subject": {"reference": "Patient/a"}},
                          registry)
    assert not [r for r in extra.composites if "+" in r[0]]


def test_has_by_pair_keeps_a_policy_on_the_referrer() -> None:
    """A policy's predicates on the Observation that read only its pk (a label rule's) apply
    to the pair row's `res_pk`; predicates on other columns, which a pair does not hold,
    keep the general form, which joins the Observation's row."""
    from akson.fhir.search import parse
    from akson.store.search_sql import Where

    registry = SearchParamRegistry.default()
    query = parse("Patient", [("_has:Observation:patient:code", f"{LOINC}|x")],
                  registry=registry)
    ready = frozenset(p.name for p in pairs.PAIRS)
    assert "sp_composite" in compile_where(query, pairs=ready).render()

    def scope(column: str):
        def policy(alias: str, res_type: str) -> Where:
            where = Where()
            where.add(f"{alias}.{column} NOT IN (SELECT 1 WHERE %s = 'hidden')", "hidden")
            return where
        return policy

    labelled = compile_where(query, pairs=ready, scope=scope("pk"))
    assert "sp_composite" in labelled.render() and "hidden" in labelled.params
    assert re.search(r"x\d+\.res_pk NOT IN", labelled.render())
    restricted = compile_where(query, pairs=ready, scope=scope("patient_id"))
    assert "sp_composite" not in restricted.render() and "hidden" in restricted.params


def test_a_pair_is_not_used_while_its_parameter_is_reindexed() -> None:
    registry = SearchParamRegistry.default().copy()
    session = Session.__new__(Session)
    session.registry = registry
    assert session._ready_pairs() == frozenset(p.name for p in pairs.PAIRS)
    code = registry.get("Observation", "code")
    assert code is not None
    registry.pending = {code.url}
    assert session._ready_pairs() == frozenset()  # every pair's token is `code`
    date = registry.get("Observation", "date")
    assert date is not None
    registry.pending = {date.url}
    assert session._ready_pairs() == frozenset({"code+patient"})


def test_a_search_parameter_code_with_a_plus_is_refused(client: httpx.Client) -> None:
    resp = client.post("/SearchParameter", json={
        "resourceType": "SearchParameter", "url": "https://akson.test/sp/plus",
        "name": "plus", "status": "active", "description": "x", "code": "code+date",
        "base": ["Observation"], "type": "token", "expression": "Observation.code"})
    assert resp.status_code == 422, resp.text  # a resource the server cannot process
    assert "'+'" in resp.json()["issue"][0]["diagnostics"]
