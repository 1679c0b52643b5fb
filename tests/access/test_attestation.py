"""Tillitsrammeverk attestation in `authorization_details`: parsing and the business rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from akson.access.attestation import ATTESTATION_TYPE, find_attestation, parse_attestation
from akson.access.principal import CareRelationship
from akson.access.token_error import TokenError
from akson.access.tokens import verify_access_token
from tests.access.tokenkit import (
    CITIZEN_FNR,
    IDPORTEN,
    NOW,
    OTHER_FNR,
    PRACTITIONER_FNR,
    citizen_claims,
    issuers,
    mint,
    practitioner_claims,
)

POU_SYSTEM = "urn:oid:2.16.840.1.113883.1.11.20448"


def attestation(pid: str | None = PRACTITIONER_FNR, purpose: Any = "TREAT", toa: Any = NOW - 60,
                **over: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": ATTESTATION_TYPE,
        "practitioner": {
            "identifier": {"id": pid, "name": "Rita Lin", "system": "urn:oid:2.16.578.1.12.4.1.4.1"},
            "hpr_nr": {"id": "9144900", "system": "urn:oid:2.16.578.1.12.4.1.4.4"},
            "authorization": {"code": "LE", "system": "urn:oid:2.16.578.1.12.4.1.1.9060"},
            "legal_entity": {"id": "974760673", "system": "urn:oid:2.16.578.1.12.4.1.4.101"},
            "point_of_care": {"id": "974795787", "system": "urn:oid:2.16.578.1.12.4.1.4.101"},
        },
        "care_relationship": {
            "healthcare_service": {"code": "KP02", "system": "urn:oid:2.16.578.1.12.4.1.1.8663"},
            "purpose_of_use": {"code": purpose, "system": POU_SYSTEM},
            "purpose_of_use_details": {"code": "15", "system": "urn:oid:2.16.578.1.12.4.1.1.9151"},
            "decision_ref": {"id": "vedtak-42", "user_selected": False, "description": "Hjemmesykepleie"},
        },
        "patients": [{"identifier": {"id": CITIZEN_FNR, "system": "urn:oid:2.16.578.1.12.4.1.4.1"}}],
        "toa": toa,
    }
    if pid is None:
        del element["practitioner"]["identifier"]
    element.update(over)
    return element


def verify_with(details: Any, **claims: Any):
    token = mint(practitioner_claims(authorization_details=details, **claims))
    return verify_access_token(token, issuers=issuers(), now=NOW)


def refused(details: Any, reason: str, **claims: Any) -> TokenError:
    with pytest.raises(TokenError) as info:
        verify_with(details, **claims)
    assert info.value.reason == reason
    return info.value


def test_attestation_in_the_token_becomes_the_care_relationship() -> None:
    p = verify_with([{"type": "helseid_authorization", "practitioner_role": {}}, attestation()])
    assert p.care_relationship == CareRelationship(
        purpose_of_use="TREAT", healthcare_service="KP02", purpose_of_use_details="15",
        decision_ref_id="vedtak-42", decision_ref_description="Hjemmesykepleie", user_selected=False,
        patients=(CITIZEN_FNR,), toa=NOW - 60)
    assert p.purpose_of_use == "TREAT"


def test_break_the_glass_is_self_authorised_with_a_reason() -> None:
    element = attestation(purpose="BTG")
    element["care_relationship"]["decision_ref"] = {"id": "btg-1", "user_selected": True,
                                                    "description": "akutt"}
    care = verify_with([element]).care_relationship
    assert care is not None
    assert (care.purpose_of_use, care.user_selected, care.decision_ref_description) == ("BTG", True, "akutt")


@pytest.mark.parametrize("purpose", ["TREAT", "ETREAT", "COC", "BTG"])
def test_every_purpose_of_use_is_accepted(purpose: str) -> None:
    assert verify_with([attestation(purpose=purpose)]).purpose_of_use == purpose


def test_earlier_hyphenated_spelling_and_bare_codes_are_read() -> None:
    element = {
        "type": ATTESTATION_TYPE, "toa": NOW,
        "practitioner": {"identifier": {"value": PRACTITIONER_FNR}},
        "care-relationship": {"purpose-of-use": "COC",
                              "decision-ref": {"id": "d1", "user-selected": True}},
        "patients": [{"identifier": {"id": CITIZEN_FNR}}],
    }
    care = verify_with(element).care_relationship
    assert care is not None
    assert (care.purpose_of_use, care.user_selected, care.patients) == ("COC", True, (CITIZEN_FNR,))


def test_attestation_sent_as_json_text_is_read() -> None:
    assert verify_with(json.dumps([attestation()])).purpose_of_use == "TREAT"


def test_practitioner_name_falls_back_to_the_attested_name() -> None:
    assert verify_with([attestation()], name=None).name == "Rita Lin"


def test_attestation_for_another_person_is_refused() -> None:
    err = refused([attestation(pid=OTHER_FNR)], "attestation_mismatch")
    shown = " ".join([err.diagnostics, err.www_authenticate(), json.dumps(err.outcome())])
    assert OTHER_FNR not in shown and PRACTITIONER_FNR not in shown


def test_attestation_without_the_attested_identifier_is_refused() -> None:
    refused([attestation(pid=None)], "attestation_mismatch")


def test_attestation_in_a_citizen_token_is_refused() -> None:
    token = mint(citizen_claims(authorization_details=[attestation(pid=CITIZEN_FNR)]))
    with pytest.raises(TokenError) as info:
        verify_access_token(token, issuers=issuers("idporten", IDPORTEN), now=NOW)
    assert info.value.reason == "attestation_mismatch"


def test_attestation_older_than_60_minutes_has_expired() -> None:
    assert verify_with([attestation(toa=NOW - 3600)]).care_relationship is not None
    err = refused([attestation(toa=NOW - 3601)], "attestation_has_expired")
    assert 'error_description="attestation_has_expired"' in err.www_authenticate()


def test_a_token_used_again_is_refused_once_its_attestation_is_60_minutes_old() -> None:
    """A repeated token reuses its verified signature, never the time-bound attestation check."""
    token = mint(practitioner_claims(authorization_details=[attestation(toa=NOW - 60)],
                                     exp=NOW + 7200))
    trusted = issuers()
    assert verify_access_token(token, issuers=trusted, now=NOW).care_relationship is not None
    assert verify_access_token(token, issuers=trusted, now=NOW + 3540).care_relationship
    with pytest.raises(TokenError) as info:
        verify_access_token(token, issuers=trusted, now=NOW + 3541)
    assert info.value.reason == "attestation_has_expired"


def test_a_token_used_again_maps_to_the_same_caller_and_still_expires() -> None:
    token = mint(practitioner_claims(exp=NOW + 600))
    trusted = issuers()
    first = verify_access_token(token, issuers=trusted, now=NOW)
    assert verify_access_token(token, issuers=trusted, now=NOW + 1) == first
    with pytest.raises(TokenError) as info:
        verify_access_token(token, issuers=trusted, now=NOW + 600 + 31)  # past exp and leeway
    assert info.value.reason == "expired"


@pytest.mark.parametrize("toa", [None, "2024-01-01T00:00:00Z", True, NOW + 3600])
def test_attestation_without_a_usable_toa_is_refused(toa: Any) -> None:
    element = attestation(toa=toa)
    if toa is None:
        del element["toa"]
    refused([element], "attestation_invalid")


@pytest.mark.parametrize("purpose", ["HMARKT", "treat", "", None, 7])
def test_unknown_purpose_of_use_is_refused(purpose: Any) -> None:
    refused([attestation(purpose=purpose)], "attestation_invalid")


def test_purpose_from_another_code_system_is_refused() -> None:
    element = attestation()
    element["care_relationship"]["purpose_of_use"]["system"] = "urn:oid:2.16.578.1.12.4.1.1.9151"
    refused([element], "attestation_invalid")


def test_two_attestations_are_ambiguous_and_refused() -> None:
    refused([attestation(), attestation(purpose="BTG")], "attestation_invalid")


@pytest.mark.parametrize("details", [42, "not json", [attestation(care_relationship=[])],
                                     [attestation(patients={"identifier": "x"})],
                                     [attestation(practitioner="me")]])
def test_malformed_attestations_are_refused(details: Any) -> None:
    with pytest.raises(TokenError) as info:
        verify_with(details)
    assert info.value.reason in ("attestation_invalid", "attestation_mismatch")


def test_without_an_attestation_there_is_no_care_relationship() -> None:
    assert verify_with(None).care_relationship is None
    assert verify_with([{"type": "helseid_authorization"}]).care_relationship is None
    assert find_attestation([]) is None


def test_parse_attestation_is_usable_on_its_own() -> None:
    care = parse_attestation(attestation(), authenticated_pid=PRACTITIONER_FNR, now=NOW)
    assert care.patients == (CITIZEN_FNR,)
    with pytest.raises(TokenError):
        parse_attestation(attestation(), authenticated_pid=None, now=NOW)
