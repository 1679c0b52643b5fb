"""KITH Svarrapport (v1.3 / v1.4) → ParsedMessage: mapping, lifecycle, encodings, rejections.

Own fixtures in data/kith/ are synthetic (written from the XSDs, synthetic FNRs); the NHN example
messages are read from the shared corpora when present (never copied: they carry no licence).
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import pytest

from akson.fhir.naming import DNR_SYSTEM, FNR_SYSTEM, HNR_SYSTEM, HPR_SYSTEM
from akson.fhir.validation import validate
from akson.results.kith import parse_svarrapport
from akson.results.model import (
    CANCELLED,
    CATEGORY_SYSTEM,
    CHANGED,
    LIFECYCLE,
    NCRP_SYSTEM,
    NEW,
    NLK_SYSTEM,
    NORPAT_SYSTEM,
    PARTIAL,
    PRELIMINARY,
    SUBJECT_TYPES,
    UCUM_SYSTEM,
    ParsedMessage,
    ParsedReport,
    Rejected,
    references,
    resource_id,
)
from tests.shared_corpora import CORPORA

DATA = Path(__file__).parent / "data" / "kith"
CORPUS = CORPORA / "norway" / "pasientens-provesvar" / "kith-svarrapport-xml"
FNR = "02917545688"  # the synthetic FNR of the fixtures
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")


def parse(name: str) -> ParsedMessage:
    return parse_svarrapport((DATA / name).read_bytes())


def only(message: ParsedMessage) -> ParsedReport:
    assert len(message.reports) == 1
    return message.reports[0]


def of_type(report: ParsedReport, rtype: str) -> list[dict[str, Any]]:
    return [r for r in report.resources if r["resourceType"] == rtype]


def obs_by_code(report: ParsedReport, code: str) -> dict[str, Any]:
    found = [o for o in of_type(report, "Observation")
             if any(c.get("code") == code for c in o["code"].get("coding", []))]
    assert len(found) == 1, code
    return found[0]


def by_ref(report: ParsedReport, ref: str) -> dict[str, Any]:
    rtype, rid = ref.split("/")
    return next(r for r in report.resources if r["resourceType"] == rtype and r["id"] == rid)


def assert_valid(report: ParsedReport) -> None:
    """Every resource passes Akson's R4 validation once the pipeline has set `subject` (parsers
    never set it; R4 requires it on ServiceRequest)."""
    assert report.resources[0]["resourceType"] == "DiagnosticReport"
    assert report.status in LIFECYCLE
    ids = [r["id"] for r in report.resources]
    assert len(ids) == len(set(ids))
    for resource in report.resources:
        assert "subject" not in resource and "patient" not in resource
        assert UUID.fullmatch(resource["id"])
        stored = copy.deepcopy(resource)
        if stored["resourceType"] in SUBJECT_TYPES:
            stored["subject"] = {"reference": "Patient/p1"}
        issues = validate(stored)
        assert issues == [], (resource["resourceType"], [i.diagnostics for i in issues])
    # Every reference inside the report resolves to a resource of the report.
    local = {f"{r['resourceType']}/{r['id']}" for r in report.resources}
    for ref in references(list(report.resources)):
        assert ref in local, ref


# ------------------------------------------------------------------------------ own fixtures

FIXTURES = sorted(p.name for p in DATA.glob("*.xml"))


def test_fixture_set_is_complete() -> None:
    assert len(FIXTURES) >= 14


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_maps_to_valid_resources(name: str) -> None:
    message = parse(name)
    assert message.reports
    for report in message.reports:
        assert_valid(report)
        assert report.report_key.startswith("kith:")


def test_biochemistry_new_report() -> None:
    message = parse("bio_v14_ny.xml")
    assert message.format == "kith-svarrapport-1.4"
    assert message.message_id == "MSG-BIO-NY-1"
    assert message.sender == "Testlaboratoriet Fjordby HF"
    assert message.sender_id == "999999999"
    report = only(message)
    assert report.report_key == "kith:999999999:LAB0001B"
    assert (report.status, report.category) == (NEW, "CLIN")
    assert report.issued == "2020-03-17T10:15:00+01:00"  # winter time
    p = report.patient
    assert (p.system, p.value, p.family, p.given) == (FNR_SYSTEM, FNR, "Testesen", "Åse")
    assert (p.birth_date, p.gender) == ("1975-11-02", "female")

    dr = report.resources[0]
    assert dr["id"] == resource_id(report.report_key, "report")
    assert dr["status"] == "final"
    assert dr["category"][0]["coding"][0] == {"system": CATEGORY_SYSTEM, "code": "CLIN",
                                              "display": "Medisinsk biokjemi"}
    assert dr["issued"] == "2020-03-17T10:15:00+01:00"
    assert dr["effectiveDateTime"] == "2020-06-02T08:30:00+02:00"  # summer time
    assert {"use": "secondary", "type": {"text": "MsgId"}, "value": "MSG-BIO-NY-1"} in dr[
        "identifier"]
    assert any(i["value"] == "LAB0001B" for i in dr["identifier"])
    assert len(dr["result"]) == 6

    hb = obs_by_code(report, "NOR05172")
    assert hb["code"]["coding"][0]["system"] == NLK_SYSTEM
    assert hb["status"] == "final"
    assert hb["valueQuantity"] == {"value": 13.4, "unit": "g/dL", "system": UCUM_SYSTEM,
                                   "code": "g/dL"}  # decimal comma
    assert hb["referenceRange"][0]["low"]["value"] == 11.7
    assert hb["referenceRange"][0]["high"]["value"] == 15.3
    assert hb["referenceRange"][0]["text"] == "11,7 - 15,3"
    assert hb["effectiveDateTime"] == "2020-06-02T08:30:00+02:00"
    assert hb["issued"] == "2020-03-17T10:15:00+01:00"
    assert by_ref(report, hb["specimen"]["reference"])["type"]["coding"][0]["code"] == "B"

    krea = obs_by_code(report, "NPU04998")
    assert krea["valueQuantity"]["code"] == "umol/L"
    assert krea["valueQuantity"]["unit"] == "µmol/L"
    assert krea["interpretation"][0]["coding"][0]["code"] == "H"

    crp = obs_by_code(report, "NPU19748")
    assert crp["valueQuantity"]["comparator"] == "<"
    assert crp["valueQuantity"]["value"] == 5
    assert crp["referenceRange"][0]["high"]["value"] == 5
    tnt = obs_by_code(report, "NPU27505")
    assert (tnt["valueQuantity"]["comparator"], tnt["valueQuantity"]["value"]) == ("<", 3)
    lpk = obs_by_code(report, "NPU02593")
    assert lpk["valueQuantity"]["code"] == "10*9/L"
    assert lpk["note"] == [{"text": "Prøven er lett hemolysert; vurdér ny prøve"}]

    # A malformed single value is kept as text with a warning, not a rejection.
    na = obs_by_code(report, "NPU03429")
    assert na["valueString"] == "ikke målbar mmol/L"
    assert any("not a number" in w for w in message.warnings)

    # Requester: the ServiceRequest's PractitionerRole names the HPR person and the practice.
    (sr,) = of_type(report, "ServiceRequest")
    assert dr["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
    assert sr["authoredOn"] == "2020-06-01T14:00:00+02:00"
    assert {i["value"] for i in sr["identifier"]} == {"REQ-77", "LAB0001"}
    role = by_ref(report, sr["requester"]["reference"])
    assert role["practitioner"]["identifier"] == {"system": HPR_SYSTEM, "value": "565501872"}
    assert role["organization"]["display"] == "Prøvetun legesenter"
    assert role["id"] == resource_id("kith-role:HPR:565501872:name:Prøvetun legesenter", "role")
    # The responsible person (RelServProv) performs, with an HPR id and phone.
    performer = by_ref(report, dr["performer"][0]["reference"])
    assert performer["practitioner"]["identifier"]["value"] == "8000001"
    assert performer["telecom"] == [{"system": "phone", "value": "12345678"}]


def test_correction_keeps_report_key_and_resource_ids() -> None:
    new, changed = only(parse("bio_v14_ny.xml")), only(parse("bio_v14_endring.xml"))
    assert changed.report_key == new.report_key
    assert changed.status == CHANGED
    assert changed.resources[0]["id"] == new.resources[0]["id"]
    assert changed.resources[0]["status"] == "amended"
    assert of_type(changed, "Specimen")[0]["id"] == of_type(new, "Specimen")[0]["id"]
    hb_new, hb_changed = obs_by_code(new, "NOR05172"), obs_by_code(changed, "NOR05172")
    assert hb_changed["id"] == hb_new["id"]
    assert hb_changed["status"] == "amended"
    assert hb_changed["valueQuantity"]["value"] == 12.9
    assert obs_by_code(changed, "NPU04998")["status"] == "final"  # H: history, unchanged
    na = obs_by_code(changed, "NPU03429")
    assert na["id"] == obs_by_code(new, "NPU03429")["id"]
    assert na["status"] == "cancelled"  # ServType C / "Undersøkelse slettet"
    assert changed.issued == "2020-06-03T09:00:00+02:00"


def test_cancellation_of_the_whole_report() -> None:
    new, cancelled = only(parse("bio_v14_ny.xml")), only(parse("bio_v14_kansellering.xml"))
    assert cancelled.report_key == new.report_key
    assert cancelled.status == CANCELLED
    dr = cancelled.resources[0]
    assert dr["id"] == new.resources[0]["id"]
    assert dr["status"] == "cancelled"
    assert "result" not in dr
    assert dr["effectiveDateTime"] == "2020-06-02T12:00:00+02:00"  # IssueDate fallback
    assert of_type(cancelled, "ServiceRequest")[0]["status"] == "revoked"


def test_v13_message_with_two_reports() -> None:
    message = parse("v13_two_reports.xml")
    assert message.format == "kith-svarrapport-1.3"
    first, second = message.reports
    assert first.report_key != second.report_key
    assert first.resources[0]["id"] != second.resources[0]["id"]
    assert (first.status, second.status) == (NEW, PRELIMINARY)
    assert second.resources[0]["status"] == "preliminary"
    assert (second.patient.system, second.patient.gender) == (DNR_SYSTEM, "male")
    assert obs_by_code(second, "NPU01700")["valueQuantity"]["value"] == 300
    assert obs_by_code(first, "NOR05172")["valueQuantity"]["value"] == 14.1


def test_microbiology_isolate_resistance_and_partial_report() -> None:
    report = only(parse("mbio_resistance_delsvar.xml"))
    assert (report.category, report.status) == ("MBIO", PARTIAL)
    assert report.resources[0]["status"] == "partial"
    isolate = next(o for o in of_type(report, "Observation")
                   if o.get("valueString") == "Escherichia coli")
    members = [by_ref(report, m["reference"]) for m in isolate["hasMember"]]
    amount = next(m for m in members if m["code"] == {"text": "Mengde"})
    assert amount["valueString"] == ">100 000 CFU/mL"
    mecillinam = obs_by_code(report, "NPU06044")
    ampicillin = obs_by_code(report, "NPU06045")
    assert {m["id"] for m in members} == {amount["id"], mecillinam["id"], ampicillin["id"]}
    assert mecillinam["derivedFrom"] == [{"reference": f"Observation/{isolate['id']}"}]
    assert mecillinam["valueCodeableConcept"]["coding"][0] == {
        "system": "urn:oid:2.16.578.1.12.4.1.1.8271", "code": "S",
        "display": "Sensitiv, standarddose"}
    assert mecillinam["valueCodeableConcept"]["text"] == "0,25"  # the MIC as given
    assert ampicillin["valueCodeableConcept"]["coding"][0]["code"] == "R"
    assert obs_by_code(report, "NPU99999")["status"] == "registered"  # still in process


def test_histology_with_norpat() -> None:
    report = only(parse("hist_norpat.xml"))
    assert report.category == "HIST"
    dr = report.resources[0]
    codes = [c["coding"][0] for c in dr["conclusionCode"]]
    assert {"system": NORPAT_SYSTEM, "code": "M 80903", "display": "basalcellekarsinom"} in codes
    assert dr["conclusion"] == "Ingen videre tiltak nødvendig."
    finding = next(o for o in of_type(report, "Observation") if "valueCodeableConcept" in o)
    assert finding["valueCodeableConcept"]["text"] == "Basalcellekarsinom, radikalt fjernet."
    assert finding["code"] == {"text": "Funn og undersøkelsesresultater"}
    interpreter = by_ref(report, dr["resultsInterpreter"][0]["reference"])
    assert interpreter["practitioner"]["display"] == "Patolog, Per"
    assert interpreter["code"][0]["coding"][0]["code"] == "AUT"
    (specimen,) = of_type(report, "Specimen")
    assert specimen["collection"] == {"collectedDateTime": "2020-10-01",
                                      "bodySite": {"text": "Venstre underarm"}}
    assert specimen["type"] == {"text": "Hudbiopsi"}


def test_radiology_with_ncrp() -> None:
    report = only(parse("rtg_ncrp.xml"))
    assert report.category == "RTG"
    dr = report.resources[0]
    assert {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"} in [
        c["coding"][0] for c in dr["category"]]
    (obs,) = of_type(report, "Observation")
    assert obs["code"]["coding"][0] == {"system": NCRP_SYSTEM, "code": "GDA0AA",
                                        "display": "RG Thorax"}
    assert obs["category"][0]["coding"][0]["code"] == "imaging"
    assert obs["valueString"] == "Thorax front og side.\n\nR: Ingen fortetninger."
    assert obs["effectiveDateTime"] == "2020-12-01T13:05:00+01:00"  # InvDate, no specimen
    assert obs["status"] == "final"  # 11 Signert
    assert not of_type(report, "ImagingStudy")  # the XML names no study


@pytest.mark.parametrize("name", ["latin1_declares_utf8.xml", "utf8_bom.xml",
                                  "utf16le_declares_latin1.xml"])
def test_encodings_keep_norwegian_letters(name: str) -> None:
    message = parse(name)
    obs = obs_by_code(only(message), "NOR05172")
    assert obs["note"] == [{"text": "Prøven ble tatt på legekontoret i Ærøy: æøå ÆØÅ"}]
    assert only(message).patient.family == "Testesen"
    assert only(message).patient.given == "Åse"
    disagreed = name != "utf8_bom.xml"
    assert any("declaration" in w for w in message.warnings) is disagreed


def test_embedded_attachment_becomes_presented_form() -> None:
    dr = only(parse("attachment.xml")).resources[0]
    (form,) = dr["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert form["title"] == "Utskrift av svaret"
    assert base64.b64decode(form["data"]).startswith(b"%PDF-1.4")
    assert "\n" not in form["data"]


def test_report_without_requester_is_valid() -> None:
    report = only(parse("no_requester.xml"))
    (sr,) = of_type(report, "ServiceRequest")
    assert "requester" not in sr
    roles = of_type(report, "PractitionerRole")
    assert all(r.get("code", [{}])[0].get("coding", [{}])[0].get("code") != "REK" for r in roles)


def test_patient_with_only_birth_date_and_name() -> None:
    p = only(parse("birthdate_only.xml")).patient
    assert (p.system, p.value) == (None, None)
    assert (p.family, p.given, p.birth_date) == ("Ukjent", "Kari", "2001-01-09")


def test_patient_name_without_comma_is_given_then_family() -> None:
    text = _fixture_text().replace("<Name>Testesen, Åse</Name>", "<Name>Åse Marie Testesen</Name>")
    p = only(parse_svarrapport(text.encode())).patient
    assert (p.family, p.given) == ("Testesen", "Åse Marie")


def test_msghead_envelope_is_unwrapped() -> None:
    message = parse("msghead_wrapped.xml")
    assert message.format == "kith-svarrapport-1.4"
    assert message.message_id == "MSG-MH-INNER-1"
    assert only(message).report_key == "kith:999999999:MH-1B"


def test_same_person_at_same_org_is_one_role_across_reports() -> None:
    a, b = only(parse("bio_v14_ny.xml")), only(parse("attachment.xml"))
    roles_a = {r["id"] for r in of_type(a, "PractitionerRole")}
    roles_b = {r["id"] for r in of_type(b, "PractitionerRole")}
    assert roles_a & roles_b == roles_a


# ------------------------------------------------------------------------------- rejections

def _fixture_text(name: str = "bio_v14_ny.xml") -> str:
    return (DATA / name).read_text("utf-8")


def _rejected(data: bytes) -> Rejected:
    with pytest.raises(Rejected) as e:
        parse_svarrapport(data)
    assert FNR not in e.value.text and "Testesen" not in e.value.text
    return e.value


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"MSH|^~\\&|LAB|999|AKSON|NHN|20200317||ORU^R01|1|P|2.5.1\r", "unreadable"),
        (b'<!DOCTYPE Message [<!ENTITY x "y">]><Message>&x;</Message>', "unreadable"),
        (b'<Message xmlns="http://example.org/not-kith"><Type V="SVAR_LAB"/></Message>',
         "schema"),
        (b"<Message><Type V='SVAR_LAB'/></Message>", "schema"),
        (b'<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><Document><RefDoc>'
         b"<Content/></RefDoc></Document></MsgHead>", "schema"),
    ],
)
def test_unusable_bytes_are_rejected(data: bytes, code: str) -> None:
    assert _rejected(data).code == code


def test_truncated_file_is_unreadable_with_position() -> None:
    data = (DATA / "bio_v14_ny.xml").read_bytes()
    error = _rejected(data[: len(data) // 2])
    assert error.code == "unreadable"
    assert re.search(r"line \d+ column \d+", error.text)


def test_wrong_message_type_is_rejected() -> None:
    text = _fixture_text().replace('<Type V="SVAR_LAB"', '<Type V="REKV_LAB"')
    error = _rejected(text.encode())
    assert error.code == "schema"
    assert "REKV_LAB" in error.text


def test_message_without_patient_is_rejected() -> None:
    text = re.sub(r"<Patient>.*</Patient>\n", "", _fixture_text(), flags=re.S)
    assert _rejected(text.encode()).code == "no-patient"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('<GenDate V="2020-03-17T10:15:00"/>', '<GenDate V="17.03.2020 kl 10"/>'),
        ('<GenDate V="2020-03-17T10:15:00"/>', ""),
        ('<IssueDate V="2020-06-02T12:00:00"/>', '<IssueDate V="2020-13-45T12:00:00"/>'),
    ],
)
def test_unreadable_required_date_is_invalid_value(old: str, new: str) -> None:
    text = _fixture_text()
    assert old in text
    assert _rejected(text.replace(old, new).encode()).code == "invalid-value"


def test_missing_message_id_and_report_are_rejected() -> None:
    text = _fixture_text()
    assert _rejected(re.sub(r"<MsgId>.*</MsgId>", "", text).encode()).code == "no-message-id"
    no_report = re.sub(r"<ServReport>.*</ServReport>\n", "", text, flags=re.S)
    assert _rejected(no_report.encode()).code == "no-results"


# --------------------------------------------------------------------- NHN example messages

needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"KITH example corpus not found at {CORPUS}")
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.xml")) if CORPUS.is_dir() else []


def corpus(name: str) -> ParsedMessage:
    return parse_svarrapport((CORPUS / name).read_bytes())


@needs_corpus
def test_corpus_has_the_twenty_examples() -> None:
    assert len(CORPUS_FILES) == 20


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_message_parses_and_validates(name: str) -> None:
    message = corpus(name)
    assert message.message_id
    for report in message.reports:
        assert_valid(report)
        assert report.patient.value is not None


@needs_corpus
def test_corpus_endelig_and_sletting_are_one_report() -> None:
    final = only(corpus("SvarMBK-Unilab-OUS_Endelig_20200317.xml"))
    deletion = only(corpus("SvarMBK-Unilab-OUS_Sletting_20200317.xml"))
    assert final.report_key == deletion.report_key
    assert final.resources[0]["id"] == deletion.resources[0]["id"]
    assert (final.status, deletion.status) == (NEW, CHANGED)
    b12 = obs_by_code(deletion, "NPU01700")
    assert b12["id"] == obs_by_code(final, "NPU01700")["id"]
    assert b12["status"] == "cancelled"  # "Undersøkelse slettet"


@needs_corpus
@pytest.mark.parametrize(
    "names",
    [
        ("fagmelding.Svarrapport.v1.4.NY.xml", "fagmelding.Svarrapport.v1.4.ENDRING.xml",
         "fagmelding.Svarrapport.v1.4.KANSELLERING.xml"),
        ("SVAR_CLIN_1_unilab_NY.xml", "SVAR_CLIN_1_unilab_ENDRING.xml"),
    ],
)
def test_corpus_pairs_without_a_shared_report_id_cannot_be_linked(names: tuple[str, ...]) -> None:
    """These "pairs" share no report or requisition id: the fagmelding files carry a freshly
    generated GUID in ServProvId and ServReq/Id per message, and the unilab NY/ENDRING are two
    different reports (lab numbers 211703xx / 62418xxx, other analyses). The keys differ, and
    each message's own lifecycle is still read correctly."""
    messages = [corpus(n) for n in names]
    keys = {only(m).report_key for m in messages}
    assert len(keys) == len(names)
    statuses = [only(m).status for m in messages]
    assert statuses[0] == NEW
    assert statuses[1] == CHANGED
    if len(names) == 3:
        assert statuses[2] == CANCELLED


@needs_corpus
def test_corpus_spot_checks() -> None:
    unilab = only(corpus("SVAR_CLIN_1_unilab_NY.xml"))
    ca199 = obs_by_code(unilab, "NPU01450")
    assert ca199["valueQuantity"] == {"value": 5, "comparator": "<", "unit": "kU/L",
                                      "system": UCUM_SYSTEM, "code": "kU/L"}
    assert ca199["effectiveDateTime"] == "2021-03-29T14:55:00+02:00"
    assert unilab.patient.birth_date == "1947-06-11"

    rtg = corpus("RTG01anonym.xml")
    assert rtg.format == "kith-svarrapport-1.3"
    assert only(rtg).category == "RTG"
    assert obs_by_code(only(rtg), "SNH0AA")["code"]["coding"][0]["system"] == NCRP_SYSTEM

    histology = only(corpus("Svar_patologi_histologi_v1-4_Ny.xml"))
    assert histology.status == PRELIMINARY
    assert histology.resources[0]["status"] == "preliminary"

    cyto = only(corpus("SVAR_CYTO_eks_1_.xml"))
    assert cyto.patient.system == HNR_SYSTEM

    mbk = corpus("SvarMBK-Unilab-OUS_Endelig_20200317.xml")
    assert only(mbk).issued == "2020-03-17T10:06:09.7189+01:00"
    hb = obs_by_code(only(mbk), "NOR05172")
    assert hb["code"]["coding"][0]["system"] == NLK_SYSTEM

    radiology = only(corpus("Svar_radiologi_v1-4_Ny.xml"))
    obs = of_type(radiology, "Observation")
    assert all(o["category"][0]["coding"][0]["code"] == "imaging" for o in obs)
    assert any("Reversert flow i vena porta" in o.get("valueString", "") for o in obs)

    dyrkning = only(corpus("Svar_mikrobiologi_dyrkning_v1-4_Ny.xml"))
    isolates = [o for o in of_type(dyrkning, "Observation")
                if o.get("valueString") == "Escherichia coli"]
    assert len(isolates[0]["hasMember"]) == 6  # amount + five resistance results
    sender = corpus("Svar_mikrobiologi_dyrkning_v1-4_Ny.xml")
    assert (sender.sender, sender.sender_id) == ("Nordlandssykehuset HF", "13")


@needs_corpus
def test_corpus_requester_from_latin1_file() -> None:
    report = only(corpus("SVAR_CLIN_1_unilab_NY.xml"))  # ISO-8859-1 bytes
    (sr,) = of_type(report, "ServiceRequest")
    role = by_ref(report, sr["requester"]["reference"])
    assert role["practitioner"]["identifier"] == {"system": HPR_SYSTEM, "value": "9144889"}
    assert role["organization"]["display"] == "Borgeåsen Legesenter  Da"
