"""Pages led by a chain (`Observation?subject:Patient.name=x`): on PostgreSQL from the chain's
rows (`Session._chain_rows_page_sql`), else each matching Patient's first referrers in pk order,
merged (`Session._chain_page_sql`); the same pages, links and order as the planner's statement
on both databases, also when the targets are too many to lead (then the planner's runs)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from akson.store import repository
from akson.store.repository import Session
from tests.search.conftest import LOINC, walk_pages


@pytest.fixture
def family(client: httpx.Client) -> tuple[str, list[str]]:
    """Three patients of one new family and one of another; Observations of all of them,
    interleaved, one of them deleted. Returns the family and its live Observations' ids."""
    name = f"Kjede{uuid.uuid4().hex[:8]}"
    patients = [client.post("/Patient", json={"resourceType": "Patient", "name": [
        {"family": family}]}).json()["id"] for family in (name, name, f"X{name}", name)]
    ours = []
    for i in range(10):
        patient = patients[i % 4]
        obs = client.post("/Observation", json={
            "resourceType": "Observation", "status": "final" if i % 3 else "preliminary",
            "code": {"coding": [{"system": LOINC, "code": "8302-2"}]},
            "subject": {"reference": f"Patient/{patient}"}}).json()["id"]
        if patient != patients[2]:
            ours.append(obs)
    client.delete(f"/Observation/{ours.pop(3)}")
    return name, ours


@pytest.mark.parametrize("lead", ["rows", "targets", "planner"])
def test_chain_pages_forward_and_back(client: httpx.Client, family: tuple[str, list[str]],
                                      lead: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the chain's rows lead (akson.store.chain_rows); without them up to
    FEW_IN_RANGE targets do; with 2, its three Patients are too many and the planner's
    statement answers. Every page size, a pk-only clause besides, and the walk back give the
    same ids in pk order."""
    if lead != "rows":
        monkeypatch.setattr(Session, "_chain_rows_page_sql", lambda self, *args: None)
    if lead == "planner":
        monkeypatch.setattr(repository, "FEW_IN_RANGE", 2)
    name, ours = family
    for count in ("1", "2", "50"):
        forward, back = walk_pages(client, "/Observation", {"subject:Patient.name": name, "_count": count})
        assert forward == ours and back == ours
    final = [i for i in ours if client.get(f"/Observation/{i}").json()["status"] == "final"]
    forward, back = walk_pages(client, "/Observation", {"subject:Patient.name": name, "status": "final",
                                   "_count": "2"})
    assert forward == final and back == final


def test_the_chain_leads_on_postgresql(client: httpx.Client, family: tuple[str, list[str]],
                                       backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AKSON_ENABLE_EXPLAIN", "1")
    name, ours = family

    def plan() -> str:
        resp = client.get("/Observation", params={"subject:Patient.name": name,
                                                  "_explain": "true"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["issue"][0]["diagnostics"])

    assert ("sp_chain" in plan()) == (backend == "postgresql")
    monkeypatch.setattr(Session, "_chain_rows_page_sql", lambda self, *args: None)
    assert ("CTE t" in plan()) == (backend == "postgresql")
    monkeypatch.setattr(Session, "_chain_page_sql", lambda self, *args: None)
    assert "CTE t" not in plan() and "sp_chain" not in plan()
    forward, _ = walk_pages(client, "/Observation", {"subject:Patient.name": name, "_count": "3"})
    assert forward == ours
