"""A date range alone on a walked parameter (`Encounter?date=ge…&date=lt…`,
`search_sql.DATE_WALKS`, migration 0025): on PostgreSQL its rows are walked bucket by bucket in
pk order; on both databases it finds what the general plan finds, in the same order and pages —
periods inside the range, across its start, longer than a bucket, open-ended, before 1970."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest

from akson.store import search_sql
from tests.search.conftest import walk_pages

#: A year of its own for each data set, per database, each before the last: no open period of
#: an earlier set (nor of the session's other, more recent data) reaches into it. From 1971 down
#: they cross 1970, into negative µs, where PostgreSQL's integer division truncates.
_YEARS = {"sqlite": itertools.count(1959, -1), "postgresql": itertools.count(1971, -1)}


class Visits:
    """Encounters of one year, named; one deleted."""

    def __init__(self, client: httpx.Client, year: int) -> None:
        self.year, self.ids = year, {}
        y = year
        periods = {
            "inside": {"start": f"{y}-03-05T10:00:00+01:00", "end": f"{y}-03-05T11:00:00+01:00"},
            "across_start": {"start": f"{y}-02-27", "end": f"{y}-03-02"},
            "whole_year": {"start": f"{y}-01-01", "end": f"{y}-12-31"},
            "open": {"start": f"{y}-03-20"},
            "april": {"start": f"{y}-04-02", "end": f"{y}-04-02"},
            "february": {"start": f"{y}-02-10", "end": f"{y}-02-10"},
            "last_evening": {"start": f"{y}-03-31T20:00:00+01:00",
                             "end": f"{y}-03-31T20:15:00+01:00"},
            "deleted": {"start": f"{y}-03-10", "end": f"{y}-03-10"},
            "inside_late": {"start": f"{y}-03-15", "end": f"{y}-03-16"},
        }
        for name, period in periods.items():
            resp = client.post("/Encounter", json={
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "AMB"}, "period": period})
            assert resp.status_code == 201, resp.text
            self.ids[name] = resp.json()["id"]
        assert client.delete(f"/Encounter/{self.ids['deleted']}").status_code in (200, 204)

    def names(self, ids: list[str]) -> list[str]:
        """The names of this set's ids among `ids` (the session's other data may match too)."""
        back = {v: k for k, v in self.ids.items()}
        return [back[i] for i in ids if i in back]


@pytest.fixture
def visits(client: httpx.Client, backend: str) -> Visits:
    return Visits(client, next(_YEARS[backend]))


MARCH = ["inside", "across_start", "whole_year", "open", "last_evening", "inside_late"]
CASES = [
    (["ge{y}-03-01", "lt{y}-04-01"], MARCH),
    (["eq{y}-03"], ["inside", "last_evening", "inside_late"]),
    (["ge{y}-03-01T00:00:00+01:00", "le{y}-03-05"], ["inside", "across_start", "whole_year"]),
    (["sa{y}-02-28", "eb{y}-04-01"], ["inside", "last_evening", "inside_late"]),
]


@pytest.mark.parametrize(("dates", "expected"), CASES)
def test_a_walked_date_range(client: httpx.Client, visits: Visits, dates: list[str],
                             expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the walk and without it: the same matches in pk (creation) order, one page or
    pages of two, forward and back."""
    params = {"date": [d.format(y=visits.year) for d in dates]}
    whole, _ = walk_pages(client, "/Encounter", {**params, "_count": "50"})
    assert visits.names(whole) == expected
    forward, back = walk_pages(client, "/Encounter", {**params, "_count": "2"})
    assert forward == back == whole
    monkeypatch.setattr(search_sql, "DATE_WALKS", ())
    assert walk_pages(client, "/Encounter", {**params, "_count": "2"}) == (whole, whole)


def test_the_walk_leads_a_range_alone_on_postgresql(client: httpx.Client, visits: Visits,
                                                    backend: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The operators' plan names the walk's index for a bounded range alone; not for an open
    range, nor beside another clause (which leads instead), nor on SQLite."""
    monkeypatch.setenv("AKSON_ENABLE_EXPLAIN", "1")

    def walked(params: dict) -> bool:
        """Does the plan descend the walk's index by bucket? (The planner may scan it for
        other plans too, as a smaller index of the same rows.)"""
        resp = client.get("/Encounter", params={**params, "_explain": "true"})
        assert resp.status_code == 200, resp.text
        plan = str(resp.json()["issue"][0]["diagnostics"])
        return re.search(r"\(low / '2678400000000'::bigint\)\) = ", plan) is not None

    y = visits.year
    assert walked({"date": [f"ge{y}-03-01", f"lt{y}-04-01"]}) == (backend == "postgresql")
    assert not walked({"date": f"ge{y}-03-01"})
    assert not walked({"date": [f"ge{y}-03-01", f"lt{y}-04-01"], "status": "finished"})
    assert not walked({"date": [f"ge{y - 10}-03-01", f"lt{y}-04-01"]})  # past MAX_BUCKETS
    # Beside another clause the result is the general plan's.
    both, _ = walk_pages(client, "/Encounter", {
        "date": [f"ge{y}-03-01", f"lt{y}-04-01"], "status": "finished", "_count": "2"})
    assert visits.names(both) == MARCH


def test_buckets_are_pg_integer_division() -> None:
    """Before 1970 PostgreSQL's `/` truncates towards zero: the walk's buckets must too."""
    bucket = 2_678_400_000_000
    assert search_sql._truncated(-1) == 0
    assert search_sql._truncated(-bucket - 1) == -1
    assert search_sql._truncated(bucket * 3 + 5) == 3
