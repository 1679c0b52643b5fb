"""HL7 v2 ORU^R01 parsing: Norwegian fixtures, the ReportStream expected outputs, ACK/NAK, rejections."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from akson.fhir import jsonio
from akson.fhir.naming import DNR_SYSTEM, FNR_SYSTEM, HPR_SYSTEM
from akson.fhir.validation import validate
from akson.results.hl7v2 import ack, parse_oru
from akson.results.hl7v2_syntax import dtm_to_fhir, split_message
from akson.results.model import (
    CANCELLED,
    CATEGORY_SYSTEM,
    CHANGED,
    NEW,
    NLK_SYSTEM,
    PRELIMINARY,
    UCUM_SYSTEM,
    ParsedMessage,
    Rejected,
    resource_id,
)
from tests.shared_corpora import CORPORA

DATA = Path(__file__).parent / "data" / "hl7v2"
RS = CORPORA / "hl7v2" / "reportstream"
RS_CATCHALL = RS / "mappinginventory" / "catchall"
FNR = "14838512047"  # synthetic (Tenor), as in the fixtures
DNR = "70867223477"
FNR2 = "02919045054"


def load(name: str) -> ParsedMessage:
    return parse_oru((DATA / name).read_bytes())


def by_type(resources: tuple[dict[str, Any], ...] | list[dict[str, Any]], rtype: str
            ) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == rtype]


def codes(cc: dict[str, Any] | None) -> set[tuple[str | None, str]]:
    return {(c.get("system"), c["code"]) for c in (cc or {}).get("coding", []) if c.get("code")}


def assert_valid(msg: ParsedMessage) -> None:
    """Every resource passes structural validation once the pipeline has set its subject."""
    for report in msg.reports:
        for res in report.resources:
            res = json.loads(jsonio.dumps(res))  # what the store will see
            if res["resourceType"] in ("DiagnosticReport", "Observation", "ServiceRequest",
                                       "Specimen"):
                res["subject"] = {"reference": "Patient/p1"}
            issues = validate(res)
            assert issues == [], (res["resourceType"], issues)


# --------------------------------------------------------------------------- Norwegian fixtures


def test_lab_report_v251_maps_patient_codes_units_and_references() -> None:
    msg = load("no_lab_v251.hl7")
    assert msg.format == "hl7v2-2.5.1"
    assert msg.message_id == "MSG-0001"
    assert msg.sender == "Fürst Medisinsk Laboratorium"
    assert msg.sender_id == "2.16.578.1.12.4.1.2.12345"
    assert len(msg.reports) == 1
    report = msg.reports[0]
    assert report.report_key == "hl7v2:Fürst Medisinsk Laboratorium:LAB-2024-0001"
    assert report.status == NEW
    assert report.category == "CLIN"
    assert report.issued == "2024-03-15T10:15:00+01:00"
    p = report.patient
    assert (p.system, p.value) == (FNR_SYSTEM, FNR)
    assert (p.family, p.given, p.birth_date, p.gender) == ("Testesen", "Kari Åse", "1985-03-14",
                                                           "female")

    dr = report.resources[0]
    assert dr["resourceType"] == "DiagnosticReport"
    assert dr["id"] == resource_id(report.report_key, "report")
    assert "subject" not in dr
    assert dr["status"] == "final"
    assert dr["category"][0]["coding"][0] == {"system": CATEGORY_SYSTEM, "code": "CLIN"}
    # A local code keeps its OID (CWE-14) as the system.
    assert codes(dr["code"]) == {("urn:oid:2.16.578.1.12.4.1.1.9999", "BLODSTATUS")}
    assert dr["effectiveDateTime"] == "2024-03-14T08:30:00+01:00"  # Oslo winter time
    assert dr["issued"] == "2024-03-15T10:15:00+01:00"
    assert {i["value"] for i in dr["identifier"]} == {"REK-1001", "LAB-2024-0001"}

    ids = {r["id"] for r in report.resources}
    assert len(ids) == len(report.resources)
    observations = by_type(report.resources, "Observation")
    assert [r["reference"] for r in dr["result"]] == [f"Observation/{o['id']}"
                                                      for o in observations]
    hb, trc, crp, comment, glucose = observations
    assert codes(hb["code"]) == {(NLK_SYSTEM, "NPU02319")}
    assert hb["valueQuantity"] == {"value": 13.2, "unit": "g/dL", "system": UCUM_SYSTEM,
                                   "code": "g/dL"}
    assert hb["referenceRange"][0]["low"]["value"] == 11.7
    assert hb["referenceRange"][0]["high"]["value"] == 15.3
    assert hb["referenceRange"][0]["text"] == "11.7-15.3"
    assert hb["interpretation"][0]["coding"][0]["code"] == "N"
    assert trc["interpretation"][0]["coding"][0]["code"] == "H"
    assert trc["note"] == [{"text": "Kontrolleres om 3 måneder."}]
    assert crp["valueQuantity"]["comparator"] == "<"
    assert crp["valueQuantity"]["value"] == 5
    assert crp["referenceRange"][0]["high"]["value"] == 5
    # \T\ and \F\ are the escaped subcomponent and field separators.
    assert comment["valueString"] == "Prøve hemolysert & lipemisk | ikke sentrifugert"
    assert codes(glucose["code"]) == {("http://loinc.org", "14749-6")}
    # NM keeps its digits (5.80, not 5.8) when written as JSON.
    assert b'"value":5.80' in jsonio.dumps(glucose["valueQuantity"])
    assert all(o["status"] == "final" and "subject" not in o for o in observations)

    request = by_type(report.resources, "ServiceRequest")[0]
    assert dr["basedOn"] == [{"reference": f"ServiceRequest/{request['id']}"}]
    assert request["note"] == [{"text": "Prøven ankom romtemperert."}]
    assert request["authoredOn"] == "2024-03-14T09:00:00+01:00"
    roles = {r["id"]: r for r in by_type(report.resources, "PractitionerRole")}
    requester = roles[request["requester"]["reference"].split("/")[1]]
    assert requester["practitioner"]["identifier"] == {"system": HPR_SYSTEM, "value": "1000001"}
    assert requester["practitioner"]["display"] == "Dr Lise Lege"
    interpreter = roles[dr["resultsInterpreter"][0]["reference"].split("/")[1]]
    assert interpreter["practitioner"]["identifier"] == {"system": HPR_SYSTEM, "value": "1000002"}

    specimen = by_type(report.resources, "Specimen")[0]
    assert codes(specimen["type"]) == {("http://snomed.info/sct", "119297000")}
    assert specimen["collection"]["collectedDateTime"] == "2024-03-14T08:30:00+01:00"
    assert specimen["receivedTime"] == "2024-03-14T10:00:00+01:00"
    assert dr["specimen"] == [{"reference": f"Specimen/{specimen['id']}"}]
    assert hb["specimen"] == {"reference": f"Specimen/{specimen['id']}"}
    assert_valid(msg)


def test_corrected_redelivery_maps_onto_the_same_report_key_and_ids() -> None:
    first = load("no_lab_v251.hl7").reports[0]
    corrected = load("no_lab_v251_corrected.hl7").reports[0]
    assert corrected.report_key == first.report_key
    assert corrected.status == CHANGED
    assert [r["id"] for r in corrected.resources] == [r["id"] for r in first.resources]
    dr = corrected.resources[0]
    assert dr["status"] == "corrected"
    hb, _, _, comment, _ = by_type(corrected.resources, "Observation")
    assert hb["status"] == "corrected"
    assert hb["valueQuantity"]["value"] == 12.9
    assert comment["status"] == "entered-in-error"  # OBX-11 D (deleted)
    assert_valid(load("no_lab_v251_corrected.hl7"))


def test_cancelled_report() -> None:
    msg = load("no_lab_v251_cancelled.hl7")
    report = msg.reports[0]
    assert report.report_key == load("no_lab_v251.hl7").reports[0].report_key
    assert report.status == CANCELLED
    assert report.resources[0]["status"] == "cancelled"
    assert by_type(report.resources, "ServiceRequest")[0]["status"] == "revoked"
    obs = by_type(report.resources, "Observation")[0]
    assert obs["status"] == "cancelled"
    assert not any(k.startswith("value") for k in obs)
    assert_valid(msg)


def test_v23_microbiology_with_newlines_d_number_and_obr15_specimen() -> None:
    raw = (DATA / "no_mikro_v23.hl7").read_bytes()
    assert b"\r" not in raw and b"\n" in raw
    msg = parse_oru(raw)
    assert msg.format == "hl7v2-2.3"
    report = msg.reports[0]
    assert report.category == "MBIO"
    assert report.status == PRELIMINARY
    assert (report.patient.system, report.patient.value) == (DNR_SYSTEM, DNR)
    assert report.resources[0]["status"] == "preliminary"
    culture, count = by_type(report.resources, "Observation")
    assert codes(culture["valueCodeableConcept"]) == {("http://snomed.info/sct", "112283007")}
    # A unit that is not marked UCUM keeps its text and no code (FHIR qty-3).
    assert count["valueQuantity"] == {"value": 100000, "unit": "/mL"}
    specimen = by_type(report.resources, "Specimen")[0]
    assert codes(specimen["type"]) == {(None, "URIN")}
    assert_valid(msg)


def test_v24_latin1_radiology_with_formatted_text() -> None:
    raw = (DATA / "no_rtg_v24_latin1.hl7").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    msg = parse_oru(raw)
    assert msg.format == "hl7v2-2.4"
    assert msg.sender == "Røntgeninstituttet"
    assert msg.warnings == ()
    report = msg.reports[0]
    assert report.category == "RTG"
    assert report.patient.family == "Bjørnstad"
    assert report.patient.given == "Ærlend Øystein"
    assert (report.patient.system, report.patient.value) == (FNR_SYSTEM, FNR2)
    description, conclusion = by_type(report.resources, "Observation")
    # \.br\ is a line break, \X41\ a hex-escaped "A"; TX repetitions are lines.
    assert description["valueString"] == ("Hjerte og lunger: normale forhold.\n"
                                           "Ingen fortetninger Aø.")
    assert conclusion["valueString"] == "Normal undersøkelse\nIngen tegn på sykdom"
    assert codes(report.resources[0]["code"]) == {("urn:oid:2.16.578.1.12.4.1.1.7270", "LB0AA")}
    assert by_type(report.resources, "Specimen") == []  # imaging has no specimen
    assert_valid(msg)


def test_latin1_without_msh18_falls_back_with_a_warning() -> None:
    raw = (DATA / "no_rtg_v24_latin1.hl7").read_bytes().replace(b"|8859/1", b"|")
    msg = parse_oru(raw)
    assert msg.reports[0].patient.family == "Bjørnstad"
    assert any("iso-8859-1" in w for w in msg.warnings)


def test_bom_crlf_five_encoding_characters_and_name_only_patient() -> None:
    raw = (DATA / "no_patologi_bom.hl7").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    msg = parse_oru(raw)
    report = msg.reports[0]
    assert report.category == "HIST"
    p = report.patient
    assert (p.system, p.value) == (None, None)
    assert (p.family, p.given, p.birth_date, p.gender) == ("Hansen", "Ola", "1960-01-01", "male")
    # No filler number: the key uses the placer number.
    assert report.report_key.endswith(":P-1")
    dr = report.resources[0]
    assert dr["effectiveDateTime"] == "2024-01-30"  # date precision kept
    pdf, size, truncated = by_type(report.resources, "Observation")
    form = dr["presentedForm"][0]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]).startswith(b"%PDF-1.4")
    assert size["valueRange"]["low"]["value"] == 2 and size["valueRange"]["high"]["value"] == 4
    assert truncated["valueString"] == "a#b"  # \P\ is the truncation character
    assert_valid(msg)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024", "2024"),
    ("202403", "2024-03"),
    ("20240314", "2024-03-14"),
    ("202403140830", "2024-03-14T08:30:00+01:00"),
    ("2024031408", "2024-03-14T08:00:00+01:00"),
    ("20240714083015", "2024-07-14T08:30:15+02:00"),  # summer time
    ("20240714083015.1234", "2024-07-14T08:30:15.1234+02:00"),
    ("20230501102531-0400", "2023-05-01T10:25:31-04:00"),
    ("", None),
])
def test_dtm_precision_and_oslo_offset(value: str, expected: str | None) -> None:
    assert dtm_to_fhir(value) == expected


@pytest.mark.parametrize("value", ["0000", "20241301", "DATE!", "20240230", "2024031425"])
def test_bad_dtm(value: str) -> None:
    with pytest.raises(ValueError):
        dtm_to_fhir(value)


def test_unreadable_dates_are_left_out_with_a_warning() -> None:
    raw = (DATA / "no_lab_v251.hl7").read_bytes().replace(b"|20240314083000|", b"|0000|", 1)
    msg = parse_oru(raw)
    assert any("OBR-7" in w for w in msg.warnings)
    assert "effectiveDateTime" not in msg.reports[0].resources[0]


def test_several_orders_and_patients_in_one_message() -> None:
    text = (DATA / "no_lab_v251.hl7").read_bytes().decode("utf-8")
    second = (text.split("\r", 1)[1]
              .replace("LAB-2024-0001", "LAB-2024-0002")
              .replace(FNR, FNR2))
    msg = parse_oru((text + second).encode("utf-8"))
    first, other = msg.reports
    assert first.report_key != other.report_key
    assert first.patient.value == FNR and other.patient.value == FNR2
    assert not {r["id"] for r in first.resources} & {r["id"] for r in other.resources}


# --------------------------------------------------------------------------------- rejections


def _replace_msh(field: int, value: str) -> bytes:
    lines = (DATA / "no_lab_v251.hl7").read_bytes().decode("utf-8").split("\r")
    parts = lines[0].split("|")
    parts[field - 1] = value
    lines[0] = "|".join(parts)
    return "\r".join(lines).encode("utf-8")


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"),
    (b"\x00\xff\xfe garbage \x01\x02", "unreadable"),
    (b"PID|1||123\r", "unreadable"),
    (b"MSH|^~|bad", "unreadable"),
    (b"MSH|^~\\&|A|B\rPID|1\rnot a segment\r", "unreadable"),
    (_replace_msh(9, "ADT^A01^ADT_A01"), "schema"),
    (_replace_msh(12, "2.2"), "version"),
    (_replace_msh(10, ""), "no-message-id"),
])
def test_rejections(data: bytes, code: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_oru(data)
    assert info.value.code == code
    assert FNR not in info.value.text


def test_no_patient_and_no_results() -> None:
    lines = (DATA / "no_lab_v251.hl7").read_bytes().split(b"\r")
    no_pid = b"\r".join(line for line in lines if not line.startswith(b"PID"))
    with pytest.raises(Rejected) as info:
        parse_oru(no_pid)
    assert info.value.code == "no-patient"
    no_obr = b"\r".join(line for line in lines if not line.startswith((b"OBR", b"OBX")))
    with pytest.raises(Rejected) as info:
        parse_oru(no_obr)
    assert info.value.code == "no-results"


def test_truncated_message() -> None:
    raw = (DATA / "no_lab_v251.hl7").read_bytes()
    # Cut inside the PID: no OBR arrives.
    with pytest.raises(Rejected) as info:
        parse_oru(raw[: raw.index(b"PID") + 20])
    assert info.value.code == "no-results"
    # Cut inside the MSH: MSH-10 never arrives.
    with pytest.raises(Rejected) as info:
        parse_oru(raw[:40])
    assert info.value.code in ("no-message-id", "schema")
    # Cut inside an OBX: what arrived is read.
    cut = parse_oru(raw[: raw.index(b"OBX|2") + 12])
    assert len(by_type(cut.reports[0].resources, "Observation")) == 2


def test_newer_versions_are_read_with_a_warning() -> None:
    msg = parse_oru(_replace_msh(12, "2.7"))
    assert msg.format == "hl7v2-2.7"
    assert any("2.7" in w for w in msg.warnings)


# ------------------------------------------------------------------------------------ ACK/NAK


def _segments(reply: bytes) -> dict[str, list[str]]:
    text = reply.decode("utf-8")
    assert "\n" not in text and text.endswith("\r")
    return {line[:3]: line.split("|") for line in text.split("\r") if line}


def test_ack_accepts_and_swaps_sender_and_receiver() -> None:
    raw = (DATA / "no_lab_v251.hl7").read_bytes()
    segs = _segments(ack(raw, accepted=True))
    msh, msa = segs["MSH"], segs["MSA"]
    # msh[n - 1] is MSH-n: the reply's sender is the original receiver and vice versa.
    assert msh[2] == "AKSON"
    assert msh[3] == "NHN^2.16.578.1.12.4.1.2.1^ISO"
    assert msh[4] == "FLABO"
    assert msh[5] == "Fürst Medisinsk Laboratorium^2.16.578.1.12.4.1.2.12345^ISO"
    assert msh[8].startswith("ACK^R01") and msh[11] == "2.5.1"
    assert msa[1:3] == ["AA", "MSG-0001"]
    assert "ERR" not in segs
    # The ACK is itself a readable HL7 message.
    assert split_message(ack(raw, accepted=True)).segments[1].comp(2) == "MSG-0001"


def test_ack_error_escapes_text_and_keeps_version() -> None:
    raw = (DATA / "no_mikro_v23.hl7").read_bytes()
    reply = ack(raw, accepted=False, error="bad | field ^ here", code="AR")
    segs = _segments(reply)
    assert segs["MSH"][11] == "2.3"
    assert segs["MSA"][1:3] == ["AR", "MSG-0023"]
    assert segs["MSA"][3] == "bad \\F\\ field \\S\\ here"
    assert "ERR" in segs
    parsed = split_message(reply)
    assert parsed.segments[1].comp(3) == "bad | field ^ here"


def test_ack_v251_error_has_err_segment_with_user_message() -> None:
    raw = (DATA / "no_lab_v251.hl7").read_bytes()
    segs = _segments(ack(raw, accepted=False, error="Pasient ikke funnet"))
    assert segs["MSA"][1] == "AE"
    assert segs["ERR"][4] == "E"
    assert segs["ERR"][8] == "Pasient ikke funnet"


@pytest.mark.parametrize("data", [None, b"", b"garbage\x00\xff", b"PID|1"])
def test_nak_for_unreadable_input(data: bytes | None) -> None:
    segs = _segments(ack(data, accepted=False, error="unreadable"))
    assert segs["MSA"][1] == "AR"
    assert segs["MSA"][2] == ""
    assert segs["MSH"][11] == "2.5.1"


@pytest.mark.parametrize(("code", "msa1", "err5"), [
    ("T02", "AE", "T02"),  # an AppRec error code (receipt.Error.code)
    ("no-patient", "AE", "T02"),  # a rejection reason
    ("version", "AR", "T02"),
    ("T01", "AR", "T01"),
    ("CR", "CR", ""),
])
def test_ack_codes_from_the_pipeline(code: str, msa1: str, err5: str) -> None:
    raw = (DATA / "no_lab_v251.hl7").read_bytes()
    segs = _segments(ack(raw, accepted=False, error="Avvist", code=code))
    assert segs["MSA"][1:3] == [msa1, "MSG-0001"]
    assert segs["ERR"][5].split("^")[0] == err5


# ----------------------------------------------------------------- ReportStream expected outputs


def _rs_pairs() -> list[Path]:
    dirs = ["obx", "orur01", "orcobr", "pid", "spm", "cwe", "dtm", "nte", "xcn", "cx"]
    found: list[Path] = sorted((DATA / "reportstream").glob("*.hl7"))
    if RS_CATCHALL.exists():
        for d in dirs:
            found += sorted((RS_CATCHALL / d).rglob("*.hl7"))
    return [p for p in found if p.with_suffix(".fhir").exists()]


def _same_time(ours: str | None, theirs: str | None) -> bool:
    if ours is None or theirs is None:
        return ours == theirs
    if "T" not in ours or "T" not in theirs:
        return ours == theirs
    if theirs.endswith("Z"):
        # ReportStream reads a time without offset as UTC, Akson as Oslo time: compare the
        # local time the message wrote.
        return ours[:19] == theirs[:19]
    return datetime.fromisoformat(ours) == datetime.fromisoformat(theirs)


def _value_matches(ours: dict[str, Any], theirs: dict[str, Any], sn: bool) -> None:
    kinds = [k for k in theirs if k.startswith("value")]
    for kind in kinds:
        expected = theirs[kind]
        if kind == "valueQuantity":
            got = ours[kind]
            sn_decimal = any(e.get("url") == "SN.3" for e in expected.get("extension", []))
            # `^1^.^3` is 1.3 here; ReportStream keeps 1 and moves ".3" to extensions.
            assert got["value"] == expected["value"] or sn_decimal
            if "unit" in expected:
                assert got["unit"] == expected["unit"]
            assert got.get("comparator") == expected.get("comparator")
        elif kind == "valueCodeableConcept":
            assert {c for _, c in codes(ours[kind])} >= {c for _, c in codes(expected)}
        elif kind == "valueRange":
            for end in ("low", "high"):
                assert ours[kind][end]["value"] == expected[end]["value"]
        elif kind == "valueRatio":
            for part in ("numerator", "denominator"):
                assert ours[kind][part]["value"] == expected[part]["value"]
        elif kind == "valueDateTime":
            assert _same_time(ours[kind], expected)
        elif kind == "valueString" and not sn:
            # An SN that is neither a number, range nor ratio is kept as written here;
            # ReportStream joins its components with "+" signs.
            assert ours[kind] == expected
        elif kind == "valueTime":
            assert ours[kind].replace(":", "") == expected.replace(":", "")[:6]


def _compare(path: Path) -> int:
    """Compare our mapping of one ReportStream input with its expected Bundle; returns the
    number of resources compared."""
    try:
        msg = parse_oru(path.read_bytes())
    except Rejected:
        return 0
    assert_valid(msg)
    bundle = json.loads(path.with_suffix(".fhir").read_text("utf-8"))
    theirs: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry", []):
        theirs.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    ours = [r for report in msg.reports for r in report.resources]
    compared = 0

    def code_key(obs: dict[str, Any]) -> list[str]:
        return sorted(c for _, c in codes(obs.get("code")))

    # ReportStream lists a SPECIMEN group's OBX after all other observations: match by code.
    our_obs = sorted(by_type(ours, "Observation"), key=code_key)
    their_obs = sorted(theirs.get("Observation", []), key=code_key)
    assert len(our_obs) == len(their_obs)
    sn = b"|SN|" in path.read_bytes()
    for mine, expected in zip(our_obs, their_obs, strict=True):
        assert {c for _, c in codes(mine["code"])} >= {c for _, c in
                                                        codes(expected.get("code"))}
        known = {sc for sc in codes(expected.get("code"))
                 if sc[0] in ("http://loinc.org", "http://snomed.info/sct")}
        assert codes(mine["code"]) >= known
        if expected.get("status") not in (None, "unknown"):
            assert mine["status"] == expected["status"]
        _value_matches(mine, expected, sn)
        if "effectiveDateTime" in expected:
            assert _same_time(mine.get("effectiveDateTime"), expected["effectiveDateTime"])
        compared += 1

    our_reports = by_type(ours, "DiagnosticReport")
    assert len(our_reports) == len(theirs.get("DiagnosticReport", []))
    for mine, expected in zip(our_reports, theirs.get("DiagnosticReport", []), strict=True):
        assert {c for _, c in codes(mine["code"])} >= {c for _, c in
                                                        codes(expected.get("code"))}
        # An empty OBR-25 is "unknown" here; ReportStream says entered-in-error.
        if "unknown" not in (expected["status"], mine["status"]):
            assert mine["status"] == expected["status"]
        if "effectiveDateTime" in expected:
            assert _same_time(mine.get("effectiveDateTime"), expected["effectiveDateTime"])
        if "issued" in expected and "issued" in mine:
            assert _same_time(mine["issued"], expected["issued"])
        compared += 1

    our_specimen_types = [codes(s.get("type")) for s in by_type(ours, "Specimen")]
    for expected in theirs.get("Specimen", []):
        if "type" in expected:
            assert codes(expected["type"]) & set().union(*our_specimen_types)
            compared += 1

    for patient in theirs.get("Patient", [])[:1]:
        key = msg.reports[0].patient
        # None of these US test persons carries a Norwegian national id.
        assert (key.system, key.value) == (None, None)
        name = (patient.get("name") or [{}])[0]
        if name.get("family"):
            assert key.family == name["family"]
        if name.get("given"):
            assert key.given and key.given.split()[0] == name["given"][0]
        if patient.get("gender"):
            assert key.gender == patient["gender"]
        if patient.get("birthDate"):
            assert key.birth_date is None or key.birth_date == patient["birthDate"]
        compared += 1
    return compared


@pytest.mark.parametrize("path", _rs_pairs(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_reportstream_expected_fields(path: Path) -> None:
    _compare(path)


def test_reportstream_copies_always_compare() -> None:
    copies = sorted((DATA / "reportstream").glob("*.hl7"))
    assert sum(_compare(p) for p in copies if p.with_suffix(".fhir").exists()) >= 8
    hci = parse_oru((DATA / "reportstream" / "hci.hl7").read_bytes())
    assert_valid(hci)
    first = hci.reports[0]
    obs = by_type(first.resources, "Observation")[0]
    assert obs["valueQuantity"]["value"] == 5.8
    assert obs["valueQuantity"]["system"] == UCUM_SYSTEM
    # \X0d0a\ is CR LF and \T\ the escaped "&".
    assert obs["note"][0]["text"].startswith("Interpretation: \r\nNormal <5.7")
    assert "&#8805;6.5" in obs["note"][0]["text"]
    assert first.resources[0]["issued"] == "2023-08-15T16:45:19-05:00"


def test_reportstream_roundtrip_inputs_all_parse() -> None:
    folder = RS / "HL7_to_FHIR_to_HL7"
    if not folder.exists():
        pytest.skip(f"ReportStream corpus not found at {folder}")
    inputs = sorted(p for p in folder.glob("*.hl7") if not p.stem.endswith("-expected"))
    assert len(inputs) == 17
    for path in inputs:
        msg = parse_oru(path.read_bytes())
        assert msg.reports, path.name
        assert_valid(msg)


def test_reportstream_corpus_present_or_skipped() -> None:
    if not RS_CATCHALL.exists():
        pytest.skip(f"ReportStream corpus not found at {RS_CATCHALL}; only the copies ran")
    compared = sum(_compare(p) for p in _rs_pairs())
    assert compared > 100
