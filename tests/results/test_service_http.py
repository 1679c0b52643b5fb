"""The results service over HTTP, on SQLite and PostgreSQL: delivery with receipts, idempotency,
corrections with history, the manual matching queue and quarantine, the `/results/fhir` lookup
through the access gate, trends, and the citizen's rights (reservation, blocks, delayed release).

Deliveries here are FHIR Bundles (the KITH and HL7 v2 readers have their own tests, and one HL7
v2 delivery runs end to end below). A small municipality is written through the journal API: a
GP with Anna on the GP list; Bjørn is on nobody's list.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import orjson
import pytest
from click.testing import CliRunner

from akson.config import Settings
from akson.fhir.identifiers import classify_person_id, make_fnr, make_orgnr
from akson.fhir.naming import FNR_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM
from akson.idp import attestation
from akson.idp.identity import Identity, Workplace
from akson.results.kith import parse_svarrapport
from akson.results.model import CATEGORY_SYSTEM, NLK_SYSTEM
from akson.results.receipt import APPREC_NS
from akson.results_cli import results
from tests.conftest import ThreadServer, fresh_database, mint_token
from tests.shared_corpora import CORPORA

_rng = random.Random(20261127)  # noqa: S311 - synthetic test data
LEGAL, UNIT = make_orgnr(_rng), make_orgnr(_rng)
GP_HPR = "9144897"
LAB_SCOPES = " ".join(f"system/{t}.cruds" for t in (
    "DiagnosticReport", "Observation", "ServiceRequest", "Specimen", "ImagingStudy",
    "PractitionerRole")) + " system/Patient.r"
FT4 = "NOR05863"


def _fnr(born: date) -> str:
    for individ in range(400):
        if number := make_fnr(born, individ, synthetic="tenor"):
            return number
    raise AssertionError("no synthetic fnr")


FNR = {"anna": _fnr(date(1971, 3, 1)), "bjorn": _fnr(date(1984, 5, 5)),
       "gp": _fnr(date(1966, 6, 6))}


def _ref(t: str, i: str) -> dict[str, str]:
    return {"reference": f"{t}/{i}"}


def _journal() -> list[dict[str, Any]]:
    def person(key: str, name: str) -> dict[str, Any]:
        return {"resourceType": "Patient", "id": key, "name": [{"family": name}],
                "identifier": [{"system": FNR_SYSTEM, "value": FNR[key]}]}

    return [
        {"resourceType": "Organization", "id": "legal", "name": "Prøvevik kommune",
         "identifier": [{"system": ORGNR_SYSTEM, "value": LEGAL}]},
        {"resourceType": "Organization", "id": "office", "name": "Prøvevik legekontor",
         "identifier": [{"system": ORGNR_SYSTEM, "value": UNIT}],
         "partOf": _ref("Organization", "legal")},
        {"resourceType": "Practitioner", "id": "gp", "name": [{"text": "Kari Fastlege"}],
         "identifier": [{"system": HPR_SYSTEM, "value": GP_HPR}]},
        person("anna", "Ås"), person("bjorn", "Bø"),
        {"resourceType": "EpisodeOfCare", "id": "list-anna", "status": "active",
         "type": [{"coding": [{"system": "https://akson.no/fhir/CodeSystem/episode-type",
                               "code": "fastlegeliste"}]}],
         "patient": _ref("Patient", "anna"), "managingOrganization": _ref("Organization", "office"),
         "period": {"start": "2020-01-01"}, "careManager": _ref("Practitioner", "gp")},
        # The journal's own Observation: not a result, never served by /results/fhir.
        {"resourceType": "Observation", "id": "journal-bp", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
         "subject": _ref("Patient", "anna")},
    ]


def _urn(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, name)}"


def bundle(report_id: str, who: str | None, values: dict[str, float], *, status: str = "final",
           issued: str = "2026-11-20T10:00:00+01:00", category: str = "CLIN",
           lab: str = "Unilab", patient: dict[str, Any] | None = None,
           effective: str = "2026-11-19T08:00:00+01:00") -> bytes:
    """A results Bundle: one DiagnosticReport with an Observation per NLK code in `values`."""
    subject = ({"reference": _urn("patient")} if patient else
               {"identifier": {"system": FNR_SYSTEM, "value": FNR[who or "anna"]}})
    obs = [{"fullUrl": _urn(code), "resource": {
        "resourceType": "Observation", "status": status if status != "corrected" else "corrected",
        "code": {"coding": [{"system": NLK_SYSTEM, "code": code}]},
        "effectiveDateTime": effective,
        "valueQuantity": {"value": v, "unit": "pmol/L", "system": "http://unitsofmeasure.org",
                          "code": "pmol/L"}}} for code, v in values.items()]
    dr = {"fullUrl": _urn("dr"), "resource": {
        "resourceType": "DiagnosticReport", "status": status,
        "identifier": [{"system": f"urn:lab:{lab}", "value": report_id}],
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "code": {"text": "Blodprøver"}, "subject": subject, "issued": issued,
        "effectiveDateTime": effective,
        "result": [{"reference": _urn(code)} for code in values]}}
    entries = [dr, *obs]
    if patient:
        entries.append({"fullUrl": _urn("patient"), "resource": patient})
    return orjson.dumps({"resourceType": "Bundle", "type": "collection",
                         "identifier": {"system": f"urn:lab:{lab}:msg",
                                        "value": f"{report_id}-{issued}-{status}"},
                         "entry": entries})


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ThreadServer, httpx.Client, Settings]]:
    folder = tmp_path_factory.mktemp(f"results-{backend}")
    with fresh_database(backend, folder, "akson_results", migrate=True) as url:
        settings = Settings(database_url=url, export_dir=str(folder / "export"),
                            results_release_delay="HIST=14d")
        with ThreadServer(settings) as srv, httpx.Client(
                base_url=srv.url, timeout=30, auth=srv.auth(LAB_SCOPES)) as lab:
            with httpx.Client(base_url=srv.url + "/fhir", timeout=30, auth=srv.auth()) as admin:
                for resource in _journal():
                    resp = admin.put(f"/{resource['resourceType']}/{resource['id']}",
                                     json=resource)
                    assert resp.status_code in (200, 201), resp.text
            yield srv, lab, settings


def _deliver(lab: httpx.Client, body: bytes, media: str = "application/fhir+json"
             ) -> httpx.Response:
    return lab.post("/results/ingest", content=body, headers={"Content-Type": media})


def _gp(srv: ThreadServer) -> httpx.Client:
    workplace = Workplace(LEGAL, "Prøvevik kommune", UNIT, "Prøvevik legekontor")
    attested = attestation.build(
        pid=FNR["gp"], name="Kari Fastlege", hpr_number=GP_HPR, authorization="LE",
        workplace=workplace, purpose="TREAT", reason=None, self_declared=False,
        patient_nin=None, toa=int(time.time()))
    who = Identity("practitioner", FNR["gp"], "Kari Fastlege", "Practitioner/gp", GP_HPR, "LE",
                   workplace, attested)
    return httpx.Client(base_url=srv.url + "/results/fhir", timeout=30, headers={
        "Authorization": f"Bearer {mint_token(srv, identity=who)}"})


def _citizen(srv: ThreadServer, key: str, base: str = "/results/fhir") -> httpx.Client:
    who = Identity("citizen", FNR[key], key.capitalize(), f"Patient/{key}")
    return httpx.Client(base_url=srv.url + base, timeout=30, headers={
        "Authorization": f"Bearer {mint_token(srv, identity=who)}"})


def _ids(found: dict[str, Any], res_type: str | None = None) -> list[str]:
    return [e["resource"]["id"] for e in found.get("entry", [])
            if res_type is None or e["resource"]["resourceType"] == res_type]


# ------------------------------------------------------------------ delivery and idempotency


def test_a_delivery_is_stored_and_found_by_the_gp_and_redelivery_changes_nothing(world):
    srv, lab, _ = world
    body = bundle("R-1", "anna", {FT4: 14.2, "NOR05864": 3.1})
    first = _deliver(lab, body)
    assert first.status_code == 200, first.text
    receipt = first.json()
    assert receipt["status"] == "OK" and receipt["statusCode"] == "1"
    (report,) = receipt["reports"]
    assert report["outcome"] == "stored" and report["patient"] == "anna"
    again = _deliver(lab, body).json()
    assert again["duplicate"] is True and again["receipt_id"] == receipt["receipt_id"]
    with _gp(srv) as gp:
        found = gp.get("/DiagnosticReport", params={"patient": "anna",
                                                    "_include": "DiagnosticReport:result"})
        assert found.status_code == 200, found.text
        dr_ids = _ids(found.json(), "DiagnosticReport")
        assert len(dr_ids) == 1 and len(_ids(found.json(), "Observation")) == 2
        obs = gp.get("/Observation", params={"patient": "anna", "code": f"{NLK_SYSTEM}|{FT4}"})
        (entry,) = obs.json()["entry"]
        assert entry["resource"]["valueQuantity"]["value"] == 14.2
        assert entry["resource"]["subject"] == {"reference": "Patient/anna"}
        history = httpx.get(f"{srv.url}/fhir/Observation/{entry['resource']['id']}/_history",
                            auth=srv.auth()).json()
        assert history["total"] == 1  # the re-delivery wrote no new version


def test_a_correction_replaces_the_result_and_keeps_history(world):
    srv, lab, _ = world
    assert _deliver(lab, bundle("R-2", "anna", {FT4: 10.0, "NOR05864": 2.0})).status_code == 200
    fixed = _deliver(lab, bundle("R-2", "anna", {FT4: 11.5}, status="corrected",
                                 issued="2026-11-21T09:00:00+01:00"))
    assert fixed.status_code == 200 and fixed.json()["reports"][0]["outcome"] == "stored"
    with _gp(srv) as gp:
        obs = gp.get("/Observation", params={"patient": "anna", "code": f"{NLK_SYSTEM}|{FT4}",
                                             "_sort": "-_lastUpdated"}).json()
        current = next(e["resource"] for e in obs["entry"]
                       if e["resource"]["valueQuantity"]["value"] == 11.5)
        assert current["status"] == "corrected" and current["meta"]["versionId"] == "2"
        v1 = httpx.get(f"{srv.url}/fhir/Observation/{current['id']}/_history/1",
                       auth=srv.auth()).json()
        assert v1["valueQuantity"]["value"] == 10.0
        # A change message may carry only what changed: the other result stays in the report.
        report = gp.get("/DiagnosticReport", params={
            "patient": "anna", "_include": "DiagnosticReport:result",
            "identifier": "urn:lab:Unilab|R-2"}).json()
        values = sorted(e["resource"]["valueQuantity"]["value"] for e in report["entry"]
                        if e["resource"]["resourceType"] == "Observation")
        assert values == [2.0, 11.5]
    stale = _deliver(lab, bundle("R-2", "anna", {FT4: 9.0}, status="preliminary",
                                 issued="2026-11-18T09:00:00+01:00"))
    assert stale.json()["reports"][0]["outcome"] == "stale"


def test_trend_one_analysis_across_labs_and_years_in_one_query(world):
    srv, lab, _ = world
    for n, (year, lab_name, value) in enumerate([(2021, "Fürst", 12.0), (2023, "Unilab", 13.0),
                                                  (2025, "Fürst", 15.0)]):
        when = f"{year}-02-0{n + 1}T08:00:00+01:00"
        resp = _deliver(lab, bundle(f"T-{n}", "anna", {"NOR09999": value}, lab=lab_name,
                                    issued=when, effective=when))
        assert resp.status_code == 200, resp.text
    with _gp(srv) as gp:
        trend = gp.get("/Observation", params={"patient": "anna",
                                               "code": f"{NLK_SYSTEM}|NOR09999",
                                               "_sort": "date"}).json()
    assert [e["resource"]["valueQuantity"]["value"] for e in trend["entry"]] == [12.0, 13.0, 15.0]


# ------------------------------------------------------------------ queue and quarantine


def test_an_unidentified_patient_waits_for_manual_matching_then_is_stored(world):
    srv, lab, _ = world
    only_name = {"resourceType": "Patient", "name": [{"family": "Ås", "given": ["Anna"]}],
                 "birthDate": "1971-03-01"}
    body = bundle("M-1", None, {FT4: 17.0}, patient=only_name)
    resp = _deliver(lab, body)
    assert resp.status_code == 202, resp.text
    delivery = resp.json()["delivery"]
    assert resp.json()["reports"][0]["outcome"] == "unmatched"
    queue = lab.get("/results/messages", params={"state": "unmatched"}).json()
    assert delivery in [m["delivery"] for m in queue["messages"]]
    assert FNR["anna"] not in orjson.dumps(queue).decode()
    wrong = lab.post(f"/results/messages/{delivery}/$match", json={"patient": "Patient/nobody"})
    assert wrong.status_code == 422
    matched = lab.post(f"/results/messages/{delivery}/$match", json={"patient": "Patient/anna"})
    assert matched.status_code == 200, matched.text
    assert matched.json()["reports"][0]["outcome"] == "stored"
    assert lab.get(f"/results/messages/{delivery}").json()["state"] == "resolved"
    again = lab.post(f"/results/messages/{delivery}/$match", json={"patient": "Patient/anna"})
    assert again.status_code == 409


@pytest.mark.parametrize(("body", "media", "reason"), [
    (b"", "application/fhir+json", "empty"),
    (b"{not json", "application/fhir+json", "unreadable"),
    (b'{"resourceType": "Patient"}', "application/fhir+json", "schema"),
    (b'{"resourceType": "Bundle", "id": "x", "type": "collection"}', "application/fhir+json",
     "no-results"),
    (b"<Message>", "application/xml", "unreadable"),
    (b"MSH|^~\\&|LAB\rPID|1", "x-application/hl7-v2+er7", None),
])
def test_unreadable_deliveries_are_rejected_with_a_reason_and_kept_in_quarantine(
        world, body, media, reason):
    _, lab, _ = world
    resp = lab.post("/results/ingest", content=body + str(time.time_ns()).encode() * 0,
                    headers={"Content-Type": media, "Accept": "application/json"})
    assert resp.status_code == 400, resp.text
    receipt = resp.json()
    assert receipt["status"] == "Rejected" and receipt["statusCode"] == "2"
    assert receipt["errors"][0]["text"] and receipt["errors"][0]["code"].startswith(("T", "X"))
    if reason:
        assert receipt["errors"][0]["reason"] == reason
    quarantine = lab.get("/results/messages", params={"state": "rejected"}).json()
    assert receipt["delivery"] in [m["delivery"] for m in quarantine["messages"]]


def test_delivery_needs_a_token_a_producer_and_a_known_media_type(world):
    srv, lab, _ = world
    body = bundle("A-1", "anna", {FT4: 1.0})
    assert httpx.post(f"{srv.url}/results/ingest", content=body,
                      headers={"Content-Type": "application/fhir+json"}).status_code == 401
    assert lab.post("/results/ingest", content=body,
                    headers={"Content-Type": "text/plain"}).status_code == 415
    with _gp(srv) as gp:
        refused = httpx.post(f"{srv.url}/results/ingest", content=body, headers={
            "Content-Type": "application/fhir+json",
            "Authorization": gp.headers["Authorization"]})
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_the_results_base_serves_only_results_and_refuses_writes(world):
    srv, lab, _ = world
    _deliver(lab, bundle("B-1", "anna", {FT4: 5.0}))
    with _gp(srv) as gp:
        assert gp.get("/Observation/journal-bp").status_code == 404
        found = gp.get("/Observation", params={"patient": "anna", "_count": "500"}).json()
        assert "journal-bp" not in _ids(found)
        assert gp.post("/Observation", json={"resourceType": "Observation"}).status_code == 405
        assert gp.get("/Patient/anna").status_code == 404
        # Bjørn is on nobody's list: his results exist, the GP sees none of them.
        _deliver(lab, bundle("B-2", "bjorn", {FT4: 6.0}))
        hidden = gp.get("/Observation", params={"patient": "bjorn", "_total": "accurate"}).json()
        assert hidden["total"] == 0
    assert httpx.get(f"{srv.url}/results/fhir/metadata").status_code == 200


def test_break_the_glass_opens_another_patients_results_with_a_reason(world):
    srv, lab, _ = world
    _deliver(lab, bundle("G-1", "bjorn", {"NOR04444": 4.4}))
    workplace = Workplace(LEGAL, "Prøvevik kommune", UNIT, "Prøvevik legekontor")
    attested = attestation.build(
        pid=FNR["gp"], name="Kari Fastlege", hpr_number=GP_HPR, authorization="LE",
        workplace=workplace, purpose="BTG", reason="Bevisstløs i venterommet",
        self_declared=False, patient_nin=FNR["bjorn"], toa=int(time.time()))
    who = Identity("practitioner", FNR["gp"], "Kari Fastlege", "Practitioner/gp", GP_HPR, "LE",
                   workplace, attested)
    with httpx.Client(base_url=srv.url + "/results/fhir", timeout=30, headers={
            "Authorization": f"Bearer {mint_token(srv, identity=who)}"}) as btg:
        found = btg.post("/Observation/_search", data={
            "patient": "bjorn", "code": f"{NLK_SYSTEM}|NOR04444"})
    assert found.status_code == 200, found.text
    assert [e["resource"]["valueQuantity"]["value"] for e in found.json()["entry"]] == [4.4]


# ------------------------------------------------------------------ HL7 v2 end to end


def test_an_hl7_v2_delivery_answers_with_an_ack_and_is_stored(world):
    srv, lab, _ = world
    message = "\r".join([
        "MSH|^~\\&|LIS|Fürst^123456789^L|AKSON|NHN|20261120101500||ORU^R01^ORU_R01|MSG-HL7-1|P|2.5.1",
        f"PID|1||{FNR['anna']}^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR||Ås^Anna||19710301|F",
        "OBR|1|PL-1|FL-1|NOR05863^FT4^NLK|||20261119080000|||||||||||||||20261120101500|||F",
        "OBX|1|NM|NOR05863^FT4^NLK||16.5|pmol/L^pmol/L^UCUM|12-22||||F|||20261119080000",
    ]).encode("utf-8")
    resp = _deliver(lab, message, "x-application/hl7-v2+er7")
    assert resp.status_code == 200, resp.text
    assert b"MSA|AA|MSG-HL7-1" in resp.content
    with _gp(srv) as gp:
        obs = gp.get("/Observation", params={"patient": "anna", "value-quantity": "16.5"}).json()
    assert len(obs.get("entry", [])) == 1


# ------------------------------------------------------------------ citizens' rights


def test_delayed_release_hides_a_category_from_the_citizen_until_released(world):
    srv, lab, settings = world
    resp = _deliver(lab, bundle("H-1", "anna", {"NORPAT1": 1.0}, category="HIST"))
    assert resp.status_code == 200
    with _citizen(srv, "anna") as anna, _gp(srv) as gp:
        code = {"patient": "anna", "code": f"{NLK_SYSTEM}|NORPAT1"}
        assert len(gp.get("/Observation", params=code).json().get("entry", [])) == 1
        assert not anna.get("/Observation", params=code).json().get("entry")
        assert anna.get("/Observation", params={"patient": "anna", "code":
                                                f"{NLK_SYSTEM}|{FT4}"}).json().get("entry")
        runner = CliRunner(env={"AKSON_DATABASE_URL": settings.database_url})
        early = runner.invoke(results, ["release", "--at", "2026-11-27T00:00:00+00:00"])
        assert early.exit_code == 0 and "released 0" in early.output
        late = runner.invoke(results, ["release", "--at", "2099-01-01T00:00:00+00:00"])
        assert late.exit_code == 0, late.output
        assert int(late.output.split()[1]) >= 2  # the report and its Observation
        assert len(anna.get("/Observation", params=code).json().get("entry", [])) == 1


def test_a_citizens_block_of_their_gp_covers_results(world):
    srv, lab, _ = world
    _deliver(lab, bundle("K-1", "anna", {"NOR07777": 3.0}))
    block = {"resourceType": "Consent", "id": "block-gp", "status": "active",
             "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                   "code": "patient-privacy"}]},
             "category": [{"coding": [{"system": "https://akson.no/fhir/CodeSystem/"
                                                 "consent-category", "code": "sperring"}]}],
             "patient": _ref("Patient", "anna"),
             "provision": {"type": "deny", "actor": [{
                 "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "v3-ParticipationType", "code": "PRCP"}]},
                 "reference": _ref("Practitioner", "gp")}]}}
    code = {"patient": "anna", "code": f"{NLK_SYSTEM}|NOR07777"}
    with _citizen(srv, "anna", "/fhir") as anna_journal, _gp(srv) as gp:
        assert gp.get("/Observation", params=code).json().get("entry")
        assert anna_journal.put("/Consent/block-gp", json=block).status_code in (200, 201)
        try:
            assert not gp.get("/Observation", params=code).json().get("entry")
        finally:
            lifted = {**block, "status": "inactive"}
            assert anna_journal.put("/Consent/block-gp", json=lifted).status_code == 200


def test_reservation_purges_stored_results_and_stops_storage_until_withdrawn(world):
    srv, lab, _ = world
    # A module of its own patient would be cleaner; Bjørn's results are not used after this.
    stored = _deliver(lab, bundle("Z-1", "bjorn", {FT4: 7.0})).json()
    obs_ref = next(r for r in stored["reports"][0]["resources"] if r.startswith("Observation/"))
    with _citizen(srv, "bjorn") as bjorn:
        assert bjorn.get(f"/{obs_ref}").status_code == 200
        params = {"resourceType": "Parameters",
                  "parameter": [{"name": "reserve", "valueBoolean": True}]}
        assert bjorn.post("/Patient/anna/$reservation", json=params).status_code == 403
        made = bjorn.post("/Patient/bjorn/$reservation", json=params)
        assert made.status_code == 200, made.text
        purged = {p["name"]: p for p in made.json()["parameter"]}["purged"]["valueInteger"]
        assert purged >= 2
        # Gone with every version: not even the history holds it.
        assert httpx.get(f"{srv.url}/fhir/{obs_ref}/_history/1",
                         auth=srv.auth()).status_code == 404
        later = _deliver(lab, bundle("Z-2", "bjorn", {FT4: 8.0})).json()
        assert later["status"] == "OK" and later["reports"][0]["outcome"] == "reserved"
        assert not bjorn.get("/Observation", params={"patient": "bjorn"}).json().get("entry")
        queue = lab.get(f"/results/messages/{later['delivery']}").json()
        assert queue["state"] == "reserved"
        withdraw = {"resourceType": "Parameters",
                    "parameter": [{"name": "reserve", "valueBoolean": False}]}
        assert bjorn.post("/Patient/bjorn/$reservation", json=withdraw).status_code == 200
        after = _deliver(lab, bundle("Z-3", "bjorn", {FT4: 9.0})).json()
        assert after["reports"][0]["outcome"] == "stored"
    with _citizen(srv, "bjorn", "/fhir") as journal:
        log = journal.get("/AuditEvent", params={"patient": "bjorn"}).json()
        subtypes = {c.get("code") for e in log.get("entry", [])
                    for c in e["resource"].get("subtype", [])}
        assert "$purge" in subtypes


# ------------------------------------------------------------------ KITH Svarrapport end to end

KITH_DATA = Path(__file__).parent / "data" / "kith"
KITH_CORPUS = CORPORA / "norway" / "pasientens-provesvar" / "kith-svarrapport-xml"


def _patient_for(srv: ThreadServer, data: bytes, res_id: str) -> None:
    """Store the Patient a message names, so the delivery matches (as the population register
    would have it)."""
    (report, *_) = parse_svarrapport(data).reports
    if report.patient.value is None or classify_person_id(report.patient.value) is None:
        return  # the delivery waits for manual matching instead
    resp = httpx.put(f"{srv.url}/fhir/Patient/{res_id}", auth=srv.auth(), json={
        "resourceType": "Patient", "id": res_id,
        "identifier": [{"system": report.patient.system, "value": report.patient.value}]})
    assert resp.status_code in (200, 201), resp.text


def test_a_kith_delivery_answers_an_apprec_and_a_change_keeps_history(world):
    srv, lab, _ = world
    new = (KITH_DATA / "bio_v14_ny.xml").read_bytes()
    changed = (KITH_DATA / "bio_v14_endring.xml").read_bytes()
    _patient_for(srv, new, "kith-ase")
    first = _deliver(lab, new, "application/xml")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(first.content)
    ns = {"a": APPREC_NS}
    assert root.find("a:Status", ns).get("V") == "1"
    assert root.find("a:OriginalMsgId/a:Id", ns).text == "MSG-BIO-NY-1"
    second = _deliver(lab, changed, "application/xml")
    assert second.status_code == 200, second.text
    reports = lab.get("/results/fhir/DiagnosticReport", params={"patient": "kith-ase"}).json()
    assert len(reports["entry"]) == 1  # the change landed on the same report
    dr = reports["entry"][0]["resource"]
    assert dr["meta"]["versionId"] == "2"
    garbage = _deliver(lab, b"<Message xmlns='urn:other'/>", "application/xml")
    assert garbage.status_code == 400
    rejected = ElementTree.fromstring(garbage.content)
    assert rejected.find("a:Status", ns).get("V") == "2"
    assert rejected.find("a:Error", ns).get("V") == "T02"


@pytest.mark.skipif(not KITH_CORPUS.is_dir(),
                    reason="NHN's Svarrapport examples (../shared/corpora) are not present")
def test_every_nhn_example_message_is_delivered_and_stored(world):
    srv, lab, _ = world
    for n, path in enumerate(sorted(KITH_CORPUS.glob("*.xml"))):
        data = path.read_bytes()
        _patient_for(srv, data, f"nhn-{n}")
        resp = _deliver(lab, data, "application/xml")
        assert resp.status_code in (200, 202), (path.name, resp.text)
        status = ElementTree.fromstring(resp.content).find(f"{{{APPREC_NS}}}Status")
        assert status is not None and status.get("V") == "1", path.name


# ------------------------------------------------------------------ what the review found


def _lab(srv: ThreadServer, client_id: str) -> httpx.Client:
    token = mint_token(srv, client_id=client_id, scope=LAB_SCOPES)
    return httpx.Client(base_url=srv.url, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def test_only_the_citizen_makes_or_withdraws_a_reservation(world):
    srv, _, _ = world
    params = {"resourceType": "Parameters",
              "parameter": [{"name": "reserve", "valueBoolean": False}]}
    consent = {"resourceType": "Consent", "id": "fake-reservation", "status": "active",
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                               "consentscope", "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "https://akson.no/fhir/CodeSystem/"
                                                   "consent-category",
                                         "code": "reservasjon-provesvar"}]}],
               "patient": _ref("Patient", "anna"), "provision": {"type": "deny"}}
    with _gp(srv) as gp:
        assert gp.post("/Patient/anna/$reservation", json=params).status_code == 403
        journal = httpx.put(f"{srv.url}/fhir/Consent/fake-reservation", json=consent,
                            headers={"Authorization": gp.headers["Authorization"]})
        assert journal.status_code == 403


def test_results_are_written_by_the_results_service_only(world):
    srv, lab, _ = world
    stored = _deliver(lab, bundle("W-1", "anna", {"NOR06666": 6.6})).json()
    obs_ref = next(r for r in stored["reports"][0]["resources"] if r.startswith("Observation/"))
    with _gp(srv) as gp:
        auth = {"Authorization": gp.headers["Authorization"]}
        tagged = {"resourceType": "Observation", "id": "forged", "status": "final",
                  "meta": {"tag": [{"system": "https://akson.no/fhir/CodeSystem/origin",
                                    "code": "results"}]},
                  "code": {"text": "BT"}, "subject": _ref("Patient", "anna")}
        forged = httpx.put(f"{srv.url}/fhir/Observation/forged", json=tagged, headers=auth)
        assert forged.status_code == 403
        current = httpx.get(f"{srv.url}/fhir/{obs_ref}", headers=auth).json()
        untagged = {k: v for k, v in current.items() if k != "meta"}
        assert httpx.put(f"{srv.url}/fhir/{obs_ref}", json=untagged,
                         headers=auth).status_code == 403
        assert httpx.delete(f"{srv.url}/fhir/{obs_ref}", headers=auth).status_code == 403


def test_a_page_token_of_the_journal_does_not_page_the_results_base(world):
    srv, lab, _ = world
    journal = lab.get("/fhir/Observation", params={"patient": "anna", "_count": "1"}).json()
    nxt = next(link["url"] for link in journal["link"] if link["relation"] == "next")
    token = nxt.split("_page=", 1)[1]
    replay = lab.get("/results/fhir/Observation", params={"_page": token})
    assert replay.status_code == 400


def test_one_lab_cannot_see_or_overwrite_another_labs_deliveries(world):
    srv, _, _ = world
    with _lab(srv, "lab-a") as lab_a, _lab(srv, "lab-b") as lab_b:
        mine = _deliver(lab_a, bundle("SAME-1", "anna", {"NOR05555": 1.0})).json()
        theirs = _deliver(lab_b, bundle("SAME-1", "anna", {"NOR05555": 2.0},
                                        issued="2026-11-29T10:00:00+01:00")).json()
        ids_a = set(mine["reports"][0]["resources"])
        assert not ids_a & set(theirs["reports"][0]["resources"])
        obs = next(r for r in ids_a if r.startswith("Observation/"))
        assert lab_a.get(f"/results/fhir/{obs}").json()["valueQuantity"]["value"] == 1.0
        assert lab_b.get(f"/results/messages/{mine['delivery']}").status_code == 404
        listed = lab_b.get("/results/messages", params={"state": "stored"}).json()
        assert mine["delivery"] not in [m["delivery"] for m in listed["messages"]]


def test_match_refuses_to_file_two_unidentified_persons_in_one_record(world):
    _, lab, _ = world
    first = {"resourceType": "Patient", "name": [{"family": "Olsen"}], "birthDate": "1950-01-01"}
    second = {"resourceType": "Patient", "name": [{"family": "Hansen"}],
              "birthDate": "2001-01-01"}
    one = orjson.loads(bundle("U-1", None, {FT4: 1.0}, patient=first))
    two = orjson.loads(bundle("U-2", None, {FT4: 2.0}, patient=second))
    for entry in two["entry"]:  # distinct fullUrls, so the two reports stay apart
        entry["fullUrl"] = entry["fullUrl"][:-4] + "beef"
        res = entry["resource"]
        for ref in [*res.get("result", []), res.get("subject") or {}]:
            if "reference" in ref:
                ref["reference"] = ref["reference"][:-4] + "beef"
    both = {**one, "identifier": {"system": "urn:lab:x", "value": "two-persons"},
            "entry": one["entry"] + two["entry"]}
    resp = _deliver(lab, orjson.dumps(both))
    assert resp.status_code == 202, resp.text
    delivery = resp.json()["delivery"]
    keys = [r["report_key"] for r in resp.json()["reports"]]
    assert len(keys) == 2
    refused = lab.post(f"/results/messages/{delivery}/$match", json={"patient": "Patient/anna"})
    assert refused.status_code == 409
    one_only = lab.post(f"/results/messages/{delivery}/$match",
                        json={"patient": "Patient/anna", "report": keys[0]})
    assert one_only.status_code == 202, one_only.text  # the other one still waits
    outcomes = {r["report_key"]: r["outcome"] for r in one_only.json()["reports"]}
    assert outcomes == {keys[0]: "stored", keys[1]: "unmatched"}


def test_deliveries_that_break_a_reader_or_the_store_are_kept_not_lost(world):
    _, lab, _ = world
    huge = "\r".join([
        "MSH|^~\\&|LIS|Fürst^123456789^L|AKSON|NHN|20261120101500||ORU^R01|BIG-1|P|2.5.1",
        f"PID|1||{FNR['anna']}^^^^FNR||Ås^Anna||19710301|F",
        "OBR|1|PL-B|FL-B|NOR05863^FT4^NLK|||20261119080000|||||||||||||||20261120|||F",
        "OBX|1|NM|NOR05863^FT4^NLK||99999999999999999999999|pmol/L|||||F"]).encode()
    resp = _deliver(lab, huge, "x-application/hl7-v2+er7")
    assert resp.status_code in (200, 400), resp.text
    assert b"MSA|" in resp.content
    role = orjson.loads(bundle("PR-1", "anna", {FT4: 3.0}))
    role["entry"].append({"fullUrl": _urn("role"), "resource": {
        "resourceType": "PractitionerRole", "code": [{"text": "Lege"}]}})
    role["entry"][0]["resource"]["performer"] = [{"reference": _urn("role")}]
    answered = _deliver(lab, orjson.dumps(role))
    assert answered.status_code == 200, answered.text


def test_stored_deliveries_keep_no_bytes_and_waiting_ones_survive_a_reservation(world):
    srv, lab, _ = world
    stored = _deliver(lab, bundle("Y-1", "anna", {FT4: 4.0})).json()
    waiting = _deliver(lab, bundle("Y-2", None, {FT4: 5.0}, patient={
        "resourceType": "Patient", "name": [{"family": "Ukjent"}]})).json()
    runner = CliRunner(env={"AKSON_DATABASE_URL": world[2].database_url})
    queue = runner.invoke(results, ["queue"]).output
    assert str(waiting["delivery"]) in queue
    retry = lab.post(f"/results/messages/{stored['delivery']}/$retry")
    assert retry.status_code == 409  # stored: nothing waits, no bytes kept
