"""The access policy's pure decisions, with property tests (docs/adr/0006-access-gate.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akson.access import policy as pol
from akson.access.principal import PURPOSES_OF_USE, CareRelationship, Principal
from akson.access.scopes import parse_scopes
from akson.fhir import jsonio
from akson.fhir.outcome import FhirError
from akson.registry import mapping
from akson.store import access_sql

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())
#: The facts the gate finds for a practitioner at a known unit of their legal entity.
AT_UNIT = pol.Facts(practitioner_ids=("pr",), unit_ids=("unit",), legal_entity_ids=("k",))
TYPES = ("Patient", "Observation", "Condition", "Consent", "Encounter", "Organization")


def practitioner(cr: CareRelationship | None, scopes: str = "user/*.cruds") -> Principal:
    return Principal(kind="practitioner", issuer="i", subject="s", client_id="c",
                     hpr_number="1000001", orgnr_parent="910000001", orgnr_child="910000002",
                     care_relationship=cr, scopes=parse_scopes(scopes))


def citizen() -> Principal:
    return Principal(kind="citizen", issuer="i", subject="s", client_id="c",
                     national_id="01018012345", scopes=parse_scopes("patient/*.cruds"))


def test_label_systems_equal_the_registry_and_store_spellings() -> None:
    assert pol.ADDRESS_PROTECTION_SYSTEM == mapping.ADDRESS_PROTECTION_SYSTEM
    assert access_sql.EPISODE_TYPE_SYSTEM == mapping.EPISODE_TYPE_SYSTEM
    from akson.access.gate import PARENTAL_RESPONSIBILITY_EXT
    assert PARENTAL_RESPONSIBILITY_EXT == mapping.PARENTAL_RESPONSIBILITY_EXT
    assert pol.STRICTLY_CONFIDENTIAL[1] == "strictly-confidential"


# ------------------------------------------------------------------ ages and parents

@given(st.dates(date(1900, 1, 1), date(2030, 12, 31)), st.integers(0, 40000))
def test_age_is_whole_years_since_birth(birth: date, days: int) -> None:
    today = birth + timedelta(days=days)
    if today > date(2099, 12, 31):
        return
    age = pol.age_on(birth, today)
    assert age >= 0

    def birthday(years: int) -> date:
        try:
            return birth.replace(year=birth.year + years)
        except ValueError:  # 29 February in a common year: the birthday is 1 March
            return date(birth.year + years, 3, 1)
    assert birthday(age) <= today < birthday(age + 1)


children = st.builds(pol.ChildFacts, patient_id=st.just("kid"),
                     birth_date=st.none() | st.dates(date(2000, 1, 1), date(2030, 1, 1)),
                     parental_responsibility=st.booleans(), shares_address=st.booleans(),
                     parents_refused=st.booleans())


@given(children, st.dates(date(2005, 1, 1), date(2035, 1, 1)))
def test_parents_see_only_children_under_12_at_their_address(child: pol.ChildFacts,
                                                             today: date) -> None:
    allowed = pol.parent_may_see(child, today)
    if allowed:
        assert child.birth_date is not None and child.birth_date <= today
        assert pol.age_on(child.birth_date, today) < 12
        assert child.shares_address and child.parental_responsibility
        assert not child.parents_refused
        # access only ever ends with age: every earlier day since birth allowed it too
        assert pol.parent_may_see(child, max(child.birth_date, today - timedelta(days=400)))
    elif child.birth_date is not None and child.birth_date <= today and child.shares_address \
            and child.parental_responsibility and not child.parents_refused:
        assert pol.age_on(child.birth_date, today) >= 12


@pytest.mark.parametrize(("age", "allowed"), [(0, True), (11, True), (12, False), (13, False),
                                              (15, False), (16, False), (17, False)])
def test_age_rules_at_the_boundaries(age: int, allowed: bool) -> None:
    born = date(NOW.year - age, NOW.month, NOW.day)
    kid = pol.ChildFacts("kid", born, True, True, False)
    assert pol.parent_may_see(kid, NOW.date()) is allowed
    assert not pol.parent_may_see(pol.ChildFacts("kid", born, True, False, False), NOW.date())


def test_a_child_shares_an_address_only_when_a_home_address_matches() -> None:
    home = {"use": "home", "line": ["Lindeveien 3"], "postalCode": "0150"}
    assert pol.shares_address({"address": [home]}, {"address": [dict(home)]})
    moved = {**home, "period": {"end": "2020-01-01"}}
    assert not pol.shares_address({"address": [home]}, {"address": [moved]})
    assert not pol.shares_address({"address": [home]}, {})  # strictly confidential: no address
    assert not pol.shares_address({"address": [home]},
                                  {"address": [{**home, "line": ["Annenvei 8"]}]})


def test_citizen_sees_own_record_and_allowed_children_only() -> None:
    young = pol.ChildFacts("young", date(2020, 1, 1), True, True, False)
    teen = pol.ChildFacts("teen", date(2012, 1, 1), True, True, False)
    away = pol.ChildFacts("away", date(2019, 1, 1), True, False, False)
    p = pol.plan(citizen(), NOW, pol.Facts("me", (young, teen, away)))
    assert p.allowed and p.restriction.patient_ids == ("me", "young")
    assert p.permits("Consent", "c") and not p.permits("Observation", "c")
    assert not p.permits("Consent", "d")
    assert p.write_patients == ("me",)
    rules = {(r.code, r.only_patients) for r in p.restriction.labels}
    assert ("NORU", None) in rules and ("NORN_FORANS", ("young",)) in rules
    assert "NORS" not in {r.code for r in p.restriction.labels}  # her own blocks
    assert not pol.plan(citizen(), NOW, pol.Facts()).allowed


# ------------------------------------------------------------------ practitioners

relationships = st.builds(
    CareRelationship,
    purpose_of_use=st.sampled_from([*PURPOSES_OF_USE, "", "treat", "POPHLTH"]),
    decision_ref_description=st.none() | st.sampled_from(["", "  ", "akutt", "vikar"]),
    user_selected=st.booleans(),
    toa=st.none() | st.integers(NOW_S - 10_000, NOW_S + 100))
attested = st.lists(st.sampled_from(["p1", "p2", "p3"]), unique=True).map(tuple)


@settings(max_examples=300)
@given(relationships, attested)
def test_practitioner_access_always_needs_purpose_relationship_and_fresh_attestation(
        cr: CareRelationship, patients: tuple[str, ...]) -> None:
    p = pol.plan(practitioner(cr), NOW, replace(AT_UNIT, attested_patients=patients))
    r = p.restriction
    if cr.purpose_of_use not in PURPOSES_OF_USE:
        assert not p.allowed
    if cr.toa is not None and not 0 <= NOW_S - cr.toa <= 3600:
        assert not p.allowed
    if not p.allowed:
        assert not p.permits("Patient", "r")
        return
    assert not r.all_patients and r.relation is not None
    assert set(r.patient_ids) <= set(patients)
    nors = [rule for rule in r.labels if rule.code == "NORS"]
    assert len(nors) == 1 and r.block is not None
    if cr.purpose_of_use == "BTG":
        assert p.break_glass and (cr.decision_ref_description or "").strip()
        assert cr.toa is not None and patients
        assert nors[0].except_patients == patients == r.block.except_patients
    else:
        assert not p.break_glass
        assert nors[0].except_patients == () and r.block.except_patients == ()
    if r.patient_ids:  # named patients only for a reasoned self-declaration or break-glass
        assert (cr.decision_ref_description or "").strip()
        assert cr.user_selected or cr.purpose_of_use == "BTG"


def test_practitioner_without_unit_or_outside_the_journal_is_refused() -> None:
    cr = CareRelationship("TREAT", toa=NOW_S)
    no_unit = Principal(kind="practitioner", issuer="i", subject="s", client_id="c",
                        hpr_number="1", orgnr_parent="910000001", care_relationship=cr,
                        scopes=parse_scopes("user/*.cruds"))
    assert not pol.plan(no_unit, NOW, AT_UNIT).allowed
    policy = pol.Policy(journal_members=frozenset({"999999999"}))
    assert not pol.plan(practitioner(cr), NOW, AT_UNIT, policy).allowed
    # the unit was not found as part of the legal entity (another tenant, or unknown)
    assert not pol.plan(practitioner(cr), NOW, pol.Facts()).allowed
    p = pol.plan(practitioner(cr), NOW, AT_UNIT)
    assert p.allowed and p.restriction.relation is not None
    assert p.restriction.relation.unit_ids == ("unit",)
    assert p.restriction.block is not None
    assert p.restriction.block.organization_ids == ("k", "unit")


def test_resource_scopes_narrow_a_practitioner_to_their_types() -> None:
    p = pol.plan(practitioner(CareRelationship("TREAT", toa=NOW_S),
                              "user/Observation.rs user/Condition.c"), NOW, AT_UNIT)
    assert p.permits("Observation", "s") and not p.permits("Patient", "r")
    assert not p.permits("Condition", "r")  # create-only scopes do not make a type readable
    assert p.restriction.types == frozenset({"Observation"})


# ------------------------------------------------------------------ system clients

scope_texts = st.lists(st.sampled_from([
    "system/*.rs", "system/Patient.read", "system/Observation.rs", "patient/*.rs",
    "patient/Observation.read", "system/Condition.c", "user/*.rs", "openid",
    "system/Observation.rs?category=laboratory"]), max_size=3).map(" ".join)


@given(scope_texts, st.none() | st.just("p1"), st.sampled_from(TYPES), st.sampled_from("cruds"))
def test_system_clients_get_only_what_their_scopes_allow(text: str, launch: str | None,
                                                         res_type: str, interaction: str) -> None:
    principal = Principal(kind="system", issuer="i", subject="s", client_id="c",
                          scopes=parse_scopes(text), launch_patient=launch)
    p = pol.plan(principal, NOW, pol.Facts())
    scopes = [s for s in parse_scopes(text) if not s.query and s.context in ("system", "patient")]
    if p.permits(res_type, interaction):
        assert any(s.permits(res_type, interaction) for s in scopes)
    if p.allowed:
        assert "NORS" in {r.code for r in p.restriction.labels}
        if not any(s.context == "system" for s in scopes):
            assert p.restriction.patient_ids == ("p1",) and not p.restriction.all_patients
    if not scopes:
        assert not p.allowed


def test_a_system_clients_plan_is_kept_for_its_token_and_never_given_to_another() -> None:
    def client(scopes: str) -> Principal:
        return Principal(kind="system", issuer="i", subject="s", client_id="c",
                         scopes=parse_scopes(scopes))

    wide, narrow = client("system/*.rs"), client("system/Patient.rs")
    first = pol.plan(wide, NOW, pol.Facts())
    assert pol.plan(wide, NOW + timedelta(hours=1), pol.Facts()) is first
    assert first.restriction.types is None
    assert pol.plan(narrow, NOW, pol.Facts()).restriction.types == frozenset({"Patient"})
    for _ in range(pol._SYSTEM_PLANS.size + 1):  # bounded: a full memo starts again
        pol.plan(client("system/Observation.rs"), NOW, pol.Facts())
    assert len(pol._SYSTEM_PLANS) <= pol._SYSTEM_PLANS.size
    assert pol.plan(wide, NOW, pol.Facts()).restriction.types is None


# ------------------------------------------------------------------ addresses and labels

plans = st.sampled_from([
    pol.plan(citizen(), NOW, pol.Facts("me")),
    pol.plan(practitioner(CareRelationship("TREAT", toa=NOW_S)), NOW, AT_UNIT),
    pol.plan(practitioner(CareRelationship("COC", toa=NOW_S)), NOW, AT_UNIT),
    pol.plan(practitioner(CareRelationship("BTG", decision_ref_description="akutt",
                                           toa=NOW_S)), NOW, replace(AT_UNIT, attested_patients=("p",))),
    pol.plan(Principal(kind="system", issuer="i", subject="s", client_id="c",
                       scopes=parse_scopes("system/*.rs")), NOW, pol.Facts()),
])
protection = st.sampled_from([None, "strictly-confidential", "confidential", "client-address"])


@given(plans, protection, protection, st.sampled_from(["Patient", "RelatedPerson"]))
def test_protected_addresses_never_reach_callers_who_may_not_see_them(
        p: pol.Plan, own: str | None, current: str | None, res_type: str) -> None:
    doc: dict = {"resourceType": res_type, "id": "x", "address": [{"line": ["Veien 1"]}],
                 "text": {"status": "generated", "div": "<div>Veien 1</div>"}}
    if own:
        doc["meta"] = {"security": [{"system": pol.ADDRESS_PROTECTION_SYSTEM, "code": own}]}
    now_labels = {(pol.ADDRESS_PROTECTION_SYSTEM, current)} if current else set()
    out = pol.redact(doc, p, now_labels)
    shown = doc if out is None else out
    codes = {own, current}
    if "strictly-confidential" in codes:
        assert "address" not in shown and "text" not in shown
        assert pol.REDACTED in shown["meta"]["security"]
    elif codes & {"confidential", "client-address"}:
        assert ("address" in shown) is p.confidential_address
    else:
        assert out is None


def test_confidential_addresses_are_for_treating_roles_and_the_citizen() -> None:
    def plan_for(purpose: str) -> pol.Plan:
        cr = CareRelationship(purpose, decision_ref_description="akutt", toa=NOW_S)
        return pol.plan(practitioner(cr), NOW, replace(AT_UNIT, attested_patients=("p",)))
    assert plan_for("TREAT").confidential_address and plan_for("ETREAT").confidential_address
    assert plan_for("BTG").confidential_address and not plan_for("COC").confidential_address
    assert pol.plan(citizen(), NOW, pol.Facts("me")).confidential_address
    rules = {(r.system, r.code) for r in pol.address_search_rules(plan_for("COC"))}
    assert rules == {pol.STRICTLY_CONFIDENTIAL, pol.CONFIDENTIAL, pol.CLIENT_ADDRESS}
    rules = {(r.system, r.code) for r in pol.address_search_rules(plan_for("TREAT"))}
    assert rules == {pol.STRICTLY_CONFIDENTIAL}


@given(st.sets(st.sampled_from([pol.NORS, pol.NORU, pol.NORN_FORANS])),
       st.none() | st.sampled_from(["me", "kid", "other"]))
def test_version_labels_hide_as_the_sql_rules_say(labels: set[tuple[str, str]],
                                                  patient: str | None) -> None:
    p = pol.plan(citizen(), NOW, pol.Facts("me", (pol.ChildFacts("kid", date(2020, 1, 1), True,
                                                                 True, False),)))
    hidden = pol.hidden_by_labels(p.restriction, labels, patient)
    expected = pol.NORU in labels or (pol.NORN_FORANS in labels and patient == "kid")
    assert hidden is expected


@given(st.sets(st.sampled_from([pol.NORS, pol.NORU, pol.NORN_FORANS])),
       st.none() | st.sampled_from(["me", "kid", "other"]),
       st.sampled_from(["", "NORU", "Nors", '"NORN_FORANS" står i teksten']))
def test_labels_on_stored_json_hide_as_the_label_rules_say(labels: set[tuple[str, str]],
                                                           patient: str | None, text: str) -> None:
    """A read by id checks the rules on the row's JSON (`labels_hide`): the same answer as
    `hidden_by_labels` on its `meta.security`, whatever else the JSON says."""
    p = pol.plan(citizen(), NOW, pol.Facts("me", (pol.ChildFacts("kid", date(2020, 1, 1), True,
                                                                 True, False),)))
    doc = {"resourceType": "Observation", "note": [{"text": text}],
           "meta": {"security": [{"system": s, "code": c} for s, c in sorted(labels)]}}
    assert pol.labels_hide(p.restriction, jsonio.dumps(doc), patient) is \
        pol.hidden_by_labels(p.restriction, labels, patient)
    assert not pol.labels_hide(p.restriction, None, patient)  # a deletion marker has no labels


def test_a_block_consent_must_deny_named_actors() -> None:
    category = [{"coding": [{"system": access_sql.CONSENT_CATEGORY_SYSTEM,
                             "code": access_sql.BLOCK_CODE}]}]
    actor = [{"reference": {"reference": "Practitioner/gp"}}]
    pol.check_block_consent({"category": category, "provision": {"type": "deny", "actor": actor}})
    pol.check_block_consent({"provision": {"type": "permit"}})  # not a block: not ours to judge
    for provision in ({"type": "permit", "actor": actor}, {"type": "deny"},
                      {"type": "deny", "actor": [{"reference": {"reference": "Patient/x"}}]}):
        with pytest.raises(FhirError) as info:
            pol.check_block_consent({"category": category, "provision": provision})
        assert info.value.status == 422


def test_a_person_token_without_usable_resource_scopes_grants_nothing() -> None:
    """`openid` alone, or only v2 scopes with a query (not enforced yet), is not a licence."""
    cr = CareRelationship("TREAT", toa=NOW_S)
    for scopes in ("", "openid", "user/Observation.rs?category=laboratory"):
        assert not pol.plan(practitioner(cr, scopes), NOW, AT_UNIT).allowed
    assert pol.plan(practitioner(cr, "user/Observation.rs"), NOW, AT_UNIT).allowed
