"""The access gate in-process on SQLite and PostgreSQL: an authorization matrix over a small
synthetic municipality written through the store (docs/adr/0006-access-gate.md).

Roles (GP, second GP, legevakt doctor, home-care nurse, health-station nurse, another
municipality's GP, citizen, parent, system clients) × relationship (none, GP list, encounter,
home-care decision, self-declared, break-the-glass) × path (read, search with `_total=accurate`,
`_include`, `_revinclude`, `_has`, chain, history, `$everything`) × data (a Consent block, NORS,
NORU, NORN_FORANS, strictly confidential and confidential addresses, children aged 8, 11, 13, 17).
Every test asserts what the caller gets *and* that nothing else (no row, no count) leaks.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest

from akson.access.gate import DENIED, Gate, GuardedSession, MemoryAuditSink
from akson.access.policy import Policy
from akson.access.principal import CareRelationship, Principal
from akson.access.scopes import parse_scopes
from akson.fhir.identifiers import make_fnr, make_orgnr
from akson.fhir.naming import FNR_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM, RESTRICTION_CODE_SYSTEM
from akson.fhir.outcome import FhirError
from akson.fhir.search import parse
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.database import connect
from akson.store.repository import ResourceStore, Stored
from tests.conftest import fresh_database

T = TypeVar("T")
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
TOA = int(NOW.timestamp()) - 120
ADDR = "https://akson.no/fhir/CodeSystem/address-protection"
EPISODE = "https://akson.no/fhir/CodeSystem/episode-type"
LOINC = "http://loinc.org"
_rng = random.Random(20260615)  # noqa: S311 - synthetic test data

ORG = {name: make_orgnr(_rng) for name in ("k1", "lk", "lv", "ht", "hs", "k2", "lk2")}
HPR = {"gp": "1000001", "gp2": "1000002", "lv": "1000003", "nurse": "1000004",
       "hsn": "1000005", "gpk2": "1000006"}


def _fnr(born: date) -> str:
    lo = 500 if born.year >= 2000 else 0
    for individ in range(lo, lo + 400):
        number = make_fnr(born, individ, synthetic="tenor")
        if number:
            return number
    raise AssertionError("no fnr")


def _years_ago(years: int, days: int = 10) -> date:
    return date(NOW.year - years, NOW.month, NOW.day) - timedelta(days=days)


BORN = {"anna": date(1970, 3, 1), "bjorn": date(1985, 5, 5), "cecilie": date(1940, 1, 2),
        "dora": date(1990, 7, 7), "erik": date(1960, 8, 8), "per": date(1984, 2, 2),
        "frida": date(1975, 4, 4), "gina": date(1995, 9, 9), "hans": date(1950, 1, 1),
        "ivar": date(1951, 2, 2), "jon": date(1930, 3, 3), "kid8": _years_ago(8),
        "kid11": _years_ago(11), "kid13": _years_ago(13), "kid17": _years_ago(17)}
FNR = {name: _fnr(born) for name, born in BORN.items()}
HOME = {"use": "home", "line": ["Lindeveien 3"], "postalCode": "0150", "city": "Oslo"}


def ref(res_type: str, res_id: str) -> dict[str, str]:
    return {"reference": f"{res_type}/{res_id}"}


def label(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def nors() -> dict[str, Any]:
    return {"security": [label(RESTRICTION_CODE_SYSTEM, "NORS")]}


def organization(key: str, parent: str | None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Organization", "id": key, "name": key,
                           "identifier": [{"system": ORGNR_SYSTEM, "value": ORG[key]}]}
    if parent:
        res["partOf"] = ref("Organization", parent)
    return res


def patient(name: str, *, address: dict | None = None, security: list | None = None
            ) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": name,
                           "identifier": [{"system": FNR_SYSTEM, "value": FNR[name]}],
                           "name": [{"family": name.capitalize()}],
                           "birthDate": BORN[name].isoformat()}
    if address:
        res["address"] = [address]
    if security:
        res["meta"] = {"security": security}
    return res


def obs(res_id: str, who: str, *, code: str = "8480-6", meta: dict | None = None,
        **more: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "id": res_id, "status": "final",
                           "code": {"coding": [{"system": LOINC, "code": code}]},
                           "subject": ref("Patient", who), **more}
    if meta:
        res["meta"] = meta
    return res


def episode(res_id: str, who: str, kind: str, org: str, manager: str, *, start: str = "2020-01-01"
            ) -> dict[str, Any]:
    return {"resourceType": "EpisodeOfCare", "id": res_id, "status": "active",
            "type": [{"coding": [{"system": EPISODE, "code": kind}]}],
            "patient": ref("Patient", who), "managingOrganization": ref("Organization", org),
            "period": {"start": start}, "careManager": ref("Practitioner", manager)}


def encounter(res_id: str, who: str, org: str, ended: datetime, status: str = "finished"
              ) -> dict[str, Any]:
    start = ended - timedelta(minutes=30)
    return {"resourceType": "Encounter", "id": res_id, "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "subject": ref("Patient", who), "serviceProvider": ref("Organization", org),
            "period": {"start": start.isoformat(), "end": ended.isoformat()}}


def child_link(res_id: str, kid: str) -> dict[str, Any]:
    return {"resourceType": "RelatedPerson", "id": res_id,
            "extension": [{"url": "https://akson.no/fhir/StructureDefinition/"
                                  "parental-responsibility",
                           "valueCoding": {"system": "http://hl7.no/fhir/CodeSystem/"
                                                     "no-basis-parental-responsibility",
                                           "code": "felles"}}],
            "identifier": [{"system": FNR_SYSTEM, "value": FNR[kid]}],
            "patient": ref("Patient", "per"),
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                    "v3-RoleCode", "code": "CHILD"}]}]}


def block(res_id: str, who: str, actor: dict[str, str], kind: str = "deny") -> dict[str, Any]:
    return {"resourceType": "Consent", "id": res_id, "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                            "consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "https://akson.no/fhir/CodeSystem/"
                                                "consent-category", "code": "sperring"}]}],
            "patient": ref("Patient", who),
            "provision": {"type": kind, "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                               "v3-ParticipationType", "code": "PRCP"}]},
                "reference": actor}]}}


def dataset() -> list[dict[str, Any]]:
    """The municipality: units, staff, persons and their records (resource ids are names)."""
    yesterday = NOW - timedelta(days=1)
    out: list[dict[str, Any]] = [
        organization("k1", None), organization("lk", "k1"), organization("lv", "k1"),
        organization("ht", "k1"), organization("hs", "k1"), organization("k2", None),
        organization("lk2", "k2"),
    ]
    for key, hpr in HPR.items():
        out.append({"resourceType": "Practitioner", "id": key, "name": [{"family": key}],
                    "identifier": [{"system": HPR_SYSTEM, "value": hpr}]})
    out += [
        patient("anna"), patient("bjorn"), patient("erik"), patient("frida"), patient("hans"),
        patient("ivar"), patient("jon"),
        patient("cecilie", address={"use": "home", "line": ["Hemmeligveien 1"],
                                    "postalCode": "0001"}),  # v1: before protection
        patient("dora", address={"use": "home", "line": ["Skjultveien 2"], "postalCode": "0002"},
                security=[label(ADDR, "confidential")]),
        patient("gina", address={"use": "home", "line": ["Lukketveien 6"], "postalCode": "0006"},
                security=[label(ADDR, "strictly-confidential")]),
        patient("per", address=HOME), patient("kid11", address=HOME),
        patient("kid13", address=HOME), patient("kid17", address=HOME),
        patient("kid8", address={"use": "home", "line": ["Annenvei 8"], "postalCode": "0008"}),
        # relationships from data
        episode("ep-anna", "anna", "fastlegeliste", "lk", "gp"),
        episode("ep-dora", "dora", "fastlegeliste", "lk", "gp"),
        episode("ep-gina", "gina", "fastlegeliste", "lk", "gp"),
        episode("ep-frida", "frida", "fastlegeliste", "lk2", "gpk2"),
        episode("ep-cecilie", "cecilie", "hjemmesykepleie", "ht", "nurse"),
        encounter("en-bjorn", "bjorn", "lv", yesterday),
        encounter("en-erik-old", "erik", "lv", NOW - timedelta(days=60)),
        {**encounter("en-hans", "hans", "lv", NOW, "in-progress"),
         "period": {"start": (NOW - timedelta(days=40)).isoformat()}},  # still under way
        encounter("en-ivar", "ivar", "lv", yesterday, "cancelled"),
        {**episode("ep-jon", "jon", "hjemmesykepleie", "ht", "nurse"), "status": "finished",
         "period": {"start": "2020-01-01", "end": "2025-01-01"}},  # the decision has ended
        encounter("en-dora", "dora", "lk", NOW - timedelta(days=3)),
        encounter("en-kid11", "kid11", "hs", NOW - timedelta(days=3)),
        block("block-dora", "dora", ref("Practitioner", "gp")),
        # the records
        obs("o-anna", "anna", meta=nors()),  # v1 blocked by Anna; v2 (below) lifts it
        obs("o-anna-nors", "anna", code="secret", meta=nors()),
        obs("o-bjorn", "bjorn", encounter=ref("Encounter", "en-bjorn")),
        obs("o-cecilie", "cecilie"), obs("o-dora", "dora"), obs("o-erik", "erik"),
        obs("o-erik-nors", "erik", code="secret", meta=nors()),
        obs("o-frida", "frida"), obs("o-gina", "gina"), obs("o-hans", "hans"),
        obs("o-ivar", "ivar"), obs("o-jon", "jon"), obs("o-per", "per"),
        obs("o-per-noru", "per", meta={"security": [label(RESTRICTION_CODE_SYSTEM, "NORU")]}),
        obs("o-kid11", "kid11"),
        obs("o-kid11-forans", "kid11",
            meta={"security": [label(RESTRICTION_CODE_SYSTEM, "NORN_FORANS")]}),
        obs("o-kid13", "kid13"), obs("o-kid17", "kid17"), obs("o-kid8", "kid8"),
        child_link("rp-kid8", "kid8"), child_link("rp-kid11", "kid11"),
        child_link("rp-kid13", "kid13"), child_link("rp-kid17", "kid17"),
    ]
    return out


def later_versions() -> list[dict[str, Any]]:
    """Second versions: Anna lifts her block on o-anna (v1 stays NORS in history); Cecilie's
    address becomes strictly confidential (FREG then sends no address; v1 still holds it);
    o-anna derives from the hidden o-anna-nors (for the chain test)."""
    return [
        obs("o-anna", "anna", derivedFrom=[ref("Observation", "o-anna-nors")]),
        patient("cecilie", security=[label(ADDR, "strictly-confidential")]),
    ]


ALL_OBS = {r["id"] for r in dataset() if r["resourceType"] == "Observation"}
OBS_CODE = {r["id"]: r["code"]["coding"][0]["code"] for r in dataset()
            if r["resourceType"] == "Observation"}


# ------------------------------------------------------------------ principals


def practitioner(who: str, unit: str, parent: str = "k1", purpose: str = "TREAT", *,
                 reason: str | None = None, user_selected: bool = False,
                 patients: tuple[str, ...] = (), toa: int | None = TOA) -> Principal:
    cr = CareRelationship(purpose_of_use=purpose, decision_ref_description=reason,
                          user_selected=user_selected,
                          patients=tuple(FNR[p] for p in patients), toa=toa)
    return Principal(kind="practitioner", issuer="https://helseid.test", subject=f"sub-{who}",
                     client_id="epj", hpr_number=HPR[who], name=who, orgnr_parent=ORG[parent],
                     orgnr_child=ORG[unit], care_relationship=cr,
                     scopes=parse_scopes("openid user/*.cruds"))


def citizen(who: str) -> Principal:
    return Principal(kind="citizen", issuer="https://idporten.test", subject=f"sub-{who}",
                     client_id="helsenorge", national_id=FNR[who], name=who,
                     scopes=parse_scopes("openid patient/*.cruds"))


def system(scopes: str, launch: str | None = None) -> Principal:
    return Principal(kind="system", issuer="https://helseid.test", subject="sys",
                     client_id="integration", scopes=parse_scopes(scopes), launch_patient=launch)


GP = practitioner("gp", "lk")
PRINCIPALS: dict[str, Principal] = {
    "gp": GP,
    "gp2": practitioner("gp2", "lk"),
    "gp2-coc": practitioner("gp2", "lk", purpose="COC"),
    "legevakt": practitioner("lv", "lv", purpose="ETREAT"),
    "home-nurse": practitioner("nurse", "ht"),
    "hs-nurse": practitioner("hsn", "hs"),
    "gp-k2": practitioner("gpk2", "lk2", "k2"),
    "gp-wrong-tenant": practitioner("gp", "lk", "k2"),
    "gp-self-declared-erik": practitioner("gp", "lk", reason="vikar for kollega",
                                          user_selected=True, patients=("erik",)),
    "gp-self-declared-no-reason": practitioner("gp", "lk", user_selected=True,
                                               patients=("erik",)),
    "gp-btg-erik-dora": practitioner("gp", "lk", "k1", "BTG", reason="akutt: bevisstløs",
                                     patients=("erik", "dora")),
    "gp-btg-no-reason": practitioner("gp", "lk", "k1", "BTG", patients=("erik",)),
    "gp-btg-expired": practitioner("gp", "lk", "k1", "BTG", reason="akutt",
                                   patients=("erik",), toa=TOA - 7200),
    "gp-no-purpose": replace(GP, care_relationship=None),
    "citizen-anna": citizen("anna"),
    "parent-per": citizen("per"),
    "system-all": system("system/*.rs"),
    "system-patient-only": system("system/Patient.rs"),
    "smart-anna": system("patient/*.rs launch/patient", launch="anna"),
    "system-no-scopes": system("openid"),
}

#: Observations each principal may find (the allow list; everything else is a deny).
EXPECTED_OBS: dict[str, set[str] | None] = {
    "gp": {"o-anna", "o-gina"},  # GP list; Dora blocks the GP; o-anna-nors blocked (NORS)
    "gp2": {"o-dora"},  # Dora's recent encounter at the office; Anna's list is the GP's own
    "gp2-coc": {"o-dora"},
    # yesterday's contact and one still under way; Erik's 60-day-old contact has lapsed and
    # Ivar's was cancelled
    "legevakt": {"o-bjorn", "o-hans"},
    "home-nurse": {"o-cecilie"},  # the home-care decision; Jon's has ended
    "hs-nurse": {"o-kid11", "o-kid11-forans"},  # NORN_FORANS binds parents only
    "gp-k2": {"o-frida"},
    "gp-wrong-tenant": None,  # the unit is not part of the claimed legal entity
    "gp-self-declared-erik": {"o-anna", "o-gina", "o-erik"},  # NORS still holds
    "gp-btg-erik-dora": {"o-anna", "o-gina", "o-erik", "o-erik-nors", "o-dora"},
    "citizen-anna": {"o-anna", "o-anna-nors"},  # her own blocks do not bind her
    "parent-per": {"o-per", "o-kid11"},  # NORU hidden; 13 and 17 too old; kid8 lives elsewhere
    "system-all": ALL_OBS - {"o-anna-nors", "o-erik-nors"},
    "smart-anna": {"o-anna"},
    # denied outright
    "gp-self-declared-no-reason": None, "gp-btg-no-reason": None, "gp-btg-expired": None,
    "gp-no-purpose": None, "system-patient-only": None, "system-no-scopes": None,
}


# ------------------------------------------------------------------ fixtures


class Env:
    """A migrated database with the data set, and a runner for guarded sessions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sink = MemoryAuditSink()
        self.registry = SearchParamRegistry.default()

    def run(self, fn: Callable[[Gate], Awaitable[T]]) -> T:
        async def go() -> T:
            db = connect(self.url, pool_size=2)
            await db.open()
            try:
                gate = Gate(ResourceStore(db, self.registry), self.sink, Policy(),
                            clock=lambda: NOW)
                return await fn(gate)
            finally:
                await db.close()
        return asyncio.run(go())

    def as_(self, who: str | Principal, fn: Callable[[GuardedSession], Awaitable[T]],
            write: bool = False) -> T:
        principal = PRINCIPALS[who] if isinstance(who, str) else who

        async def go(gate: Gate) -> T:
            async with gate.session(principal, write=write) as gs:
                return await fn(gs)
        return self.run(go)

    def search(self, who: str | Principal, res_type: str, pairs: list[tuple[str, str]]
               ) -> tuple[set[str], int | None, set[str]]:
        """(ids found, total, ids included) of a search as `who`."""
        async def go(gs: GuardedSession) -> tuple[set[str], int | None, set[str]]:
            query = parse(res_type, pairs, registry=self.registry)
            page = await gs.search(query)
            included = await gs.include(query, page.items) if query.includes else None
            return ({i.res_id for i in page.items}, page.total,
                    {i.res_id for i in included.items} if included else set())
        return self.as_(who, go)


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with fresh_database(backend, tmp_path_factory.mktemp("gate"), "akson_gate",
                        migrate=True) as url:
        e = Env(url)

        async def load(gate: Gate) -> None:
            async with gate.store.session(write=True) as s:
                for res in dataset() + later_versions():
                    await s.update(res["resourceType"], res["id"], res)
        e.run(load)
        yield e


def denied(fn: Callable[[], Any]) -> FhirError:
    with pytest.raises(FhirError) as info:
        fn()
    assert info.value.status == 403
    assert info.value.diagnostics == DENIED
    return info.value


# ------------------------------------------------------------------ the matrix


@pytest.mark.parametrize("who", sorted(EXPECTED_OBS))
def test_search_finds_exactly_the_allowed_observations_and_counts_only_them(env: Env, who: str
                                                                            ) -> None:
    expected = EXPECTED_OBS[who]
    if expected is None:
        denied(lambda: env.search(who, "Observation", [("_total", "accurate")]))
        return
    found, total, _ = env.search(who, "Observation", [("_total", "accurate")])
    assert found == expected
    assert total == len(expected)
    # a page of one: the total still counts only what the caller may see
    found, total, _ = env.search(who, "Observation", [("_total", "accurate"), ("_count", "1")])
    assert total == len(expected) and len(found) == min(1, len(expected))
    # led by a `system|code` clause, counted from its index rows: still only what they may see
    coded = {i for i in expected if OBS_CODE[i] == "8480-6"}
    for more in ([], [("_sort", "-date")], [("status", "final")]):
        found, total, _ = env.search(who, "Observation", [
            ("code", f"{LOINC}|8480-6"), ("_total", "accurate"), ("_count", "1"), *more])
        assert total == len(coded) and found <= coded


@pytest.mark.parametrize("who", sorted(k for k, v in EXPECTED_OBS.items() if v is not None))
def test_read_allows_exactly_the_same_resources_as_search(env: Env, who: str) -> None:
    async def reads(gs: GuardedSession) -> dict[str, str]:
        out = {}
        for res_id in sorted(ALL_OBS):
            try:
                stored = await gs.read("Observation", res_id)
                out[res_id] = stored.res_id if stored else "none"
            except FhirError as exc:
                out[res_id] = f"{exc.status} {exc.diagnostics}"
        return out

    expected = EXPECTED_OBS[who]
    assert expected is not None
    assert env.as_(who, reads) == {r: r if r in expected else f"403 {DENIED}" for r in ALL_OBS}


def test_denied_and_missing_reads_look_the_same(env: Env) -> None:
    for who in ("gp", "parent-per"):
        hidden = denied(lambda w=who: env.as_(w, lambda gs: gs.read("Observation", "o-dora")))
        missing = denied(lambda w=who: env.as_(w, lambda gs: gs.read("Observation", "no-such")))
        assert hidden.outcome() == missing.outcome()


def test_a_caller_reaching_every_record_gets_404_for_what_was_never_stored(env: Env) -> None:
    # Only labels can hide anything from it: a label-hidden resource is still 403, an id never
    # stored is the ordinary "not there" (None → 404), as R4 read promises (ADR 0006, Denials).
    denied(lambda: env.as_("system-all", lambda gs: gs.read("Observation", "o-erik-nors")))
    assert env.as_("system-all", lambda gs: gs.read("Observation", "no-such")) is None
    assert env.as_("system-all", lambda gs: gs.vread("Observation", "no-such", 1)) is None


def test_patient_search_and_reads_follow_the_relationships(env: Env) -> None:
    assert env.search("gp", "Patient", [("_total", "accurate")])[:2] == ({"anna", "gina"}, 2)
    assert env.search("parent-per", "Patient", [])[0] == {"per", "kid11"}
    assert env.search("legevakt", "Patient", [])[0] == {"bjorn", "hans"}
    assert env.search("gp-btg-erik-dora", "Patient", [])[0] == {"anna", "gina", "erik", "dora"}
    denied(lambda: env.as_("parent-per", lambda gs: gs.read("Patient", "kid13")))
    denied(lambda: env.as_("parent-per", lambda gs: gs.read("Patient", "kid17")))
    denied(lambda: env.as_("parent-per", lambda gs: gs.read("Patient", "kid8")))


def test_includes_never_add_what_the_caller_may_not_see(env: Env) -> None:
    found, _, included = env.search("gp", "Patient", [
        ("_id", "anna,dora,erik"), ("_revinclude", "Observation:subject")])
    assert found == {"anna"}
    assert included == {"o-anna"}
    found, _, included = env.search("gp", "Observation", [
        ("_id", "o-anna"), ("_include", "Observation:derived-from")])
    assert found == {"o-anna"} and included == set()  # o-anna-nors stays hidden
    found, _, included = env.search("citizen-anna", "Observation", [
        ("_id", "o-anna"), ("_include", "Observation:derived-from")])
    assert included == {"o-anna-nors"}
    # forward includes of shared resources stay visible; the encounter's patient does not leak
    found, _, included = env.search("legevakt", "Observation", [
        ("_include", "Observation:encounter"), ("_include", "Observation:subject")])
    assert found == {"o-bjorn", "o-hans"} and included == {"en-bjorn", "bjorn", "hans"}
    found, _, included = env.search("system-patient-only", "Patient", [
        ("_id", "anna"), ("_revinclude", "Observation:subject")])
    assert found == {"anna"} and included == set()  # Observation is outside its scopes


def test_has_and_chains_do_not_match_through_hidden_resources(env: Env) -> None:
    has = [("_has:Observation:subject:code", "secret"), ("_total", "accurate")]
    assert env.search("gp", "Patient", has)[:2] == (set(), 0)
    assert env.search("citizen-anna", "Patient", has)[:2] == ({"anna"}, 1)
    assert env.search("gp-btg-erik-dora", "Patient", has)[0] == {"erik"}
    chain = [("derived-from:Observation.code", "secret"), ("_total", "accurate")]
    assert env.search("gp", "Observation", chain)[:2] == (set(), 0)
    assert env.search("citizen-anna", "Observation", chain)[:2] == ({"o-anna"}, 1)
    named = [("subject:Patient.name", "Dora"), ("_total", "accurate")]
    assert env.search("gp", "Observation", named)[:2] == (set(), 0)
    assert env.search("gp2", "Observation", named)[:2] == ({"o-dora"}, 1)


def test_history_hides_versions_by_their_own_labels_and_redacts_old_addresses(env: Env) -> None:
    async def versions(gs: GuardedSession, res_type: str, res_id: str | None
                       ) -> tuple[list[int], int | None, list[bytes]]:
        page = await gs.history(res_type, res_id, since=None, count=50, cursor=None)
        return [i.version for i in page.items], page.total, [i.content or b"" for i in page.items]

    got, total, _ = env.as_("gp", lambda gs: versions(gs, "Observation", "o-anna"))
    assert (got, total) == ([2], 1)  # v1 carried Anna's NORS
    got, total, _ = env.as_("citizen-anna", lambda gs: versions(gs, "Observation", "o-anna"))
    assert (got, total) == ([2, 1], 2)
    assert env.as_("gp", lambda gs: gs.vread("Observation", "o-anna", 2)) is not None
    denied(lambda: env.as_("gp", lambda gs: gs.vread("Observation", "o-anna", 1)))
    denied(lambda: env.as_("gp", lambda gs: gs.vread("Observation", "o-anna", 9)))
    denied(lambda: env.as_("gp", lambda gs: versions(gs, "Observation", "o-dora")))
    denied(lambda: env.as_("gp", lambda gs: versions(gs, "Patient", "dora")))
    got, _, contents = env.as_("home-nurse", lambda gs: versions(gs, "Patient", "cecilie"))
    assert got == [2, 1]
    assert not any(b"Hemmeligveien" in c for c in contents)  # protected later, redacted always
    assert b"REDACTED" in contents[1]
    async def ids(gs: GuardedSession, res_type: str | None) -> set[str]:
        page = await gs.history(res_type, None, since=None, count=500, cursor=None)
        return {i.res_id for i in page.items}

    assert env.as_("gp", lambda gs: ids(gs, "Observation")) == {"o-anna", "o-gina"}
    records = {r["id"] for r in dataset() if r["resourceType"] not in ("Organization",
                                                                        "Practitioner")}
    assert env.as_("legevakt", lambda gs: ids(gs, None)) & records == {
        "bjorn", "en-bjorn", "o-bjorn", "hans", "en-hans", "o-hans"}


def test_strictly_confidential_address_is_never_returned_nor_searchable(env: Env) -> None:
    for who in ("gp", "system-all", "gp-btg-erik-dora"):
        stored = env.as_(who, lambda gs: gs.read("Patient", "gina"))
        assert stored is not None and stored.content is not None
        assert b"Lukketveien" not in stored.content and b"REDACTED" in stored.content
    for who in ("gp", "system-all"):
        assert env.search(who, "Patient", [("address", "Lukketveien"),
                                           ("_total", "accurate")])[:2] == (set(), 0)
        assert env.search(who, "Observation", [("subject:Patient.address-postalcode", "0006")]
                          )[0] == set()


def test_confidential_address_only_for_treating_roles(env: Env) -> None:
    treating = env.as_("gp2", lambda gs: gs.read("Patient", "dora"))
    assert treating is not None and b"Skjultveien" in (treating.content or b"")
    casework = env.as_("gp2-coc", lambda gs: gs.read("Patient", "dora"))
    assert casework is not None and b"Skjultveien" not in (casework.content or b"")
    assert env.search("gp2", "Patient", [("address", "Skjultveien")])[0] == {"dora"}
    assert env.search("gp2-coc", "Patient", [("address", "Skjultveien"),
                                             ("_total", "accurate")])[:2] == (set(), 0)


def test_everything_is_restricted_inside_the_statement(env: Env) -> None:
    async def everything(gs: GuardedSession, patient: str) -> set[str]:
        page = await gs.everything("Patient", patient, types=None, since=None, cursor=None,
                                   count=100)
        return {i.res_id for i in page.items}

    got = env.as_("gp", lambda gs: everything(gs, "anna"))
    assert {"anna", "o-anna", "ep-anna", "gp", "lk"} <= got
    assert "o-anna-nors" not in got
    denied(lambda: env.as_("gp", lambda gs: everything(gs, "dora")))
    denied(lambda: env.as_("parent-per", lambda gs: everything(gs, "kid13")))
    kid = env.as_("parent-per", lambda gs: everything(gs, "kid11"))
    assert "o-kid11" in kid and "o-kid11-forans" not in kid

    async def encounter(gs: GuardedSession, res_id: str) -> set[str]:
        page = await gs.everything("Encounter", res_id, types=None, since=None, cursor=None,
                                   count=100)
        return {i.res_id for i in page.items}

    assert {"en-bjorn", "o-bjorn", "bjorn", "lv"} <= env.as_("legevakt",
                                                              lambda gs: encounter(gs, "en-bjorn"))
    denied(lambda: env.as_("legevakt", lambda gs: encounter(gs, "en-erik-old")))


def test_export_rows_pass_the_same_restriction(env: Env) -> None:
    from akson.store.export import ExportScope, type_chunk

    async def exported(gate: Gate) -> set[str]:
        async with gate.session(PRINCIPALS["gp"]) as gs:
            access = gs.export_access()
        async with gate.store.session(write=False) as s:
            rows = await type_chunk(s, "Observation", ExportScope("system"), after_pk=0,
                                    limit=1000, access=access)
        return {res_id for _, res_id, _, _ in rows}

    assert env.run(exported) == {"o-anna", "o-gina"}


def test_exists_says_no_for_what_the_caller_may_not_see(env: Env) -> None:
    assert env.as_("gp", lambda gs: gs.exists("Observation", "o-anna")) is True
    assert env.as_("gp", lambda gs: gs.exists("Observation", "o-dora")) is False
    assert env.as_("gp2", lambda gs: gs.exists("Observation", "o-dora")) is True


def test_every_access_is_audited_with_purpose_and_break_glass_mark(env: Env) -> None:
    env.sink.intents.clear()
    env.search("gp-btg-erik-dora", "Observation", [("subject", "Patient/erik")])
    denied(lambda: env.as_("gp", lambda gs: gs.read("Observation", "o-dora")))
    btg, deny = env.sink.intents
    assert btg.action == "search" and btg.outcome == "allowed" and btg.break_glass
    assert btg.purpose == "BTG" and btg.patients == ("erik",) and btg.reason
    assert deny.outcome == "denied" and not deny.break_glass and deny.hpr_number == HPR["gp"]
    assert all(FNR["erik"] not in repr(i) for i in env.sink.intents)


# ------------------------------------------------------------------ writes


def test_writes_need_the_same_access_as_reads(env: Env) -> None:
    new = obs("o-new-anna", "anna")
    stored = env.as_("gp", lambda gs: gs.create("Observation", new, res_id="o-new-anna"),
                     write=True)
    assert stored.version == 1
    denied(lambda: env.as_("gp", lambda gs: gs.create("Observation", obs("x", "erik")),
                           write=True))
    denied(lambda: env.as_("gp", lambda gs: gs.update("Observation", "o-dora",
                                                      obs("o-dora", "dora")), write=True))
    # moving a visible resource into a record the caller may not see
    denied(lambda: env.as_("gp", lambda gs: gs.update("Observation", "o-new-anna",
                                                      obs("o-new-anna", "erik")), write=True))
    denied(lambda: env.as_("gp", lambda gs: gs.delete("Observation", "o-dora"), write=True))
    # only the citizen lifts a NORS label
    denied(lambda: env.as_("gp-btg-erik-dora", lambda gs: gs.update(
        "Observation", "o-erik-nors", obs("o-erik-nors", "erik", code="secret")), write=True))
    # citizens write consents in their own record only, and nothing else
    denied(lambda: env.as_("citizen-anna", lambda gs: gs.create("Observation",
                                                                obs("y", "anna")), write=True))
    denied(lambda: env.as_("citizen-anna", lambda gs: gs.create(
        "Consent", block("c-x", "dora", ref("Practitioner", "gp2"))), write=True))
    assert env.as_("gp", lambda gs: gs.delete("Observation", "o-new-anna"),
                   write=True) is not None


def test_only_system_clients_write_the_registers_access_is_computed_from(env: Env) -> None:
    """A practitioner who could add `partOf` to another unit's Organization (or their HPR number
    to another Practitioner) would widen their own care relationships."""
    for who in ("gp", "gp-btg-erik-dora", "citizen-anna"):
        denied(lambda who=who: env.as_(who, lambda gs: gs.create(
            "Organization", {**organization("lk", "k1"), "id": "new-unit"}, res_id="new-unit"),
            write=True))
        denied(lambda who=who: env.as_(who, lambda gs: gs.create(
            "Practitioner", {"resourceType": "Practitioner"}, res_id="p-new"), write=True))
    register_sync = system("system/Organization.cruds")
    assert env.as_(register_sync, lambda gs: gs.create(
        "Organization", {"resourceType": "Organization", "name": "Ny enhet"}, res_id="new-unit"),
        write=True).version == 1


def test_a_citizens_new_block_takes_effect_everywhere(env: Env) -> None:
    with pytest.raises(FhirError) as info:
        env.as_("citizen-anna", lambda gs: gs.create(
            "Consent", block("c-permit", "anna", ref("Practitioner", "gp"), "permit")),
            write=True)
    assert info.value.status == 422
    env.as_("citizen-anna", lambda gs: gs.create(
        "Consent", block("c-anna-lk", "anna", ref("Organization", "lk")), res_id="c-anna-lk"),
        write=True)
    try:
        assert env.search("gp", "Observation", [("_total", "accurate")])[:2] == ({"o-gina"}, 1)
        denied(lambda: env.as_("gp", lambda gs: gs.read("Patient", "anna")))
        btg = practitioner("gp", "lk", "k1", "BTG", reason="akutt", patients=("anna",))
        assert "o-anna" in env.search(btg, "Observation", [])[0]
    finally:
        revoked = block("c-anna-lk", "anna", ref("Organization", "lk"))
        revoked["status"] = "inactive"
        env.as_("citizen-anna", lambda gs: gs.update("Consent", "c-anna-lk", revoked),
                write=True)
    assert env.search("gp", "Observation", [])[0] == {"o-anna", "o-gina"}


def test_the_chained_audit_log_gets_reads_writes_and_denials_that_survive_rollback(env: Env
                                                                                   ) -> None:
    from akson.access.audit import ChainedAuditSink, Source
    from akson.store import audit_log

    async def go(gate: Gate) -> tuple[int, list[str]]:
        db = gate.store.db
        log = audit_log.AuditLog(db, key=audit_log.checkpoint_key(b"gate test"), chains=2)
        chained = Gate(gate.store, ChainedAuditSink(log, Source(site="gate-test")), Policy(),
                       clock=lambda: NOW)
        before = sum(seq for seq, _ in (await audit_log.heads(db)).values())
        async with chained.session(GP) as gs:
            await gs.read("Observation", "o-gina")
        async with chained.session(GP, write=True) as gs:
            await gs.create("Observation", obs("o-audited", "gina"), res_id="o-audited")
        with pytest.raises(FhirError):
            async with chained.session(GP, write=True) as gs:
                await gs.create("Observation", obs("o-refused", "gina"), res_id="o-refused")
                await gs.create("Observation", obs("o-denied", "erik"), res_id="o-denied")
        after = sum(seq for seq, _ in (await audit_log.heads(db)).values())
        async with db.transaction(write=False) as tx:
            gina = await audit_log.patient_log(tx, "gina")
        async with gate.store.session(write=False) as s:
            refused = await s.read("Observation", "o-refused")
        assert refused is None  # the denial rolled the whole transaction back
        return after - before, [r.entry.subtype for r in gina]

    added, gina = env.run(go)
    # read + create + the denial (kept although its transaction rolled back); the create that
    # rolled back with the denial left no record
    assert added == 3
    assert sorted(gina) == ["create", "read"]


def test_a_write_whose_audit_chain_moved_runs_again_and_lands_once(env: Env) -> None:
    """`Gate.run` checks a write's audit append at its commit (ADR 0017). When another process
    appended to the same chain in between, PostgreSQL fails that commit and the write runs
    again on the chain's lock: one resource, one record, an intact log. SQLite takes the lock
    from the start, so its write runs once."""
    from akson.access.audit import ChainedAuditSink, Source
    from akson.store import audit_log

    async def go(gate: Gate) -> tuple[list[int], bool, list[str], bool]:
        db = gate.store.db
        key = audit_log.checkpoint_key(b"gate test")
        log = audit_log.AuditLog(db, key=key, chains=1)
        chained = Gate(gate.store, ChainedAuditSink(log, Source(site="gate-test")), Policy(),
                       clock=lambda: NOW)
        runs: list[int] = []

        def create(res_id: str) -> Callable[[GuardedSession], Awaitable[Stored]]:
            async def work(gs: GuardedSession) -> Stored:
                runs.append(len(runs))
                return await gs.create("Observation", obs(res_id, "gina"), res_id=res_id)
            return work

        await chained.run(GP, create("o-run-1"), write=True)  # this process now knows the head
        other = audit_log.AuditLog(db, key=key, chains=1)
        await other.record_many([audit_log.AuditEntry(content=b"{}", recorded=1, action="R",
                                                      subtype="read")], chain=0)
        runs.clear()
        stored = await chained.run(GP, create("o-run-2"), write=True)
        async with gate.store.session(write=False) as s:
            versions = await s.tx.fetchall(
                "SELECT version FROM resource_version WHERE res_id = 'o-run-2'")
            gina = await audit_log.patient_log(s.tx, "gina")
        once = [r.entry.subtype for r in gina if b"o-run-2" in r.entry.content]
        return runs, stored.version == 1 and len(versions) == 1, once, \
            (await audit_log.verify(db, key)).ok

    runs, one_version, records, intact = env.run(go)
    assert len(runs) == (2 if env.url.startswith("postgresql") else 1)
    assert one_version and records == ["create"] and intact


def test_every_version_records_the_municipality_and_unit_that_wrote_it(env: Env) -> None:
    """ARCHITECTURE principle 2: each resource carries the orgnr of the municipality (its data
    controller) and unit that wrote its current version — single writes and a transaction's
    creates alike; a system client writes none."""
    async def stamps(gate: Gate) -> dict[str, tuple[str | None, str | None]]:
        async with gate.store.session(write=False) as s:
            rows = await s.tx.fetchall(
                "SELECT res_id, org, unit FROM resource WHERE res_id IN "
                "('o-org-1', 'o-org-2', 'o-org-3')")
        return {str(i): (o, u) for i, o, u in rows}

    env.as_("gp", lambda gs: gs.create("Observation", obs("o-org-1", "anna"), res_id="o-org-1"),
            write=True)
    async def transaction(gate: Gate) -> None:  # as a transaction Bundle's plain creates
        async with gate.session(GP, write=True, bulk=True) as gs:
            await gs.create_many([("Observation", "o-org-2", obs("o-org-2", "anna"))])

    env.run(transaction)
    env.as_(system("system/*.cruds"), lambda gs: gs.create(
        "Observation", obs("o-org-3", "anna"), res_id="o-org-3"), write=True)
    gp = (GP.orgnr_parent, GP.orgnr_child)
    assert gp[0] and gp[1]
    assert env.run(stamps) == {"o-org-1": gp, "o-org-2": gp, "o-org-3": (None, None)}
    env.as_(system("system/*.cruds"), lambda gs: gs.update(
        "Observation", "o-org-1", obs("o-org-1", "anna", code="changed")), write=True)
    assert env.run(stamps)["o-org-1"] == (None, None)  # the latest writer's
