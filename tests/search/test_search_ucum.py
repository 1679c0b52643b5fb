"""UCUM-aware quantity search over HTTP, table-driven on both databases
(https://hl7.org/fhir/R4/search.html#quantity: "compare in canonical form").

Each case is (parameter, value, expected names); every query is scoped to this module's own
data set by its `_tag`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.search.conftest import LOINC, UCUM

SYS = "8480-6"  # systolic blood pressure
DIA = "8462-4"  # diastolic

# name: (value, code, system) of valueQuantity; a system of None leaves it out.
VALUES: dict[str, tuple[float, str, str | None]] = {
    "w1": (1000, "mg", UCUM),
    "w2": (1, "g", UCUM),
    "w3": (95000, "g", UCUM),
    "w4": (72.5, "kg", UCUM),
    "w5": (3, "dg", UCUM),
    "n1": (1000, "mg", None),  # no system, but a UCUM code
    "c1": (5.4, "mmol/L", UCUM),
    "c2": (5400, "umol/L", UCUM),
    "c3": (6.1, "mmol/L", UCUM),
    "l1": (7.5, "10*9/L", UCUM),
    "l2": (7500, "10*6/L", UCUM),
    "l3": (250, "10*9/L", UCUM),
    "b1": (120, "mm[Hg]", UCUM),
    "b2": (16, "kPa", UCUM),
    "u1": (5.4, "mmHg", UCUM),  # not UCUM (mm[Hg] is): literal only
    "t1": (37, "Cel", UCUM),
    "t2": (98.6, "[degF]", UCUM),
    "h1": (72, "{beats}/min", UCUM),
    "h2": (1.2, "/s", UCUM),
    "i1": (40, "[IU]/L", UCUM),
    "i2": (40, "m[IU]/mL", UCUM),
}
# Blood pressures as components: name → ((systolic value, code), (diastolic value, code)).
PRESSURES = {
    "bp1": ((120, "mm[Hg]"), (80, "mm[Hg]")),
    "bp2": ((17, "kPa"), (10, "kPa")),  # 127.5 and 75 mm[Hg]
}

CASES: list = [
    # mg ↔ g: a gram finds 1000 mg (with or without a system on the stored quantity)
    ("value-quantity", f"1|{UCUM}|g", {"w1", "w2", "n1"}),
    ("value-quantity", f"1000|{UCUM}|mg", {"w1", "w2", "n1"}),
    ("value-quantity", f"eb1|{UCUM}|g", {"w5"}),
    # Decimal-safe: 3 dg is exactly 0.3 g (3 × 0.1 in floats is 0.30000000000000004)
    ("value-quantity", f"le0.3|{UCUM}|g", {"w5"}),
    ("value-quantity", f"0.3|{UCUM}|g", {"w5"}),
    # g ↔ kg with gt/lt/ge/sa
    ("value-quantity", f"gt90|{UCUM}|kg", {"w3"}),
    ("value-quantity", f"sa90|{UCUM}|kg", {"w3"}),
    ("value-quantity", f"ge72.5|{UCUM}|kg", {"w3", "w4"}),
    ("value-quantity", f"lt80|{UCUM}|kg", {"w1", "w2", "w4", "w5", "n1"}),
    ("value-quantity", f"72500|{UCUM}|g", {"w4"}),
    # mmol/L ↔ umol/L, with the implicit range, ap (±10 %, bounds converted) and ne
    ("value-quantity", f"5.4|{UCUM}|mmol/L", {"c1", "c2"}),
    ("value-quantity", f"5400|{UCUM}|umol/L", {"c1", "c2"}),
    ("value-quantity", f"ap6|{UCUM}|mmol/L", {"c1", "c2", "c3"}),  # [5.4, 6.6)
    ("value-quantity", f"ap5|{UCUM}|mmol/L", {"c1", "c2"}),
    ("value-quantity", f"ap6000|{UCUM}|umol/L", {"c1", "c2", "c3"}),
    ("value-quantity", f"ne5.4|{UCUM}|mmol/L", {"c3"}),
    ("value-quantity", f"ne6100|{UCUM}|umol/L", {"c1", "c2"}),
    # cell counts
    ("value-quantity", f"7.5|{UCUM}|10*9/L", {"l1", "l2"}),
    ("value-quantity", f"7500|{UCUM}|10*6/L", {"l1", "l2"}),
    ("value-quantity", f"gt100|{UCUM}|10*9/L", {"l3"}),
    ("value-quantity", f"lt1|{UCUM}|10*12/L", {"l1", "l2", "l3"}),
    # mm[Hg] ↔ kPa
    ("value-quantity", f"120|{UCUM}|mm[Hg]", {"b1", "b2"}),  # 16 kPa is 120.01 mm[Hg]
    ("value-quantity", f"gt15.9|{UCUM}|kPa", {"b1", "b2"}),
    ("value-quantity", f"lt16|{UCUM}|kPa", {"b1"}),
    ("value-quantity", f"ap110|{UCUM}|mm[Hg]", {"b1", "b2"}),
    # temperature (affine) and rates, arbitrary units
    ("value-quantity", f"37|{UCUM}|Cel", {"t1", "t2"}),
    ("value-quantity", f"lt99|{UCUM}|[degF]", {"t1", "t2"}),
    ("value-quantity", f"gt99|{UCUM}|[degF]", set()),
    ("value-quantity", f"72|{UCUM}|/min", {"h1", "h2"}),
    ("value-quantity", f"1.2|{UCUM}|Hz", {"h1", "h2"}),
    ("value-quantity", f"40|{UCUM}|[IU]/L", {"i1", "i2"}),
    # OR of values in different units
    ("value-quantity", f"1|{UCUM}|g,7.5|{UCUM}|10*9/L", {"w1", "w2", "n1", "l1", "l2"}),
    # an unknown unit matches literally; so does one this server cannot convert
    ("value-quantity", f"5.4|{UCUM}|mmHg", {"u1"}),
    ("value-quantity", f"1|{UCUM}|10*999", set()),
    ("value-quantity", f"1|{UCUM}|{'(' * 20}g{')' * 20}", set()),  # too deep to convert
    ("value-quantity", f"1|{UCUM}|((g))", {"w1", "w2", "n1"}),
    # no system: the literal code only, never a converted row
    ("value-quantity", "1000||mg", {"w1", "n1"}),
    ("value-quantity", "1||g", {"w2"}),
    ("value-quantity", "0.3||g", set()),
    ("value-quantity", "5.4||mmHg", {"u1"}),
    ("value-quantity", "1", {"w2", "h2"}),  # a value alone: literal values only
    ("value-quantity", "gt90000", {"w3"}),
    # composites: the quantity of the same component, in another unit
    ("component-code-value-quantity", f"{LOINC}|{SYS}$120|{UCUM}|mm[Hg]", {"bp1"}),
    ("component-code-value-quantity", f"{LOINC}|{SYS}$gt100", {"bp1"}),
    ("component-code-value-quantity", f"{LOINC}|{DIA}$10|{UCUM}|kPa", {"bp2"}),
    ("component-code-value-quantity", f"{LOINC}|{SYS}$gt15|{UCUM}|kPa", {"bp1", "bp2"}),
    ("component-code-value-quantity", f"{LOINC}|{DIA}$lt80|{UCUM}|mm[Hg]", {"bp2"}),
    ("component-code-value-quantity", f"{LOINC}|{SYS}$ge125|{UCUM}|mm[Hg]", {"bp2"}),
]


def _case_id(case) -> str:
    values = case.values if hasattr(case, "values") else case
    return f"{values[0]}={values[1]}"


class UcumData:
    """This module's Observations, tagged with a run id so queries see only them."""

    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:10]
        self.tag = f"https://akson.test/run/{self.run}"

    def id(self, name: str) -> str:
        return f"ucum-{self.run}-{name}"

    def name(self, res_id: str) -> str:
        return res_id.removeprefix(f"ucum-{self.run}-")

    def resources(self) -> Iterator[dict]:
        meta = {"tag": [{"system": self.tag, "code": "t"}]}
        for name, (value, code, system) in VALUES.items():
            quantity: dict = {"value": value, "unit": code, "code": code}
            if system:
                quantity["system"] = system
            yield {"resourceType": "Observation", "id": self.id(name), "meta": meta,
                   "status": "final", "code": {"text": name}, "valueQuantity": quantity}
        for name, parts in PRESSURES.items():
            components = [
                {"code": {"coding": [{"system": LOINC, "code": loinc}]},
                 "valueQuantity": {"value": value, "unit": code, "system": UCUM, "code": code}}
                for loinc, (value, code) in zip((SYS, DIA), parts, strict=True)]
            yield {"resourceType": "Observation", "id": self.id(name), "meta": meta,
                   "status": "final", "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
                   "component": components}


@pytest.fixture(scope="module")
def ucum_data(server) -> UcumData:
    import httpx

    ds = UcumData()
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, auth=server.auth()) as c:
        for res in ds.resources():
            resp = c.put(f"/Observation/{res['id']}", json=res)
            assert resp.status_code in (200, 201), resp.text
    return ds


@pytest.mark.parametrize(("param", "value", "expected"), CASES, ids=[_case_id(c) for c in CASES])
def test_quantity_search_compares_ucum_in_canonical_form(client, ucum_data, param, value,
                                                         expected):
    resp = client.get("/Observation", params=[("_tag", f"{ucum_data.tag}|t"), (param, value)])
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    got = [ucum_data.name(e["resource"]["id"]) for e in bundle.get("entry", [])
           if e["search"]["mode"] == "match"]
    assert set(got) == expected and len(got) == len(expected)


def test_an_update_replaces_the_canonical_row(client, ucum_data):
    """The converted row follows the resource: after an update to another unit, the old
    canonical value no longer matches."""
    res = {"resourceType": "Observation", "id": ucum_data.id("upd"), "status": "final",
           "meta": {"tag": [{"system": ucum_data.tag, "code": "upd"}]}, "code": {"text": "upd"},
           "valueQuantity": {"value": 2, "system": UCUM, "code": "kg"}}
    scope = ("_tag", f"{ucum_data.tag}|upd")
    assert client.put(f"/Observation/{res['id']}", json=res).status_code == 201
    found = client.get("/Observation", params=[scope, ("value-quantity", f"2000|{UCUM}|g")])
    assert found.json()["total"] == 1
    res["valueQuantity"] = {"value": 2, "system": UCUM, "code": "mg"}
    assert client.put(f"/Observation/{res['id']}", json=res).status_code == 200
    assert client.get("/Observation", params=[
        scope, ("value-quantity", f"2000|{UCUM}|g")]).json()["total"] == 0
    assert client.get("/Observation", params=[
        scope, ("value-quantity", f"0.002|{UCUM}|g")]).json()["total"] == 1


def test_sort_by_quantity_uses_the_values_as_given(client, ucum_data):
    """`_sort=value-quantity` orders by the stored values, as before canonical rows existed: the
    extra row of `1000 mg` (1 g) must not sort it before `2 g`."""
    scope = ("_tag", f"{ucum_data.tag}|sort")
    for name, (value, code) in {"s1": (2, "g"), "s2": (1000, "mg"), "s3": (3, "kg")}.items():
        res = {"resourceType": "Observation", "id": ucum_data.id(name), "status": "final",
               "meta": {"tag": [{"system": ucum_data.tag, "code": "sort"}]},
               "code": {"text": name}, "valueQuantity": {"value": value, "system": UCUM,
                                                          "code": code}}
        assert client.put(f"/Observation/{res['id']}", json=res).status_code in (200, 201)
    for sort, expected in (("value-quantity", ["s1", "s3", "s2"]),
                           ("-value-quantity", ["s2", "s3", "s1"])):
        bundle = client.get("/Observation", params=[scope, ("_sort", sort)]).json()
        assert [ucum_data.name(e["resource"]["id"]) for e in bundle["entry"]] == expected
