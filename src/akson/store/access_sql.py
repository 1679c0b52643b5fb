"""The access policy's restriction as data, and its compilation to SQL predicates on resource rows.

`akson.access.policy` decides *what* a caller may see and expresses it as a `Restriction` (plain
data, no SQL); this module is the only place that turns it into SQL. `restrict(r, alias, type)`
gives the `Where` predicates for one `resource` row, so the same restriction filters search
results, totals, chains and `_has` (`Session.search(extra=…, scope=…)`), includes
(`fetch_included(scope=…)`), history and `$everything` inside the statement: a denied row is
never read, never counted (docs/adr/0006-access-gate.md).

Care relationships from data are subqueries over the index tables (no extra table), driven
from the caller's unit (`sp_reference` by target) with per-row checks (`EXISTS` on `res_pk`), so
their cost follows the unit's patients, not the population:

- GP list: an active `EpisodeOfCare` of type `episode-type|fastlegeliste` whose `careManager` is
  the caller's Practitioner and `managingOrganization` the caller's unit;
- an active `EpisodeOfCare` of any other type at the caller's unit (a home-care service decision,
  a nursing-home place, a helsestasjon programme);
- an `Encounter` at the caller's unit (`serviceProvider`) that is under way, or ended after
  `CareRelation.encounter_since` (a legevakt or GP contact and its follow-up).

The caller's Practitioner and unit ids are looked up once per session (`caller_resources`): the
unit is an Organization with the unit's orgnr that is the legal entity itself or `partOf` it
(tenant × unit: a unit of another municipality never matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from akson.fhir.naming import HPR_SYSTEM, ORGNR_SYSTEM
from akson.store.repository import Session, Stored
from akson.store.search_sql import Scope, Where

#: Akson's episode types (= akson.registry.mapping.EPISODE_TYPE_SYSTEM; the store sits below it).
EPISODE_TYPE_SYSTEM = "https://akson.no/fhir/CodeSystem/episode-type"
GP_LIST_CODE = "fastlegeliste"
#: A citizen's block of named persons or units: a Consent with this category (docs/adr/0006).
CONSENT_CATEGORY_SYSTEM = "https://akson.no/fhir/CodeSystem/consent-category"
BLOCK_CODE = "sperring"
#: A citizen's reservation against storage of their results (akson.results.rights).
RESERVATION_CODE = "reservasjon-provesvar"
#: `meta.tag` of resources the results service stored (akson.results): set by it alone.
ORIGIN_SYSTEM = "https://akson.no/fhir/CodeSystem/origin"
ORIGIN_RESULTS = "results"
#: Encounter.status values of an encounter still under way (R4 encounter-status).
ACTIVE_ENCOUNTER = ("planned", "arrived", "triaged", "in-progress", "onleave")
#: Encounter.status values that never make a care relationship.
VOID_ENCOUNTER = ("cancelled", "entered-in-error")


@dataclass(frozen=True, slots=True)
class CareRelation:
    """The data-derived care relationships of one practitioner working at one unit.

    `practitioner_ids` are the caller's Practitioner resources, `unit_ids` the Organization
    resources of the caller's unit (see `caller_resources`). Times are µs since the epoch, UTC:
    `now` for "active", `encounter_since` the earliest end of a finished Encounter that counts.
    """

    practitioner_ids: tuple[str, ...]
    unit_ids: tuple[str, ...]
    now: int
    encounter_since: int


@dataclass(frozen=True, slots=True)
class LabelRule:
    """Hide rows carrying `meta.security` system|code.

    `only_patients` (when not None) limits the rule to rows in those patients' records;
    `except_patients` exempts those records (break-the-glass).
    """

    system: str
    code: str
    only_patients: tuple[str, ...] | None = None
    except_patients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActorBlock:
    """Hide the records of patients with an active blocking Consent naming the caller.

    The Consent (category `consent-category|sperring`, status active) names the blocked actors in
    `provision.actor.reference`: one of `practitioner_ids` (the caller) or `organization_ids`
    (the caller's unit or legal entity). `except_patients` are exempt (break-the-glass).
    """

    practitioner_ids: tuple[str, ...]
    organization_ids: tuple[str, ...]
    except_patients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Restriction:
    """Which `resource` rows a caller may see; the fields are ANDed.

    - `all_patients`: every record (a system client with `system/` scopes); otherwise only rows
      whose `patient_id` is in `patient_ids` or in a `relation`'s patients;
    - `shared`: rows that belong to no record (Practitioner, Organization, …) are visible, of
      `shared_types` only when that is given;
    - `types`: the resource types visible at all (None: any);
    - `labels`, `block`: see `LabelRule`, `ActorBlock`.
    """

    all_patients: bool = False
    patient_ids: tuple[str, ...] = ()
    relation: CareRelation | None = None
    shared: bool = True
    shared_types: frozenset[str] | None = None
    types: frozenset[str] | None = None
    labels: tuple[LabelRule, ...] = ()
    block: ActorBlock | None = None

    @property
    def unrestricted(self) -> bool:
        """True when the restriction filters nothing."""
        return (self.all_patients and self.shared and self.shared_types is None
                and self.types is None and not self.labels and self.block is None)


def _marks(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def restrict(r: Restriction, alias: str, res_type: str, *, one_row: bool = False,
             labels: bool = True) -> Where:
    """The predicates on `resource` row `alias` of `res_type` ("" when any type) for `r`;
    `one_row`: the statement tests a single row (a read by id), so each label is probed for
    that row rather than collected for all rows of the type; not `labels`: without `r.labels`
    (the caller applies them to the row's JSON, `read_visible`)."""
    where = Where()
    if r.unrestricted:
        return where
    if r.types is not None:
        if res_type and res_type not in r.types:
            where.add("1=0")
            return where
        if not res_type:
            types = sorted(r.types)
            if not types:
                where.add("1=0")
                return where
            where.add(f"{alias}.res_type IN ({_marks(types)})", *types)
    _patients(where, r, alias, res_type)
    for rule in r.labels if labels else ():
        _label(where, rule, alias, "" if one_row else res_type)
    if r.block is not None:
        _block(where, r.block, alias)
    return where


def scope_of(r: Restriction) -> Scope:
    """`restrict` as the `scope(alias, type)` hook of `Session.search` and `fetch_included`."""
    return lambda alias, res_type: restrict(r, alias, res_type)


def _patients(where: Where, r: Restriction, a: str, res_type: str) -> None:
    """Rows of the permitted records, and record-less rows where `shared` allows them.

    With a known type this is one `pk IN (… UNION …)`: each branch uses an index (patient_id,
    or type for record-less rows) and the database drives the page from that list instead of
    scanning the whole type (a record is small, a type is the population).
    """
    owned: list[str] = []  # subqueries of pks in the permitted records
    params: list[Any] = []
    if not r.all_patients:
        if r.patient_ids:
            owned.append("SELECT ax_r.pk FROM resource ax_r WHERE ax_r.patient_id IN "
                         f"({_marks(r.patient_ids)})")
            params += r.patient_ids
        if r.relation is not None:
            sql, more = related_patients(r.relation)
            owned.append(f"SELECT ax_r.pk FROM resource ax_r WHERE ax_r.patient_id IN ({sql})")
            params += more
    if res_type:
        shared = r.shared and (r.shared_types is None or res_type in r.shared_types)
        if r.all_patients:
            if not shared:
                where.add(f"{a}.patient_id IS NOT NULL")
            return
        if shared:
            owned.append("SELECT ax_s.pk FROM resource ax_s WHERE ax_s.res_type = %s AND "
                         "ax_s.patient_id IS NULL")
            params.append(res_type)
        where.add(f"{a}.pk IN ({' UNION '.join(owned)})" if owned else "1=0", *params)
        return
    ors = [f"{a}.pk IN ({sub})" for sub in owned]
    if r.all_patients:
        ors.append(f"{a}.patient_id IS NOT NULL")
    if r.shared and r.shared_types is None:
        ors.append(f"{a}.patient_id IS NULL")
    elif r.shared and r.shared_types:
        types = sorted(r.shared_types)
        ors.append(f"({a}.patient_id IS NULL AND {a}.res_type IN ({_marks(types)}))")
        params += types
    where.add("(" + " OR ".join(ors) + ")" if ors else "1=0", *params)


def _label(where: Where, rule: LabelRule, a: str, res_type: str) -> None:
    params: list[Any] = [rule.system, rule.code]
    if res_type:
        params.insert(0, res_type)
        labelled = ("SELECT res_pk FROM sp_token WHERE res_type = %s AND param = '_security' "
                    "AND system = %s AND code = %s")
        ors = [f"{a}.pk NOT IN ({labelled})"]
        if rule.only_patients is None and not rule.except_patients:  # a set of pks, no more
            where.excluded.append((labelled, list(params)))
    else:
        # Rows of any type ($everything, export), or one row: probe each row's own labels
        # through the lookup index. An uncorrelated NOT IN over every type's labels has no
        # index to use and turned a 10-resource $everything into a scan of the whole table
        # (400 ms at 1M); for one row, a probe is cheaper than collecting the type's labels.
        ors = [f"NOT EXISTS (SELECT 1 FROM sp_token {a}_l WHERE {a}_l.res_type = {a}.res_type "
               f"AND {a}_l.param = '_security' AND {a}_l.system = %s AND {a}_l.code = %s "
               f"AND {a}_l.res_pk = {a}.pk)"]
    if rule.only_patients is not None:
        # Rows outside the named records are not concerned (a NULL patient_id is outside too).
        ors.append(f"{a}.patient_id IS NULL")
        if rule.only_patients:
            ors.append(f"{a}.patient_id NOT IN ({_marks(rule.only_patients)})")
            params += rule.only_patients
        else:
            ors.append("1=1")
    if rule.except_patients:
        ors.append(f"({a}.patient_id IS NOT NULL AND {a}.patient_id IN "
                   f"({_marks(rule.except_patients)}))")
        params += rule.except_patients
    where.add("(" + " OR ".join(ors) + ")", *params)


def _has_token(alias: str, param: str, system: str | None = None) -> str:
    """A per-row check: row `alias` has a token `param` (system) with code in the parameters."""
    sys_sql = f" AND {alias}_t.system = %s" if system else ""
    return (f"EXISTS (SELECT 1 FROM sp_token {alias}_t WHERE {alias}_t.res_pk = {alias}.pk AND "
            f"{alias}_t.param = '{param}'{sys_sql} AND {alias}_t.code IN ")


def _block(where: Where, block: ActorBlock, a: str) -> None:
    actors: list[str] = []
    params: list[Any] = []
    if block.practitioner_ids:
        actors.append("(ax_ca.target_type = 'Practitioner' AND ax_ca.target_id IN "
                      f"({_marks(block.practitioner_ids)}))")
        params += block.practitioner_ids
    if block.organization_ids:
        actors.append("(ax_ca.target_type = 'Organization' AND ax_ca.target_id IN "
                      f"({_marks(block.organization_ids)}))")
        params += block.organization_ids
    if not actors:
        return
    blocked = (
        "SELECT ax_c.patient_id FROM sp_reference ax_ca JOIN resource ax_c ON ax_c.pk = "
        f"ax_ca.res_pk WHERE ({' OR '.join(actors)}) AND ax_ca.res_type = 'Consent' AND "
        "ax_ca.param = 'actor' AND NOT ax_c.deleted AND ax_c.patient_id IS NOT NULL AND "
        f"{_has_token('ax_c', 'status')}('active')) AND "
        f"{_has_token('ax_c', 'category', 'system')}(%s))"
    )
    params += [CONSENT_CATEGORY_SYSTEM, BLOCK_CODE]
    ors = [f"{a}.patient_id IS NULL", f"{a}.patient_id NOT IN ({blocked})"]
    if block.except_patients:
        ors.append(f"{a}.patient_id IN ({_marks(block.except_patients)})")
        params += block.except_patients
    where.add("(" + " OR ".join(ors) + ")", *params)


def related_patients(rel: CareRelation) -> tuple[str, list[Any]]:
    """A subquery of the Patient ids the practitioner has a care relationship with (see module
    docstring), with its parameters; "1=0"-style empty when the unit is unknown."""
    if not rel.unit_ids:
        return "SELECT NULL WHERE 1=0", []
    units = _marks(rel.unit_ids)

    def at_unit(alias: str, res_type: str, param: str) -> str:
        return (f"SELECT {alias}.patient_id FROM sp_reference {alias}_o JOIN resource {alias} ON "
                f"{alias}.pk = {alias}_o.res_pk WHERE {alias}_o.target_id IN ({units}) AND "
                f"{alias}_o.target_type = 'Organization' AND {alias}_o.res_type = '{res_type}' "
                f"AND {alias}_o.param = '{param}' AND NOT {alias}.deleted AND {alias}.patient_id "
                "IS NOT NULL")

    is_gp_list = f"{_has_token('ax_e', 'type', 'system')}(%s))"
    episode = (f"{at_unit('ax_e', 'EpisodeOfCare', 'organization')} AND "
               f"{_has_token('ax_e', 'status')}('active')) AND EXISTS (SELECT 1 FROM sp_date "
               "ax_e_d WHERE ax_e_d.res_pk = ax_e.pk AND ax_e_d.param = 'date' AND ax_e_d.low <= "
               "%s AND ax_e_d.high >= %s)")
    episode_params = [*rel.unit_ids, rel.now, rel.now]
    parts = [f"{episode} AND NOT {is_gp_list}"]
    params: list[Any] = [*episode_params, EPISODE_TYPE_SYSTEM, GP_LIST_CODE]
    if rel.practitioner_ids:
        parts.append(f"{episode} AND {is_gp_list} AND EXISTS (SELECT 1 FROM sp_reference ax_e_m "
                     "WHERE ax_e_m.res_pk = ax_e.pk AND ax_e_m.param = 'care-manager' AND "
                     "ax_e_m.target_type = 'Practitioner' AND ax_e_m.target_id IN "
                     f"({_marks(rel.practitioner_ids)}))")
        params += [*episode_params, EPISODE_TYPE_SYSTEM, GP_LIST_CODE, *rel.practitioner_ids]
    parts.append(
        f"{at_unit('ax_n', 'Encounter', 'service-provider')} AND "
        f"({_has_token('ax_n', 'status')}({_marks(ACTIVE_ENCOUNTER)})) OR (EXISTS (SELECT 1 FROM "
        "sp_date ax_n_d WHERE ax_n_d.res_pk = ax_n.pk AND ax_n_d.param = 'date' AND "
        f"ax_n_d.high >= %s) AND NOT {_has_token('ax_n', 'status')}({_marks(VOID_ENCOUNTER)}))))")
    params += [*rel.unit_ids, *ACTIVE_ENCOUNTER, rel.encounter_since, *VOID_ENCOUNTER]
    return " UNION ".join(parts), params


async def caller_resources(s: Session, hpr_number: str, unit_orgnr: str, parent_orgnr: str
                           ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(Practitioner ids with the HPR number, Organization ids of the unit when it is the legal
    entity or part of it, Organization ids of the legal entity)."""
    practitioners = await _ids_by_identifier(s, "Practitioner", HPR_SYSTEM, hpr_number)
    parents = await _ids_by_identifier(s, "Organization", ORGNR_SYSTEM, parent_orgnr)
    units = await _ids_by_identifier(s, "Organization", ORGNR_SYSTEM, unit_orgnr)
    if unit_orgnr != parent_orgnr and units:
        if not parents:
            return practitioners, (), ()
        rows = await s.tx.fetchall(
            "SELECT DISTINCT r.res_id FROM resource r JOIN sp_reference p ON p.res_pk = r.pk "
            f"WHERE r.res_type = 'Organization' AND r.res_id IN ({_marks(units)}) AND p.param = "
            f"'partof' AND p.target_type = 'Organization' AND p.target_id IN ({_marks(parents)})",
            [*units, *parents])
        units = tuple(sorted(str(row[0]) for row in rows))
    return practitioners, units, parents


async def _ids_by_identifier(s: Session, res_type: str, system: str, value: str
                             ) -> tuple[str, ...]:
    rows = await s.tx.fetchall(
        "SELECT r.res_id FROM sp_token t JOIN resource r ON r.pk = t.res_pk WHERE t.res_type = %s "
        "AND t.param = 'identifier' AND t.system = %s AND t.code = %s AND NOT r.deleted "
        "ORDER BY r.res_id", (res_type, system, value))
    return tuple(str(row[0]) for row in rows)


# ------------------------------------------------------------------ lookups for the gate


async def visible(s: Session, r: Restriction, res_type: str, res_id: str) -> bool:
    """True when the row of `res_type`/`res_id` exists (live or deleted) and `r` lets it through."""
    where = restrict(r, "r", res_type, one_row=True)
    row = await s.tx.fetchone(
        f"SELECT 1 FROM resource r WHERE r.res_type = %s AND r.res_id = %s AND {where.render()}",
        [res_type, res_id, *where.params])
    return row is not None


async def read_visible(s: Session, r: Restriction, res_type: str, res_id: str, *,
                       for_update: bool = False) -> tuple[Stored, bool, str | None] | None:
    """`Session.read` with `visible` and `patient_of` of the same row, in one statement —
    except `r.labels`, which the caller checks on the row's own JSON (the same rule,
    `akson.access.policy.labels_hide`): for one row whose bytes are at hand that costs less
    than a probe of the label index in the statement."""
    return await s.read_checked(res_type, res_id, restrict(r, "r", res_type, labels=False),
                                for_update=for_update)


async def patient_of(s: Session, res_type: str, res_id: str) -> str | None:
    """The record (Patient id) a stored resource belongs to, or None."""
    row = await s.tx.fetchone(
        "SELECT patient_id FROM resource WHERE res_type = %s AND res_id = %s", (res_type, res_id))
    return str(row[0]) if row and row[0] is not None else None


async def patients_of(s: Session, items: Sequence[Stored]) -> dict[tuple[str, str], str]:
    """The record (Patient id) of each stored resource that belongs to one, by (type, id)."""
    by_type: dict[str, list[str]] = {}
    for item in items:
        by_type.setdefault(item.res_type, []).append(item.res_id)
    out: dict[tuple[str, str], str] = {}
    for res_type, ids in by_type.items():
        unique = sorted(set(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = await s.tx.fetchall(
                f"SELECT res_id, patient_id FROM resource WHERE res_type = %s AND res_id IN "
                f"({_marks(chunk)}) AND patient_id IS NOT NULL", [res_type, *chunk])
            out.update({(res_type, str(row[0])): str(row[1]) for row in rows})
    return out


async def patients_by_identifier(s: Session, systems: Sequence[str], values: Sequence[str]
                                 ) -> dict[str, str]:
    """Live Patient ids by national id: {value: Patient id} for the values found."""
    if not values or not systems:
        return {}
    rows = await s.tx.fetchall(
        "SELECT t.code, r.res_id FROM sp_token t JOIN resource r ON r.pk = t.res_pk WHERE "
        f"t.res_type = 'Patient' AND t.param = 'identifier' AND t.system IN ({_marks(systems)}) "
        f"AND t.code IN ({_marks(values)}) AND NOT r.deleted ORDER BY r.pk",
        [*systems, *values])
    out: dict[str, str] = {}
    for code, res_id in rows:
        out.setdefault(str(code), str(res_id))
    return out


async def contents(s: Session, res_type: str, ids: Sequence[str]) -> dict[str, bytes]:
    """The current JSON of live resources of `res_type` by id (for facts the index lacks)."""
    if not ids:
        return {}
    rows = await s.tx.fetchall(
        f"SELECT res_id, content FROM resource WHERE res_type = %s AND res_id IN ({_marks(ids)}) "
        "AND NOT deleted", [res_type, *ids])
    return {str(r[0]): bytes(r[1]) for r in rows if r[1] is not None}


async def referring(s: Session, res_type: str, param: str, target_type: str, target_id: str
                    ) -> list[bytes]:
    """The current JSON of live `res_type` resources whose `param` refers to the target."""
    rows = await s.tx.fetchall(
        "SELECT r.content FROM resource r WHERE r.res_type = %s AND NOT r.deleted AND r.pk IN "
        "(SELECT res_pk FROM sp_reference WHERE res_type = %s AND param = %s AND target_type = %s"
        " AND target_id = %s) ORDER BY r.pk", (res_type, res_type, param, target_type, target_id))
    return [bytes(r[0]) for r in rows if r[0] is not None]


async def labels_of(s: Session, res_type: str, ids: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
    """The current `meta.security` labels (system, code) of resources of `res_type` by id."""
    if not ids:
        return {}
    rows = await s.tx.fetchall(
        "SELECT r.res_id, t.system, t.code FROM resource r JOIN sp_token t ON t.res_pk = r.pk "
        f"WHERE r.res_type = %s AND r.res_id IN ({_marks(ids)}) AND t.param = '_security'",
        [res_type, *ids])
    out: dict[str, set[tuple[str, str]]] = {}
    for res_id, system, code in rows:
        out.setdefault(str(res_id), set()).add((str(system or ""), str(code or "")))
    return out



