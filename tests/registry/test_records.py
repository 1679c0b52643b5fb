"""Register record parsing: normalised records, and clear reasons that never hold a national id."""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.registry.synth import ORGNR, tenor

from akson.registry.records import RecordError, check_synthetic, parse_record

NIN = tenor(date(1980, 11, 1), 123)
OTHER = tenor(date(1955, 3, 4), 234)


def line(obj: Any) -> bytes:
    return orjson.dumps(obj)


def reason(register: str, obj: Any) -> str:
    with pytest.raises(RecordError) as err:
        parse_record(register, line(obj) if not isinstance(obj, bytes) else obj)
    return err.value.reason


def freg(**over: Any) -> dict[str, Any]:
    rec = {"nin": NIN, "status": "bosatt", "name": {"given": "Kari", "family": "Hansen"}}
    rec.update(over)
    return rec


def test_valid_freg_is_normalised() -> None:
    rec = parse_record("freg", line(freg(extra="ignored")))
    assert rec["nin"] == NIN and rec["address_protection"] == "unclassified"
    assert rec["family"] == [] and rec["address"] is None and "extra" not in rec


@pytest.mark.parametrize("over,expected", [
    ({"nin": NIN[:-1] + str((int(NIN[-1]) + 1) % 10)}, "nin has an invalid check digit"),
    ({"nin": "123"}, "nin is not 11 digits"),
    ({"nin": 1234}, "nin is not 11 digits"),
    ({"nin": "99999999999"}, "nin is a felles hjelpenummer, not a fødselsnummer or D-nummer"),
    ({"nin": "32138012345"}, "nin does not start with a valid birth date"),
    ({"nin": None}, "nin is missing"),
    ({"status": "levende"}, "status levende is not one of bosatt, utflyttet, doed, forsvunnet, "
                            "inaktiv, ikkeBosatt"),
    ({"status": NIN}, "status is not one of bosatt, utflyttet, doed, forsvunnet, inaktiv, "
                      "ikkeBosatt"),
    ({"birth_date": "1980-02-30"}, "birth_date is not a valid calendar date"),
    ({"birth_date": "01.02.1980"}, "birth_date is not a date (YYYY-MM-DD)"),
    ({"name": {"middle": "Bare"}}, "name needs a given or a family name"),
    ({"address": {"municipality": "9999"}},
     "address.municipality 9999 is not a Norwegian municipality number"),
    ({"address": {"lines": "Storgata 1"}}, "address.lines must be a list"),
    ({"address": {"postal_code": "12345"}}, "address.postal_code is not a four-digit postal code"),
    ({"address_protection": "hemmelig"}, "address_protection hemmelig is not one of unclassified, "
                                      "client_address, confidential, strictly_confidential"),
    ({"family": [{"nin": OTHER, "relation": "onkel"}]},
     "family[0].relation onkel is not one of mor, far, medmor, barn, ektefelle, partner"),
    ({"family": [{"nin": "1", "relation": "mor"}]}, "family[0].nin is not 11 digits"),
    ({"family": [{"nin": NIN, "relation": "mor"}]},
     "a relation refers to the person's own national id"),
    ({"guardianship": {"guardian_nin": OTHER}}, "guardianship must be a list"),
])
def test_freg_reasons(over: dict[str, Any], expected: str) -> None:
    got = reason("freg", freg(**over))
    assert got == expected
    assert NIN not in got and OTHER not in got


def test_nav_month_plus_40_is_not_a_national_id() -> None:
    from akson.fhir.identifiers import make_fnr

    nav = make_fnr(date(1980, 1, 1), 100, synthetic="nav") or make_fnr(date(1980, 1, 1), 101,
                                                                        synthetic="nav")
    assert "not a national id" in reason("freg", freg(nin=nav))


def test_not_json_and_not_an_object() -> None:
    assert reason("freg", b"{").startswith("the line is not valid JSON")
    assert reason("freg", b"[1]") == "the line is not a JSON object"
    assert reason("nope", line(freg())).startswith("unknown register")


@pytest.mark.parametrize("register,obj,expected", [
    ("hpr", {"hpr_number": "09144900", "name": {"family": "X"}},
     "hpr_number is not an HPR number (1-9 digits, no leading zero)"),
    ("hpr", {"hpr_number": "9144900", "name": {"family": "X"},
             "authorizations": [{"category": "lege"}]},
     "authorizations[0].category is not a Volven 9060 category (two capital letters)"),
    ("hpr", {"hpr_number": "9144900", "name": {"family": "X"},
             "authorizations": [{"category": "LE", "from": "2020-01-01", "to": "2019-01-01"}]},
     "authorizations[0].to is before authorizations[0].from"),
    ("enhet", {"orgnr": ORGNR[0], "name": "X", "kind": "bank"},
     "kind bank is not one of kommune, legekontor, legevakt, hjemmetjeneste, helsestasjon, "
     "sykehjem, helseforetak"),
    ("enhet", {"orgnr": ORGNR[0], "name": "X", "kind": "legekontor", "parent_orgnr": ORGNR[0]},
     "parent_orgnr is the unit's own orgnr"),
    ("flr", {"kind": "membership", "contract_id": "K 1", "nin": NIN, "from": "2020-01-01"},
     "contract_id is not a contract id (1-64 letters, digits, . _ : -)"),
    ("flr", {"kind": "membership", "contract_id": "K1", "nin": NIN},
     "from is missing"),
    ("flr", {"kind": "contract", "contract_id": "K1", "hpr_number": "1", "orgnr": ORGNR[0],
             "from": "2020-01-01", "max_patients": -1},
     "max_patients is not a whole number from 0 to 100000"),
    ("ar", {"her_id": "1", "kind": "service", "name": "X", "parent_her_id": "2"},
     "service is missing"),
    ("ar", {"her_id": "1", "kind": "person", "name": "X", "parent_her_id": "1",
            "hpr_number": "2"}, "parent_her_id is the party's own HER-id"),
])
def test_other_register_reasons(register: str, obj: dict[str, Any], expected: str) -> None:
    assert reason(register, obj) == expected


def test_check_synthetic() -> None:
    rec = parse_record("freg", line(freg(family=[{"nin": OTHER, "relation": "mor"}])))
    check_synthetic(rec, allow_synthetic_ids=True)
    with pytest.raises(RecordError, match="synthetic"):
        check_synthetic(rec, allow_synthetic_ids=False)


@settings(max_examples=300, deadline=None)
@given(register=st.sampled_from(["freg", "hpr", "enhet", "flr", "ar"]),
       obj=st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
                        lambda c: st.lists(c, max_size=3)
                        | st.dictionaries(st.sampled_from(
                            ["nin", "status", "name", "given", "family", "address", "lines",
                             "municipality", "family", "relation", "kind", "orgnr", "her_id",
                             "hpr_number", "contract_id", "from", "to", "service", "code",
                             "authorizations", "category", "parent_her_id"]), c, max_size=6),
                        max_leaves=12))
def test_any_json_gives_a_record_or_a_record_error(register: str, obj: Any) -> None:
    with contextlib.suppress(RecordError):
        parse_record(register, line(obj))
