"""AuditEvent mapping (akson.access.audit): the attestation as the HL7 Norway AuditEvent IG maps
it, break-the-glass made plain, and a citizen view that never shows a practitioner's national id."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import orjson
import pytest

from akson.access.audit import (
    CARE_RELATION_EXT,
    ENCOUNTER_EXT,
    PATIENT_EXT,
    PURPOSE_SYSTEM,
    OrgNames,
    PatientRef,
    Source,
    agent_key,
    audit_entry,
    audit_event,
    build_event,
    citizen_view,
    served,
)
from akson.access.principal import CareRelationship, Principal
from akson.fhir.identifiers import make_fnr
from akson.store.audit_log import AuditRecord

T0 = 1_760_000_000_000_000
SOURCE = Source(site="akson-test-node")
DOCTOR_FNR = make_fnr(date(1966, 8, 20), 2, synthetic="tenor")
PATIENT_FNR = make_fnr(date(1966, 7, 5), 3, synthetic="tenor")
assert DOCTOR_FNR and PATIENT_FNR


def doctor(purpose: str = "TREAT", *, user_selected: bool = False,
           reason: str | None = None) -> Principal:
    return Principal(
        kind="practitioner", issuer="https://helseid-sts.test.nhn.no", subject="sub-abc",
        client_id="epj", national_id=DOCTOR_FNR, name="August September", hpr_number="9144897",
        orgnr_parent="974589095", orgnr_child="874716782", security_level="4",
        care_relationship=CareRelationship(
            purpose_of_use=purpose, healthcare_service="KP02", purpose_of_use_details="15",
            decision_ref_id="vedtak-17", decision_ref_description=reason,
            user_selected=user_selected, patients=(PATIENT_FNR,), toa=1_760_000_000),
    )


def stored(principal: Principal, **kw: object) -> AuditRecord:
    args: dict = {"action": "R", "subtype": "read", "recorded": T0, "source": SOURCE,
                  "patients": [PatientRef("pat-1", PATIENT_FNR)], "resources": ["Patient/pat-1"]}
    args.update(kw)
    entry = audit_entry(principal, **args)
    return AuditRecord(chain=0, seq=1, entry=entry, prev_hash=bytes(32), hash=bytes(32))


def ext(event: dict, url: str) -> dict:
    return next(e for e in event["extension"] if e["url"] == url)


def test_the_attestation_maps_to_purpose_of_event_and_care_relation_metadata() -> None:
    event = build_event(doctor(), action="R", subtype="read", recorded=T0, source=SOURCE,
                        patients=[PatientRef("pat-1", PATIENT_FNR)])
    coding = event["purposeOfEvent"][0]["coding"]
    assert coding[0] == {"system": PURPOSE_SYSTEM, "code": "TREAT", "display": "treatment"}
    assert coding[1]["code"] == "15"  # purpose_of_use_details
    parts = {p["url"]: p for p in ext(event, CARE_RELATION_EXT)["extension"]}
    assert parts["decision-ref-id"]["valueString"] == "vedtak-17"
    assert parts["decision-ref-user-selected"]["valueBoolean"] is False
    assert parts["toa"]["valueUnsignedInt"] == 1_760_000_000
    assert event["recorded"] == "2025-10-09T08:53:20.000000Z" and event["action"] == "R"
    assert event["source"]["site"] == "akson-test-node"
    encounter = next(c for c in event["contained"] if c["resourceType"] == "Encounter")
    assert encounter["serviceType"]["coding"][0]["code"] == "KP02"
    assert ext(event, ENCOUNTER_EXT)["valueReference"] == {"reference": "#care"}


def test_one_patient_gets_the_ig_patient_link_and_every_patient_an_entity() -> None:
    one = build_event(doctor(), action="R", subtype="read", recorded=T0, source=SOURCE,
                      patients=[PatientRef("pat-1", PATIENT_FNR)], resources=["Observation/o1"])
    assert ext(one, PATIENT_EXT)["valueReference"] == {"reference": "#patient"}
    assert one["contained"][0]["identifier"] == [
        {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": PATIENT_FNR}]
    whats = [e["what"]["reference"] for e in one["entity"]]
    assert whats == ["Patient/pat-1", "Observation/o1"]

    many = build_event(doctor(), action="R", subtype="search-type", recorded=T0, source=SOURCE,
                       patients=[PatientRef("a"), PatientRef("b"), PatientRef("a")],
                       query="Observation?code=1234-5")
    # The IG's patient link is for one patient per event.
    assert all(c["resourceType"] != "Patient" for c in many.get("contained", []))
    assert all(e["url"] != PATIENT_EXT for e in many["extension"])
    roles = [(e.get("what", {}).get("reference"), e["role"]["code"]) for e in many["entity"]]
    assert roles == [("Patient/a", "1"), ("Patient/b", "1"), (None, "24")]


def test_legal_entity_and_point_of_care_are_agent_organisations() -> None:
    event = build_event(doctor(), action="R", subtype="read", recorded=T0, source=SOURCE,
                        names=OrgNames("Oslo kommune", "Legevakten"))
    user, legal, unit = event["agent"]
    assert user["requestor"] is True and user["name"] == "August September"
    assert user["who"]["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.4",
                                         "value": "9144897"}
    assert legal["who"] == {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101",
                                           "value": "974589095"}, "display": "Oslo kommune"}
    assert legal["type"]["coding"][0]["code"] == "PROV"
    assert unit["who"]["identifier"]["value"] == "874716782"


def test_the_practitioners_national_id_is_never_written() -> None:
    for subtype in ("read", "login", "break-glass", "$everything", "export"):
        record = stored(doctor("BTG", reason="bevisstløs pasient"), subtype=subtype,
                        action="E" if subtype != "read" else "R")
        assert DOCTOR_FNR.encode() not in record.entry.content
        assert DOCTOR_FNR not in repr(citizen_view(record))


@pytest.mark.parametrize(("subtype", "type_code", "sub_codes"), [
    ("read", "rest", ["read"]),
    ("search-type", "rest", ["search-type"]),
    ("history-instance", "rest", ["history-instance"]),
    ("$everything", "rest", ["operation", "$everything"]),
    ("login", "110114", ["110122"]),
    ("export", "110106", ["operation", "$export"]),
    ("break-glass", "110113", ["110127"]),
])
def test_subtypes_map_to_event_type_codes(subtype: str, type_code: str,
                                          sub_codes: list[str]) -> None:
    event = build_event(doctor(), action="E", subtype=subtype, recorded=T0, source=SOURCE)
    assert event["type"]["code"] == type_code
    assert [c["code"] for c in event["subtype"]] == sub_codes


@pytest.mark.parametrize("make", [build_event, audit_entry], ids=["event", "record"])
def test_nonsense_actions_subtypes_and_outcomes_are_refused(make: Any) -> None:
    """Refused when an event is built, and when a record is made (ADR 0013: not only later,
    when it is read)."""
    for bad in ({"action": "X"}, {"subtype": "snoop"}, {"outcome": "1"}):
        args: dict = {"action": "R", "subtype": "read", "recorded": T0, "source": SOURCE}
        args.update(bad)
        with pytest.raises(ValueError):
            make(doctor(), **args)


def test_the_entry_carries_the_columns_the_reports_use() -> None:
    entry = stored(doctor("COC", user_selected=True)).entry
    assert (entry.purpose, entry.user_selected, entry.org, entry.unit, entry.agent) == (
        "COC", True, "974589095", "874716782", "hpr:9144897")
    assert entry.patients == ("pat-1",)
    assert audit_event(entry)["resourceType"] == "AuditEvent"


def test_the_citizen_sees_name_organisation_time_and_purpose() -> None:
    line = citizen_view(stored(doctor(), names=OrgNames("Oslo kommune", "Legevakten")))
    assert (line.who, line.organisation, line.unit) == ("August September", "Oslo kommune",
                                                        "Legevakten")
    assert line.when == "2025-10-09T08:53:20.000000Z" and line.what == "Lest"
    assert line.why == "Behandling" and not line.break_glass and line.reason is None


def test_break_the_glass_is_plain_to_the_citizen_with_its_reason() -> None:
    line = citizen_view(stored(doctor("BTG", reason="bevisstløs, ingen pårørende")))
    assert line.break_glass and line.purpose == "BTG"
    assert line.why.startswith("Nødtilgang")
    assert line.reason == "bevisstløs, ingen pårørende"
    declared = citizen_view(stored(doctor("TREAT", user_selected=True, reason="ny pasient")))
    assert declared.self_declared and "egenerklært" in declared.why
    assert declared.reason == "ny pasient"


def test_a_system_client_is_named_by_client_id_not_as_a_person() -> None:
    system = Principal(kind="system", issuer="https://helseid-sts.test.nhn.no", subject="svc",
                       client_id="kpr-rapport")
    assert agent_key(system) == "client:kpr-rapport"
    event = build_event(system, action="E", subtype="export", recorded=T0, source=SOURCE)
    assert event["agent"][0]["who"]["identifier"]["value"] == "kpr-rapport"
    assert "purposeOfEvent" not in event


@pytest.mark.parametrize("subtype", ["read", "search-type", "login", "break-glass", "$everything"])
def test_every_event_is_a_valid_r4_audit_event(subtype: str) -> None:
    from akson.fhir.validation import validate

    event = build_event(doctor("BTG", reason="akutt"), action="E", subtype=subtype, recorded=T0,
                        source=SOURCE, patients=[PatientRef("pat-1", PATIENT_FNR)],
                        resources=["Observation/o1"], query="Observation?patient=pat-1",
                        names=OrgNames("Oslo kommune", "Legevakten"))
    assert validate(event, expected_type="AuditEvent") == []


def test_a_served_event_has_its_chain_position_as_id() -> None:
    from akson.access.audit import served

    record = stored(doctor())
    event = served(record)
    assert event["id"] == "0-1" and event["meta"]["lastUpdated"] == "2025-10-09T08:53:20.000000Z"
    assert event["action"] == "R" and event["resourceType"] == "AuditEvent"


@pytest.mark.parametrize("principal", [
    doctor(), doctor("BTG", reason="bevisstløs pasient"), doctor("COC", user_selected=True),
    Principal(kind="practitioner", issuer="https://helseid-sts.test.nhn.no", subject="s",
              client_id="epj", hpr_number="9144897"),
    Principal(kind="citizen", issuer="https://idporten.test", subject="c1", client_id="app",
              national_id=PATIENT_FNR, name="Kari Nordmann"),
    Principal(kind="system", issuer="https://helseid-sts.test.nhn.no", subject="lab",
              client_id="lab-client"),
], ids=["doctor", "break-glass", "self-declared", "bare-practitioner", "citizen", "system"])
def test_a_stored_record_renders_the_audit_event_built_at_the_time(principal: Principal) -> None:
    """ADR 0013: a record stores the facts of its event, and reading it renders the same
    AuditEvent that `build_event` makes from the caller and the event."""
    args: dict = {"action": "E", "subtype": "$everything", "recorded": T0,
                  "source": Source("node-7", observer="Akson test"), "outcome": "4",
                  "patients": [PatientRef("pat-1", PATIENT_FNR), PatientRef("pat-2")],
                  "resources": ["Patient/pat-1", "Observation/o9"],
                  "query": "Observation?patient=pat-1", "outcome_desc": "delvis",
                  "names": OrgNames("Oslo kommune", "Legevakten")}
    entry = audit_entry(principal, **args)
    assert audit_event(entry) == build_event(principal, **args)
    record = AuditRecord(chain=3, seq=9, entry=entry, prev_hash=bytes(32), hash=bytes(32))
    assert served(record)["agent"] == build_event(principal, **args)["agent"]
    assert len(entry.content) < len(orjson.dumps(build_event(principal, **args))) / 2
    # Without query, outcome text or names the caller's part is serialised once per principal
    # and source (audit._caller): the second record of the same caller renders alike.
    for key in ("query", "outcome_desc", "names"):
        del args[key]
    for source in (args["source"], args["source"], SOURCE, args["source"]):
        for patients, resources in (([], []), (args["patients"], args["resources"])):
            again = {**args, "source": source, "patients": patients, "resources": resources}
            entry = audit_entry(principal, **again)
            assert audit_event(entry) == build_event(principal, **again)


def test_a_record_stored_as_an_audit_event_is_served_as_it_was_written() -> None:
    """Records written before ADR 0013 hold the AuditEvent JSON itself."""
    event = build_event(doctor(), action="R", subtype="read", recorded=T0, source=SOURCE,
                        patients=[PatientRef("pat-1", PATIENT_FNR)])
    entry = replace(stored(doctor()).entry, content=orjson.dumps(event))
    record = AuditRecord(chain=0, seq=1, entry=entry, prev_hash=bytes(32), hash=bytes(32))
    assert audit_event(entry) == event
    assert {k: v for k, v in served(record).items() if k not in ("id", "meta")} == event
    assert citizen_view(record).who == "August September"

