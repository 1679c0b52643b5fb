"""The access policy's restriction as data, and its compilation to SQL predicates on resource rows.

`akson.access.policy` decides *what* a caller may see and expresses it as a `Restriction` (plain
data, no SQL); this module is the only place that turns it into SQL. `restrict(r, alias, type)`
gives the `Where` predicates for one `resource` row, so the same restriction filters search
results, totals, chains and `_has` (`Session.search(extra=…, scope=…)`), includes
(`fetch_included(scope=…)`), history and `$everything` inside the statement: a denied row is
never read, never counted (docs/adr/0006-access-gate.md).

Care relationships from data are subqueries over the index tables (no extra table):

- GP list: an active `EpisodeOfCare` of type `episode-type|fastlegeliste` whose `careManager` is
  the caller (Practitioner by HPR number) and `managingOrganization` the caller's unit;
- an active `EpisodeOfCare` of any other type at the caller's unit (a home-care service decision,
  a nursing-home place, a helsestasjon programme);
- an `Encounter` at the caller's unit (`serviceProvider`) that is active, or ended after
  `CareRelation.encounter_since` (a legevakt or GP contact and its follow-up).

The caller's unit is an Organization with the unit's orgnr that is the legal entity itself or
`partOf` it (tenant × unit: a unit of another municipality never matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from akson.fhir.naming import HPR_SYSTEM, ORGNR_SYSTEM
from akson.store.export import Members
from akson.store.repository import Page, Session, Stored, _stored
from akson.store.search_sql import Scope, Where

#: Akson's episode types (= akson.registry.mapping.EPISODE_TYPE_SYSTEM; the store sits below it).
EPISODE_TYPE_SYSTEM = "https://akson.no/fhir/CodeSystem/episode-type"
GP_LIST_CODE = "fastlegeliste"
#: A citizen's block of named persons or units: a Consent with this category (docs/adr/0006).
CONSENT_CATEGORY_SYSTEM = "https://akson.no/fhir/CodeSystem/consent-category"
BLOCK_CODE = "sperring"
#: Encounter.status values of an encounter still under way (R4 encounter-status).
ACTIVE_ENCOUNTER = ("planned", "arrived", "triaged", "in-progress", "onleave")
#: Encounter.status values that never make a care relationship.
VOID_ENCOUNTER = ("cancelled", "entered-in-error")


@dataclass(frozen=True, slots=True)
class CareRelation:
    """The data-derived care relationships of one practitioner working at one unit.

    Times are µs since the epoch, UTC: `now` for "active", `encounter_since` the earliest end of
    a finished Encounter that still counts.
    """

    hpr_number: str
    unit_orgnr: str
    parent_orgnr: str
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
    `provision.actor.reference`: the Practitioner with `hpr_number`, or an Organization with one of
    `orgnrs`. `except_patients` are exempt (break-the-glass).
    """

    hpr_number: str | None
    orgnrs: tuple[str, ...]
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


def restrict(r: Restriction, alias: str, res_type: str) -> Where:
    """The predicates on `resource` row `alias` of `res_type` ("" when any type) for `r`."""
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
    for rule in r.labels:
        _label(where, rule, alias, res_type)
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
    labelled = "SELECT res_pk FROM sp_token WHERE param = '_security' AND system = %s AND code = %s"
    params: list[Any] = [rule.system, rule.code]
    if res_type:
        labelled = ("SELECT res_pk FROM sp_token WHERE res_type = %s AND param = '_security' "
                    "AND system = %s AND code = %s")
        params.insert(0, res_type)
    ors = [f"{a}.pk NOT IN ({labelled})"]
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


def _block(where: Where, block: ActorBlock, a: str) -> None:
    actors: list[str] = []
    params: list[Any] = [CONSENT_CATEGORY_SYSTEM, BLOCK_CODE]
    if block.hpr_number:
        actors.append("(target_type = 'Practitioner' AND target_id IN ("
                      f"{_by_identifier('Practitioner', 'ax_bp')}))")
        params += [HPR_SYSTEM, block.hpr_number]
    if block.orgnrs:
        actors.append("(target_type = 'Organization' AND target_id IN (SELECT ax_bo.res_id FROM "
                      "resource ax_bo WHERE ax_bo.res_type = 'Organization' AND NOT ax_bo.deleted "
                      "AND ax_bo.pk IN (SELECT res_pk FROM sp_token WHERE res_type = "
                      "'Organization' AND param = 'identifier' AND system = %s AND code IN "
                      f"({_marks(block.orgnrs)}))))")
        params += [ORGNR_SYSTEM, *block.orgnrs]
    if not actors:
        return
    blocked = (
        "SELECT ax_c.patient_id FROM resource ax_c WHERE ax_c.res_type = 'Consent' AND NOT "
        "ax_c.deleted AND ax_c.patient_id IS NOT NULL "
        "AND ax_c.pk IN (SELECT res_pk FROM sp_token WHERE res_type = 'Consent' AND param = "
        "'status' AND code = 'active') "
        "AND ax_c.pk IN (SELECT res_pk FROM sp_token WHERE res_type = 'Consent' AND param = "
        "'category' AND system = %s AND code = %s) "
        "AND ax_c.pk IN (SELECT res_pk FROM sp_reference WHERE res_type = 'Consent' AND param = "
        f"'actor' AND ({' OR '.join(actors)}))"
    )
    ors = [f"{a}.patient_id IS NULL", f"{a}.patient_id NOT IN ({blocked})"]
    if block.except_patients:
        ors.append(f"{a}.patient_id IN ({_marks(block.except_patients)})")
        params += block.except_patients
    where.add("(" + " OR ".join(ors) + ")", *params)


def _by_identifier(res_type: str, alias: str) -> str:
    """Ids of live `res_type` rows with identifier system|code (two parameters)."""
    return (f"SELECT {alias}.res_id FROM resource {alias} WHERE {alias}.res_type = '{res_type}' "
            f"AND NOT {alias}.deleted AND {alias}.pk IN (SELECT res_pk FROM sp_token WHERE "
            f"res_type = '{res_type}' AND param = 'identifier' AND system = %s AND code = %s)")


def _unit(rel: CareRelation) -> tuple[str, list[Any]]:
    """Organization ids of the caller's unit, when it is the legal entity or part of it."""
    sql = _by_identifier("Organization", "ax_u")
    params: list[Any] = [ORGNR_SYSTEM, rel.unit_orgnr]
    if rel.unit_orgnr != rel.parent_orgnr:
        sql += (" AND ax_u.pk IN (SELECT res_pk FROM sp_reference WHERE res_type = "
                "'Organization' AND param = 'partof' AND target_type = 'Organization' AND "
                f"target_id IN ({_by_identifier('Organization', 'ax_k')}))")
        params += [ORGNR_SYSTEM, rel.parent_orgnr]
    return sql, params


def related_patients(rel: CareRelation) -> tuple[str, list[Any]]:
    """A subquery of the Patient ids the practitioner has a care relationship with (see module
    docstring), with its parameters."""
    unit, unit_params = _unit(rel)
    practitioner = _by_identifier("Practitioner", "ax_p")
    is_gp_list = ("SELECT res_pk FROM sp_token WHERE res_type = 'EpisodeOfCare' AND param = "
                  "'type' AND system = %s AND code = %s")
    episode = (
        "SELECT ax_e.patient_id FROM resource ax_e WHERE ax_e.res_type = 'EpisodeOfCare' AND NOT "
        "ax_e.deleted AND ax_e.patient_id IS NOT NULL "
        "AND ax_e.pk IN (SELECT res_pk FROM sp_token WHERE res_type = 'EpisodeOfCare' AND param "
        "= 'status' AND code = 'active') "
        "AND ax_e.pk IN (SELECT res_pk FROM sp_date WHERE res_type = 'EpisodeOfCare' AND param = "
        "'date' AND low <= %s AND high >= %s) "
        "AND ax_e.pk IN (SELECT res_pk FROM sp_reference WHERE res_type = 'EpisodeOfCare' AND "
        f"param = 'organization' AND target_type = 'Organization' AND target_id IN ({unit}))"
    )
    episode_params = [rel.now, rel.now, *unit_params]
    gp_list = (f"{episode} AND ax_e.pk IN ({is_gp_list}) AND ax_e.pk IN (SELECT res_pk FROM "
               "sp_reference WHERE res_type = 'EpisodeOfCare' AND param = 'care-manager' AND "
               f"target_type = 'Practitioner' AND target_id IN ({practitioner}))")
    gp_params = [*episode_params, EPISODE_TYPE_SYSTEM, GP_LIST_CODE, HPR_SYSTEM, rel.hpr_number]
    unit_episode = f"{episode} AND ax_e.pk NOT IN ({is_gp_list})"
    unit_params_all = [*episode_params, EPISODE_TYPE_SYSTEM, GP_LIST_CODE]
    encounter = (
        "SELECT ax_n.patient_id FROM resource ax_n WHERE ax_n.res_type = 'Encounter' AND NOT "
        "ax_n.deleted AND ax_n.patient_id IS NOT NULL "
        "AND ax_n.pk IN (SELECT res_pk FROM sp_reference WHERE res_type = 'Encounter' AND param "
        f"= 'service-provider' AND target_type = 'Organization' AND target_id IN ({unit})) "
        "AND (ax_n.pk IN (SELECT res_pk FROM sp_token WHERE res_type = 'Encounter' AND param = "
        f"'status' AND code IN ({_marks(ACTIVE_ENCOUNTER)})) OR (ax_n.pk IN (SELECT res_pk FROM "
        "sp_date WHERE res_type = 'Encounter' AND param = 'date' AND high >= %s) AND ax_n.pk NOT "
        "IN (SELECT res_pk FROM sp_token WHERE res_type = 'Encounter' AND param = 'status' AND "
        f"code IN ({_marks(VOID_ENCOUNTER)}))))"
    )
    encounter_params = [*unit_params, *ACTIVE_ENCOUNTER, rel.encounter_since, *VOID_ENCOUNTER]
    return (f"{gp_list} UNION {unit_episode} UNION {encounter}",
            [*gp_params, *unit_params_all, *encounter_params])


# ------------------------------------------------------------------ lookups for the gate


async def visible(s: Session, r: Restriction, res_type: str, res_id: str) -> bool:
    """True when the row of `res_type`/`res_id` exists (live or deleted) and `r` lets it through."""
    where = restrict(r, "r", res_type)
    row = await s.tx.fetchone(
        f"SELECT 1 FROM resource r WHERE r.res_type = %s AND r.res_id = %s AND {where.render()}",
        [res_type, res_id, *where.params])
    return row is not None


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


async def members_page(s: Session, members: Members, where: Where, *, types: Sequence[str] | None,
                       since: int | None, cursor: int | None, count: int) -> Page:
    """`akson.store.export.members_page` with the restriction `where` (on alias `r`) inside.

    Kept here until export.members_page takes `extra` itself (docs/adr/0006-access-gate.md).
    """
    sql = (f"WITH {members.ctes} SELECT r.pk, r.res_type, r.res_id, r.version, r.last_updated, "
           f"r.deleted, r.content FROM resource r WHERE r.pk IN ({members.sql}) AND NOT r.deleted "
           f"AND {where.render()}")
    params: list[Any] = [*members.cte_params, *members.params, *where.params]
    if types:
        sql += f" AND r.res_type IN ({_marks(types)})"
        params += types
    if since is not None:
        sql += " AND r.last_updated >= %s"
        params.append(since)
    if cursor is not None:
        sql += " AND r.pk > %s"
        params.append(cursor)
    rows = await s.tx.fetchall(sql + " ORDER BY r.pk LIMIT %s", (*params, count + 1))
    more = len(rows) > count
    rows = rows[:count]
    items = [_stored(row[1:]) for row in rows]
    next_cursor = int(rows[-1][0]) if more else None
    total = len(items) if cursor is None and not more else None
    return Page(items, next_cursor, None, total)


