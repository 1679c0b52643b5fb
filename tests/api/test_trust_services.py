"""Trust services over HTTP, on SQLite and PostgreSQL: authentication on every route, the access
gate on every path, and the hash-chained audit log a citizen reads (docs/adr/0006-access-gate.md).

A small municipality is written through the API by the built-in system client: a legal entity
and its GP office, a GP (HPR number) with patient Anna on the GP list, and patient Bjørn who is
on nobody's list; each has an Observation. The GP and the citizens get tokens signed by the
server's own provider (`tests.conftest.mint_token`), as its token endpoint issues them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from tests.conftest import ThreadServer, fresh_database, mint_token

from akson.api.fhir.paging import audit_key
from akson.audit_cli import audit
from akson.config import Settings
from akson.fhir.dates import now_us
from akson.fhir.identifiers import make_fnr, make_orgnr
from akson.fhir.naming import FNR_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM
from akson.idp import attestation
from akson.idp.identity import Identity, Workplace
from akson.store import audit_log
from akson.store.database import connect

_rng = random.Random(20261126)  # noqa: S311 - synthetic test data
LEGAL, UNIT = make_orgnr(_rng), make_orgnr(_rng)
GP_HPR = "9144897"
EPISODE = "https://akson.no/fhir/CodeSystem/episode-type"
LOINC = "http://loinc.org"
CODE = "8867-4"


def _fnr(born: date) -> str:
    for individ in range(0, 400):
        number = make_fnr(born, individ, synthetic="tenor")
        if number:
            return number
    raise AssertionError("no synthetic fnr")


FNR = {"anna": _fnr(date(1970, 3, 1)), "bjorn": _fnr(date(1985, 5, 5)),
       "gp": _fnr(date(1965, 6, 6))}
GP_NAME = "Kari Fastlege"


def _ref(res_type: str, res_id: str) -> dict[str, str]:
    return {"reference": f"{res_type}/{res_id}"}


def _data() -> list[dict[str, Any]]:
    def person(key: str, name: str) -> dict[str, Any]:
        return {"resourceType": "Patient", "id": key, "name": [{"family": name}],
                "identifier": [{"system": FNR_SYSTEM, "value": FNR[key]}]}

    def obs(res_id: str, who: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": res_id, "status": "final",
                "code": {"coding": [{"system": LOINC, "code": CODE}]},
                "subject": _ref("Patient", who), "performer": [_ref("Practitioner", "gp")]}

    return [
        {"resourceType": "Organization", "id": "legal", "name": "Testvik kommune",
         "identifier": [{"system": ORGNR_SYSTEM, "value": LEGAL}]},
        {"resourceType": "Organization", "id": "office", "name": "Testvik legekontor",
         "identifier": [{"system": ORGNR_SYSTEM, "value": UNIT}],
         "partOf": _ref("Organization", "legal")},
        {"resourceType": "Practitioner", "id": "gp", "name": [{"text": GP_NAME}],
         "identifier": [{"system": HPR_SYSTEM, "value": GP_HPR}]},
        person("anna", "Anna"), person("bjorn", "Bjørn"),
        {"resourceType": "EpisodeOfCare", "id": "list-anna", "status": "active",
         "type": [{"coding": [{"system": EPISODE, "code": "fastlegeliste"}]}],
         "patient": _ref("Patient", "anna"), "managingOrganization": _ref("Organization", "office"),
         "period": {"start": "2020-01-01"}, "careManager": _ref("Practitioner", "gp")},
        obs("obs-anna", "anna"), obs("obs-bjorn", "bjorn"),
    ]


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ThreadServer, httpx.Client]]:
    """A server of this module's own with the small municipality, and a system client."""
    folder = tmp_path_factory.mktemp(f"trust-{backend}")
    with fresh_database(backend, folder, "akson_trust", migrate=True) as url:
        # Routine reads' records are written only when something asks for them (an AuditEvent
        # read, a durable record, shutdown), never by the clock: the log tests then prove that.
        settings = Settings(database_url=url, export_dir=str(folder / "export"),
                            audit_reads_behind_ms=3_600_000)
        with ThreadServer(settings) as srv, httpx.Client(
                base_url=srv.url + "/fhir", timeout=30, auth=srv.auth()) as system:
            for resource in _data():
                resp = system.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
                assert resp.status_code in (200, 201), resp.text
            yield srv, system


def _gp(purpose: str = "TREAT", *, reason: str | None = None, patient: str | None = None
        ) -> Identity:
    workplace = Workplace(LEGAL, "Testvik kommune", UNIT, "Testvik legekontor")
    attested = attestation.build(
        pid=FNR["gp"], name=GP_NAME, hpr_number=GP_HPR, authorization="LE", workplace=workplace,
        purpose=purpose, reason=reason, self_declared=False,
        patient_nin=FNR[patient] if patient else None, toa=int(time.time()))
    return Identity("practitioner", FNR["gp"], GP_NAME, "Practitioner/gp", GP_HPR, "LE",
                    workplace, attested)


def _citizen(key: str) -> Identity:
    return Identity("citizen", FNR[key], key.capitalize(), f"Patient/{key}")


def _as(srv: ThreadServer, identity: Identity) -> httpx.Client:
    token = mint_token(srv, identity=identity)
    return httpx.Client(base_url=srv.url + "/fhir", timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def _ids(bundle: dict[str, Any], res_type: str | None = None) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if res_type is None or e["resource"]["resourceType"] == res_type}


# ------------------------------------------------------------------ authentication

ROUTES = [
    ("GET", "/Patient/anna", None), ("GET", "/Patient/anna/_history/1", None),
    ("GET", "/Observation?code=8867-4", None), ("GET", "/Patient/anna/_history", None),
    ("GET", "/_history", None), ("GET", "/Patient/anna/$everything", None),
    ("GET", "/Patient/anna/Observation", None),
    ("POST", "/Patient", {"resourceType": "Patient"}),
    ("PUT", "/Patient/anna", {"resourceType": "Patient", "id": "anna"}),
    ("DELETE", "/Observation/obs-anna", None),
    ("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": []}),
    ("POST", "/Patient/$validate", {"resourceType": "Patient"}),
    ("GET", "/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender", None),
    ("GET", "/$export", None), ("GET", "/AuditEvent?patient=anna", None),
    ("GET", "/SearchParameter/x/$reindex-status", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_refuses_a_request_without_a_valid_token(world, method, path, body):
    srv, _ = world
    with httpx.Client(base_url=srv.url + "/fhir", timeout=30) as anonymous:
        for headers in ({}, {"Authorization": "Bearer not.a.token"},
                        {"Authorization": "Basic dXNlcjpwYXNz"}):
            resp = anonymous.request(method, path, json=body, headers=headers)
            assert resp.status_code == 401, (path, headers, resp.text)
            assert resp.headers["www-authenticate"].startswith(("Bearer", "DPoP"))
            assert resp.json()["resourceType"] == "OperationOutcome"


def test_a_token_for_another_server_or_signed_by_another_key_is_refused(world):
    srv, _ = world
    from akson.idp.tokens import Grant

    grant = Grant("akson-web", ("user/*.cruds",), "https://other.example/fhir", _gp())
    other_aud = srv.app.idp.state.minter.access_token(grant, issuer=f"{srv.url}/auth",
                                                      now=int(time.time()))
    wrong_iss = srv.app.idp.state.minter.access_token(
        Grant("akson-web", ("user/*.cruds",), f"{srv.url}/fhir", _gp()),
        issuer="https://evil.example/auth", now=int(time.time()))
    for token, reason in ((other_aud, "wrong_audience"), (wrong_iss, "unknown_issuer")):
        resp = httpx.get(f"{srv.url}/fhir/Patient/anna", headers={
            "Authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and reason in resp.headers["www-authenticate"]


def test_metadata_and_smart_configuration_need_no_token(world):
    srv, _ = world
    assert httpx.get(f"{srv.url}/fhir/metadata").status_code == 200
    smart = httpx.get(f"{srv.url}/fhir/.well-known/smart-configuration")
    assert smart.status_code == 200 and smart.json()["token_endpoint"].endswith("/auth/token")


# ------------------------------------------------------------------ the practitioner


def test_gp_sees_a_listed_patient_everywhere_and_nothing_of_another(world):
    srv, _ = world
    with _as(srv, _gp()) as gp:
        assert gp.get("/Observation/obs-anna").status_code == 200
        found = gp.get("/Observation", params={"code": CODE, "_total": "accurate",
                                               "_include": "Observation:subject"}).json()
        assert _ids(found, "Observation") == {"obs-anna"} and found["total"] == 1
        assert _ids(found, "Patient") == {"anna"}
        everything = gp.get("/Patient/anna/$everything").json()
        assert {"anna", "obs-anna"} <= _ids(everything) and "obs-bjorn" not in _ids(everything)
        # Bjørn: 403 for a read, the same text as for an id that was never stored.
        denied = gp.get("/Observation/obs-bjorn")
        never = gp.get(f"/Observation/{uuid.uuid4().hex}")
        assert denied.status_code == never.status_code == 403
        assert denied.json()["issue"][0]["diagnostics"] == never.json()["issue"][0]["diagnostics"]
        assert gp.get("/Patient/bjorn/$everything").status_code == 403
        assert gp.get("/Patient/bjorn/_history").status_code == 403
        # A search for Bjørn's data finds nothing, and the total says nothing either.
        hidden = gp.get("/Observation", params={"subject": "Patient/bjorn",
                                                "_total": "accurate"}).json()
        assert hidden["total"] == 0 and not hidden.get("entry")
        # Writing into a record the GP cannot see is refused.
        note = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": CODE}]},
                "subject": _ref("Patient", "bjorn")}
        assert gp.post("/Observation", json=note).status_code == 403
        assert gp.post("/Observation", json={**note, "subject": _ref("Patient", "anna")}
                       ).status_code == 201


def test_practitioners_cannot_write_search_parameters_or_read_the_audit_log(world):
    srv, _ = world
    with _as(srv, _gp()) as gp:
        sp = {"resourceType": "SearchParameter", "url": "https://akson.test/sp/x", "name": "x",
              "status": "active", "description": "x", "code": "x", "base": ["Patient"],
              "type": "string", "expression": "Patient.name.family"}
        assert gp.post("/SearchParameter", json=sp).status_code == 403
        assert gp.get("/AuditEvent", params={"patient": "anna"}).status_code == 403


def test_export_by_a_practitioner_holds_only_what_it_may_see(world):
    srv, _ = world
    with _as(srv, _gp()) as gp:
        kick = gp.get("/$export", params={"_type": "Observation,Patient"},
                      headers={"Prefer": "respond-async"})
        assert kick.status_code == 202, kick.text
        status = kick.headers["content-location"]
        deadline = time.monotonic() + 60
        while (done := gp.get(status)).status_code == 202:
            assert time.monotonic() < deadline, "export did not finish"
            time.sleep(0.05)
        assert done.status_code == 200, done.text
        exported: set[str] = set()
        for out in done.json()["output"]:
            text = gp.get(out["url"], headers={"Accept": "application/fhir+ndjson"}).text
            exported |= {line.split('"id":"', 1)[1].split('"', 1)[0]
                         for line in text.splitlines() if line}
        assert {"anna", "obs-anna"} <= exported
        assert not exported & {"bjorn", "obs-bjorn"}
    # Another caller may not poll the GP's job — nor the same GP through another client.
    with _as(srv, _citizen("anna")) as anna:
        assert anna.get(status).status_code == 404
    other_client = mint_token(srv, identity=_gp(), client_id="another-epj")
    assert httpx.get(status, headers={"Authorization": f"Bearer {other_client}"}
                     ).status_code == 404


# ------------------------------------------------------------------ citizens and the audit log


def test_citizen_reads_own_record_and_who_read_it(world):
    srv, _ = world
    with _as(srv, _gp()) as gp:
        assert gp.get("/Observation/obs-anna").status_code == 200
    with _as(srv, _citizen("anna")) as anna:
        assert anna.get("/Patient/anna").status_code == 200
        own = _ids(anna.get("/Observation").json())
        assert "obs-anna" in own and "obs-bjorn" not in own
        assert anna.get("/Patient/bjorn").status_code == 403
        log = anna.get("/AuditEvent", params={"patient": "anna", "_count": "500"})
        assert log.status_code == 200
        events = [e["resource"] for e in log.json()["entry"]]
        by_gp = [e for e in events if any(a.get("name") == GP_NAME for a in e["agent"])]
        assert by_gp, "the GP's read is in Anna's access log"
        assert any(UNIT in str(a["who"]) for e in by_gp for a in e["agent"])
        # Who by name, where by the organisation's and unit's names (from the register data).
        assert GP_NAME in by_gp[0]["text"]["div"]
        assert "Testvik kommune, Testvik legekontor" in by_gp[0]["text"]["div"]
        assert FNR["gp"] not in log.text  # the practitioner's national id, never
        # Her log is hers: Bjørn's is not, and the log cannot be written.
        assert anna.get("/AuditEvent", params={"patient": "bjorn"}).status_code == 403
        assert anna.post("/AuditEvent", json={"resourceType": "AuditEvent"}).status_code == 405


def test_routine_read_records_pending_at_shutdown_are_written(backend, tmp_path):
    """A server stopping writes the routine records it had not written yet (ADR 0007)."""
    with fresh_database(backend, tmp_path, "akson_trust_stop", migrate=True) as url:
        settings = Settings(database_url=url, export_dir=str(tmp_path / "export"),
                            audit_reads_behind_ms=3_600_000)
        with ThreadServer(settings) as srv, httpx.Client(
                base_url=srv.url + "/fhir", timeout=30, auth=srv.auth()) as system:
            anna = next(r for r in _data() if r["id"] == "anna")
            assert system.put("/Patient/anna", json=anna).status_code in (200, 201)
            assert system.get("/Patient/anna").status_code == 200
        assert asyncio.run(_logged(url, "anna", "read")) == 1
        result = CliRunner().invoke(audit, ["verify"], env={"AKSON_DATABASE_URL": url})
        assert result.exit_code == 0 and "intact" in result.output, result.output


def test_a_create_whose_audit_chain_another_process_moved_lands_once(backend, tmp_path, caplog):
    """A REST write's audit append is checked at its commit (ADR 0017). When another process
    (an import, the CLI) appended to the server's chain in between, PostgreSQL refuses that
    commit and the server runs the create again on the chain's lock: the client sees one 201,
    one version and one record, and the log verifies. SQLite locks from the start."""
    with fresh_database(backend, tmp_path, "akson_trust_moved", migrate=True) as url:
        settings = Settings(database_url=url, export_dir=str(tmp_path / "export"))
        with ThreadServer(settings) as srv, httpx.Client(
                base_url=srv.url + "/fhir", timeout=30, auth=srv.auth()) as system:
            anna = next(r for r in _data() if r["id"] == "anna")
            for _ in range(audit_log.OWN_CHAINS):  # the server knows its write chains' heads
                assert system.put("/Patient/anna", json=anna).status_code in (200, 201)
            asyncio.run(_append_to_every_chain(url, settings.audit_chains))
            with caplog.at_level(logging.INFO, logger="akson.access.gate"):
                created = system.post("/Observation", json={
                    "resourceType": "Observation", "status": "final",
                    "subject": _ref("Patient", "anna"),
                    "code": {"coding": [{"system": LOINC, "code": CODE}]}})
            assert created.status_code == 201, created.text
            history = system.get(f"/Observation/{created.json()['id']}/_history").json()
            assert [e["response"]["status"] for e in history["entry"]] == ["201"]
        ran_again = [r for r in caplog.records if "ran again" in r.getMessage()]
        assert len(ran_again) == (1 if backend == "postgresql" else 0)
        assert asyncio.run(_logged(url, "anna", "create")) == 1
        result = CliRunner().invoke(audit, ["verify"], env={"AKSON_DATABASE_URL": url})
        assert result.exit_code == 0 and "intact" in result.output, result.output


async def _append_to_every_chain(url: str, chains: int) -> None:
    """What another process writing to the log does: one record on each chain."""
    db = connect(url)
    await db.open()
    try:
        log = audit_log.AuditLog(db, key=audit_key(url), chains=chains)
        for chain in range(chains):
            await log.record_many([audit_log.AuditEntry(
                content=b'{"by":"another process"}', recorded=now_us(), action="E",
                subtype="login")], chain=chain)
    finally:
        await db.close()


async def _logged(url: str, patient: str, subtype: str) -> int:
    """How many of `patient`'s records in the log are of `subtype`."""
    db = connect(url)
    await db.open()
    try:
        async with db.transaction(write=False) as tx:
            return sum(r.entry.subtype == subtype
                       for r in await audit_log.patient_log(tx, patient))
    finally:
        await db.close()


def test_break_the_glass_is_plain_in_the_citizens_log(world):
    srv, _ = world
    btg = _gp("BTG", reason="Bevisstløs pasient i akuttmottak", patient="bjorn")
    with _as(srv, btg) as doctor:
        assert doctor.get("/Observation/obs-bjorn").status_code == 200
    with _as(srv, _citizen("bjorn")) as bjorn:
        events = [e["resource"] for e in bjorn.get("/AuditEvent", params={
            "patient": "bjorn", "_count": "500"}).json()["entry"]]
        glass = [e for e in events if "NØDTILGANG" in e["text"]["div"]]
        assert glass and "Bevisstløs pasient" in glass[0]["text"]["div"]
        assert glass[0]["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    # The privacy officer's report lists it, with the reason and the patient, never a national id.
    result = CliRunner().invoke(audit, ["report", "--org", LEGAL, "--from", "2020",
                                        "--to", "2100"],
                                env={"AKSON_DATABASE_URL": srv.app.settings.database_url})
    assert result.exit_code == 0, result.output
    breaks = result.output.split("Self-declared")[0]
    assert "Bevisstløs pasient" in breaks and "bjorn" in breaks and f"hpr:{GP_HPR}" in breaks
    assert FNR["bjorn"] not in result.output and FNR["gp"] not in result.output


def test_a_citizens_log_shows_no_other_person(world):
    """A search that returned two patients is in both logs, each showing only its reader."""
    srv, system = world
    assert system.get("/Patient", params={"_id": "anna,bjorn"}).status_code == 200
    with _as(srv, _citizen("anna")) as anna:
        log = anna.get("/AuditEvent", params={"patient": "anna", "_count": "500"})
        assert log.status_code == 200
        for entry in log.json()["entry"]:
            event = entry["resource"]
            refs = {e["what"]["reference"] for e in event.get("entity", [])}
            assert refs <= {"Patient/anna"}
            assert "contained" not in event
            assert all("altId" not in a for a in event["agent"])
        assert "bjorn" not in log.text and FNR["bjorn"] not in log.text


def test_odd_numbers_in_audit_log_requests_are_4xx(world):
    srv, _ = world
    with _as(srv, _citizen("anna")) as anna:
        for params in ({"patient": "anna", "_count": "²"}, {"patient": "anna", "_count": "٣"}):
            assert anna.get("/AuditEvent", params=params).status_code == 400
        assert anna.get("/AuditEvent/99999999999999999999-1").status_code == 403
        assert anna.get("/AuditEvent/1-99999999999999999999999").status_code == 403
        for cursor in ("99999999999999999999.1.1", "1.1.1.-1", "1.2", "1.1.1.1.1", "a.b.c"):
            assert anna.get("/AuditEvent", params={"patient": "anna", "_cursor": cursor}
                            ).status_code == 400
    with _as(srv, _gp()) as gp:
        assert gp.get("/Patient", params={"_count": "²"}).status_code == 400


def test_audit_log_pages_newest_first(world):
    srv, system = world
    for _ in range(3):
        assert system.get("/Patient/anna").status_code == 200
    with _as(srv, _citizen("anna")) as anna:
        first = anna.get("/AuditEvent", params={"patient": "anna", "_count": "2"}).json()
        assert len(first["entry"]) == 2
        following = next(link["url"] for link in first["link"] if link["relation"] == "next")
        second = anna.get(following).json()
        assert not _ids(first) & _ids(second)
        times = [e["resource"]["recorded"] for e in first["entry"] + second["entry"]]
        assert times == sorted(times, reverse=True)
        # The three reads were written together, as one block (ADR 0014): each is an event of
        # its own, with an id of its own that reads back.
        newest = first["entry"][:2] + second["entry"][:1]
        assert len({e["resource"]["id"].rsplit("-", 1)[0] for e in newest}) == 1
        for entry in newest:
            one = anna.get(f"/AuditEvent/{entry['resource']['id']}")
            assert one.status_code == 200
            assert one.json()["recorded"] == entry["resource"]["recorded"]
            assert entry["fullUrl"].endswith("/AuditEvent/" + entry["resource"]["id"])
        block_id = newest[0]["resource"]["id"].rsplit("-", 1)[0]
        for alias in (block_id, block_id + "-0", block_id + "-4", block_id + "-01x"):
            assert anna.get(f"/AuditEvent/{alias}").status_code == 403


def test_every_request_is_audited_and_the_chain_verifies(world):
    srv, system = world
    url = srv.app.settings.database_url

    def anna_events() -> int:
        with _as(srv, _citizen("anna")) as anna:
            return len(anna.get("/AuditEvent", params={"patient": "anna",
                                                       "_count": "1000"}).json()["entry"])

    before = anna_events()
    assert system.get("/Patient/anna").status_code == 200  # read
    assert system.get("/Observation", params={"subject": "Patient/anna"}).status_code == 200
    created = system.post("/Observation", json={
        "resourceType": "Observation", "status": "final", "subject": _ref("Patient", "anna"),
        "code": {"coding": [{"system": LOINC, "code": CODE}]}}).json()
    assert system.delete(f"/Observation/{created['id']}").status_code == 200
    assert anna_events() == before + 4  # read, search, create, delete
    result = CliRunner().invoke(audit, ["verify"], env={"AKSON_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
