"""Compile a parsed SearchQuery into one parameterised SQL statement over the index tables.

Each AND clause becomes `r.pk IN (SELECT res_pk FROM sp_<type> WHERE …)` — a semi-join both
databases plan well — and each OR value a disjunct inside it. Chains and `_has` nest the same
way over other `resource` rows (search.html#chaining, #has). The resulting `Where` is a list of
predicates on alias `r` (the resource table), so an access policy can append its own predicates
to the same statement (filter in the query, not after it); `scope` lets it do the same for every
resource a chain or `_has` passes through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, DecimalException
from typing import Any

from akson.fhir import dates, pairs, text, ucum
from akson.fhir.cardinality import single_date
from akson.fhir.indexing import CANONICAL_SYSTEM
from akson.fhir.outcome import FhirError
from akson.fhir.search import Clause, SearchQuery, SortKey, Value, split_or
from akson.store import chain_rows

_DATE_SQL = {
    # Resource range [low, high] against the search range [plo, phi] (search.html#prefix).
    # `eq` and `eb` repeat a bound on `low` that low ≤ high implies (indexing keeps it so): it
    # bounds the scan of `ix_sp_date_lookup (…, low, high)` at both ends, and the planner's
    # estimate with it — a birth year is 1 % of the Patients, not "every low after 1985".
    "eq": ("{low} >= %s AND {low} <= %s AND {high} <= %s", "lohihi"),
    "ne": ("NOT ({low} >= %s AND {high} <= %s)", "lohi"),
    "gt": ("{high} > %s", "hi"),
    "lt": ("{low} < %s", "lo"),
    "ge": ("{high} >= %s", "lo"),
    "le": ("{low} <= %s", "hi"),
    "sa": ("{low} > %s", "hi"),
    "eb": ("{high} < %s AND {low} < %s", "lolo"),
    "ap": ("{low} <= %s AND {high} >= %s", "ap"),
}
TABLES = {"token": "sp_token", "string": "sp_string", "date": "sp_date",
          "reference": "sp_reference", "number": "sp_number", "quantity": "sp_quantity",
          "uri": "sp_uri", "composite": "sp_composite"}


@dataclass
class Where:
    """SQL predicates on `r` with their bound parameters, ANDed together. `excluded` names,
    for each predicate that only excludes a set of pks (`r.pk NOT IN (…)`), that set as a
    subquery and its parameters, so a maintained count can subtract it (ADR 0019)."""

    sql: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    excluded: list[tuple[str, list[Any]]] = field(default_factory=list)

    def add(self, sql: str, *params: Any) -> None:
        self.sql.append(sql)
        self.params.extend(params)

    def render(self) -> str:
        return " AND ".join(self.sql) if self.sql else "1=1"


def reads_pk_only(sql: str, alias: str) -> bool:
    """Do these predicates read no column of row `alias` but its pk? Then an index row can
    stand in for the row: index rows exist only for live current versions (ADR 0011)."""
    return set(re.findall(rf"(?<![\w.]){alias}\.(\w+)", sql)) <= {"pk"}


def with_pk_from(sql: str, alias: str, column: str) -> str:
    """`sql` reading row `alias`'s pk from `column` (an index row's `res_pk`) instead."""
    return re.sub(rf"(?<![\w.]){alias}\.pk\b", column, sql)


#: Predicates an access policy adds for a resource row reached through a chain or `_has`:
#: called with the row's alias and resource type.
Scope = Callable[[str, str], Where]
#: Expanded value sets by URL: (system, code) pairs, code None for a whole code system.
ValueSets = Mapping[str, list[tuple[str, str | None]]]


@dataclass
class _Ctx:
    base_url: str
    valuesets: ValueSets
    scope: Scope | None
    probe_has: bool = False
    pairs: frozenset[str] = frozenset()
    n: int = 0

    def alias(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def compile_where(query: SearchQuery, *, base_url: str = "", valuesets: ValueSets | None = None,
                  scope: Scope | None = None, probe_has: bool = False,
                  pairs: frozenset[str] = frozenset()) -> Where:
    """Predicates for every clause of `query` (resource type and deletion not included).
    `probe_has`: `_has` as a per-row probe (see `_has`), for a bounded walk. `pairs`: the
    paired index rows (akson.fhir.pairs, by name) whose rows are complete, so a `_has` may use
    them."""
    where = Where()
    ctx = _Ctx(base_url, valuesets or {}, scope, probe_has, pairs)
    res_type = query.resource_type or ""
    ranges = same_row_ranges(query)
    together = {id(c) for group in ranges for c in group}
    for clause in query.clauses:
        if id(clause) not in together:
            _clause(where, ctx, "r", res_type, clause)
    for sql, params in (same_row_sql(res_type, group) for group in ranges):
        where.add(f"r.pk IN ({sql})", *params)
    return where


def same_row_ranges(query: SearchQuery) -> list[list[Clause]]:
    """Date clauses that one index row must meet together: those on a parameter that gives a
    resource at most one row (akson.fhir.cardinality). `date=ge2020&date=lt2021` on
    Encounter is then one range scan of `ix_sp_date_lookup`, not two sets of rows each
    reaching to one end of time (docs/adr/0011). A single clause is a group too: its range
    can then lead a page of few matches (`Session._few_page_sql`)."""
    groups: dict[str, list[Clause]] = {}
    for c in query.clauses:
        if (c.type == "date" and not c.modifier and c.param is not None and query.resource_type
                and single_date(c.param.expression, query.resource_type)):
            groups.setdefault(c.name, []).append(c)
    return list(groups.values())


def same_row_sql(res_type: str, group: Sequence[Clause]) -> tuple[str, list[Any]]:
    """`SELECT res_pk` of the date index rows meeting every clause of a `same_row_ranges`
    group.

    A range that must end no earlier than X (`ge`, `gt`, `sa`) overlaps the search only if
    it starts after X − SHORT_SPAN or is longer than that. So the rows are read as two
    index-only range scans bounded at both ends: short rows from `low ≥ X − SHORT_SPAN` in
    `ix_sp_date_lookup`, long ones from `ix_sp_date_long` (migration 0016). With `low < Y`
    alone, a month of 2026 read every Encounter date row since 1914 (ADR 0011)."""
    met, met_params = _meets_all(group)
    sql = f"SELECT res_pk FROM sp_date WHERE res_type = %s AND param = %s AND {met}"
    params = [res_type, group[0].name, *met_params]
    ends = [_ends_after(c) for c in group]
    start = max((e for e in ends if e is not None), default=None)
    if start is None:
        return sql, params
    return (f"{sql} AND low >= %s AND high - low <= {SHORT_SPAN} "
            f"UNION ALL {sql} AND high - low > {SHORT_SPAN}",
            [*params, start - SHORT_SPAN, *params])


def _meets_all(group: Sequence[Clause]) -> tuple[str, list[Any]]:
    """One date index row meeting every clause of a `same_row_ranges` group, on its columns."""
    ors = [_ors(_Ctx("", {}, None), c) for c in group]
    return (" AND ".join(f"({' OR '.join(frags)})" for frags, _ in ors),
            [p for _, params in ors for p in params])


def leading_rows(query: SearchQuery) -> tuple[list[Clause], str, list[Any]] | None:
    """Index rows that can lead a page of few matches (`Session._few_page_sql`): the clauses
    they stand for, and `SELECT res_pk` of them. A same-row date group, else a string clause
    matched by prefix (a range of `ix_sp_string_lookup`, which ends in `res_pk`)."""
    res_type = query.resource_type
    if not res_type:
        return None
    ranges = same_row_ranges(query)
    if ranges:
        return (ranges[0], *same_row_sql(res_type, ranges[0]))
    for c in query.clauses:
        if c.type == "string" and not c.modifier and c.param is not None:
            frags, params = _ors(_Ctx("", {}, None), c)
            if "1=1" in frags:  # an empty prefix matches every value: nothing to lead with
                continue
            return ([c], "SELECT res_pk FROM sp_string WHERE res_type = %s AND param = %s AND ("
                    + " OR ".join(frags) + ")", [res_type, c.name, *params])
    return None


#: Date index rows longer than this (31 days, in µs) are also indexed by `ix_sp_date_long`;
#: the literal must match that partial index's predicate (migration 0016).
SHORT_SPAN = 2_678_400_000_000


def _ends_after(clause: Clause) -> int | None:
    """X such that every row meeting `clause` has `high ≥ X`, or None (see `same_row_sql`)."""
    bounds = []
    for value in clause.values:
        plo, phi = dates.date_range(value.raw)
        if value.prefix == "ge":
            bounds.append(plo)
        elif value.prefix in ("gt", "sa"):
            bounds.append(phi)
        else:  # eq and eb are bounded by `low` already; lt, le, ne, ap have no such X
            return None
    return min(bounds, default=None)


def _ors(ctx: _Ctx, clause: Clause) -> tuple[list[str], list[Any]]:
    """The predicates of each of a clause's values (ORed), on its index table's columns."""
    frags: list[str] = []
    params: list[Any] = []
    for value in clause.values:
        frag, frag_params = _value_predicate(ctx, clause, value)
        frags.append(frag)
        params.extend(frag_params)
    return frags, params


def valueset_urls(clauses: list[Clause]) -> set[str]:
    """The ValueSet URLs `:in` / `:not-in` clauses need (also inside chains and `_has`)."""
    return {v.raw for c in _walk(clauses) if c.modifier in ("in", "not-in") for v in c.values}


def _walk(clauses: list[Clause]) -> Iterator[Clause]:
    for c in clauses:
        yield c
        if c.chain:
            yield from _walk([inner for _, inner in c.chain.targets])
        if c.has:
            yield from _walk([c.has.inner])


def _clause(where: Where, ctx: _Ctx, a: str, res_type: str, clause: Clause) -> None:
    if clause.name == "_id":
        ids = [v.raw for v in clause.values]
        op = "NOT IN" if clause.modifier == "not" else "IN"
        where.add(f"{a}.res_id {op} ({', '.join(['%s'] * len(ids))})", *ids)
        return
    if clause.name == "_lastUpdated":
        if clause.modifier == "missing":  # every resource has one
            where.add("1=1" if clause.values[0].raw == "false" else "1=0")
            return
        _date_clause(where, clause, f"{a}.last_updated", f"{a}.last_updated")
        return
    if clause.type == "chain":
        _chain(where, ctx, a, res_type, clause)
        return
    if clause.type == "has":
        _has(where, ctx, a, res_type, clause)
        return
    if clause.type == "compartment":
        ctype, _, cid = clause.values[0].raw.partition("/")
        marks = ", ".join(["%s"] * len(clause.codes))
        where.add(f"{a}.pk IN (SELECT res_pk FROM sp_reference WHERE res_type = %s AND param IN "
                  f"({marks}) AND target_type = %s AND target_id = %s)",
                  res_type, *clause.codes, ctype, cid)
        return
    table = TABLES[clause.type]
    if clause.type == "token" and clause.modifier == "text":
        table = "sp_token_text"
    elif clause.type == "token" and clause.modifier == "of-type":
        table = "sp_identifier_type"
    param = clause.name
    if clause.type == "reference" and clause.modifier == "identifier":
        table, param = "sp_token", f"{clause.name}:identifier"
    sub_params: list[Any] = [res_type, param]
    head = f"SELECT res_pk FROM {table} WHERE res_type = %s AND param = %s"
    if clause.modifier == "missing":
        sql = f"{a}.pk {'NOT IN' if clause.values[0].raw == 'true' else 'IN'} ({head})"
        where.add(sql, *sub_params)
        return
    ors, frag_params = _ors(ctx, clause)
    sub_params.extend(frag_params)
    negate = clause.type == "token" and clause.modifier in ("not", "not-in")
    sql = f"{a}.pk {'NOT IN' if negate else 'IN'} ({head} AND ({' OR '.join(ors)}))"
    where.add(sql, *sub_params)


def _scoped(where: Where, ctx: _Ctx, alias: str, res_type: str) -> None:
    if ctx.scope is not None:
        extra = ctx.scope(alias, res_type)
        where.sql += extra.sql
        where.params += extra.params


def _chain(where: Where, ctx: _Ctx, a: str, res_type: str, clause: Clause) -> None:
    """`ref.param=x`: the reference points at a live resource matching `param=x`."""
    assert clause.chain is not None
    ors: list[str] = []
    params: list[Any] = [res_type, clause.chain.param.code]
    for target, inner in clause.chain.targets:
        t = ctx.alias("c")
        sub = Where()
        _clause(sub, ctx, t, target, inner)
        _scoped(sub, ctx, t, target)
        ors.append(f"(target_type = %s AND target_id IN (SELECT {t}.res_id FROM resource {t} "
                   f"WHERE {t}.res_type = %s AND NOT {t}.deleted AND {sub.render()}))")
        params += [target, target, *sub.params]
    where.add(f"{a}.pk IN (SELECT res_pk FROM sp_reference WHERE res_type = %s AND param = %s "
              f"AND ({' OR '.join(ors)}))", *params)


def _one_chain(query: SearchQuery) -> tuple[Clause, str, str, Clause] | None:
    """The search's chain clause, its reference parameter's code, its target type and its
    inner clause, when it has exactly one chain clause, to one target type."""
    chains = [c for c in query.clauses if c.type == "chain"]
    chain = chains[0].chain if len(chains) == 1 else None
    if chain is None or len(chain.targets) != 1:
        return None
    target, inner = chain.targets[0]
    return chains[0], chain.param.code, target, inner


@dataclass
class ChainLead:
    """A search's one chain clause of one target type as the rows that can lead its page
    (`chain_lead`): the live targets matching the chain's inner clause, and the condition on
    a `sp_reference` row `s` pointing at one of them from the searched type."""

    clause: Clause
    targets: str  # SELECT t.res_id FROM resource t WHERE …
    target_params: list[Any]
    key: str  # on s, besides s.target_id
    key_params: list[Any]


def chain_lead(query: SearchQuery, *, base_url: str = "", valuesets: ValueSets | None = None,
               scope: Scope | None = None, pairs: frozenset[str] = frozenset()
               ) -> ChainLead | None:
    """The `ChainLead` of a search with exactly one chain clause, to one target type (None
    otherwise). Its targets are compiled as `compile_where` compiles them, policy included."""
    one = _one_chain(query)
    if one is None:
        return None
    clause, param, target, inner = one
    ctx = _Ctx(base_url, valuesets or {}, scope, False, pairs)
    t = ctx.alias("t")
    sub = Where()
    _clause(sub, ctx, t, target, inner)
    _scoped(sub, ctx, t, target)
    return ChainLead(clause,
                     f"SELECT {t}.res_id FROM resource {t} WHERE {t}.res_type = %s AND NOT "
                     f"{t}.deleted AND {sub.render()}", [target, *sub.params],
                     "s.target_type = %s AND s.res_type = %s AND s.param = %s",
                     [target, query.resource_type, param])


@dataclass(frozen=True)
class ChainRowsLead:
    """A search's one chain clause as the `sp_chain` rows that answer it (`chain_rows_lead`):
    the chain's name, the range of normalised values it matches, and the target's policy
    predicates on `c.target_pk`."""

    clause: Clause
    chain: str
    low: str
    high: str | None  # None: no upper bound
    target_policy: str
    target_params: list[Any]


def chain_rows_lead(query: SearchQuery, *, scope: Scope | None = None) -> ChainRowsLead | None:
    """The `ChainRowsLead` of a search with exactly one chain clause, to one target type,
    that akson.store.chain_rows declares, matching one string by its default (prefix) form,
    when the target's policy reads only its pk (a label rule's does). None otherwise."""
    one = _one_chain(query)
    if one is None or not query.resource_type:
        return None
    clause, param, target, inner = one
    declared = chain_rows.find(query.resource_type, param, target, inner.name)
    norm = text.normalize(inner.values[0].raw) if len(inner.values) == 1 else ""
    if declared is None or inner.type != "string" or inner.modifier or not norm:
        return None
    ctx = _Ctx("", {}, scope)
    t = ctx.alias("t")
    policy = Where()
    _scoped(policy, ctx, t, target)
    rendered = policy.render()
    if not reads_pk_only(rendered, t):
        return None
    return ChainRowsLead(clause, declared.name, norm, _successor(norm),
                         with_pk_from(rendered, t, "c.target_pk"), policy.params)


def _has(where: Where, ctx: _Ctx, a: str, res_type: str, clause: Clause) -> None:
    """`_has:T:ref:param=x`: some live T whose `ref` points here matches `param=x`.

    With `ctx.probe_has`, and when the inner predicates read no column of T's row but its pk
    (so its index rows stand for it: they exist only for live resources), the clause is a
    fenced probe of this row's references into one hashed set of matching T, built once per
    statement: 0.06 ms a row, against 0.35 ms joining T's rows for each (docs/adr/0011)."""
    assert clause.has is not None
    if _has_by_pair(where, ctx, a, res_type, clause):
        return
    h, hr = ctx.alias("h"), ctx.alias("hr")
    sub = Where()
    _clause(sub, ctx, h, clause.has.res_type, clause.has.inner)
    _scoped(sub, ctx, h, clause.has.res_type)
    inner = sub.render()
    params = [clause.has.res_type, clause.has.param.code, res_type, *sub.params]
    if ctx.probe_has and reads_pk_only(inner, h):
        inner = with_pk_from(inner, h, f"{hr}.res_pk")
        # `IS TRUE` and `OFFSET 0` keep both sublinks from being flattened into joins.
        where.add(f"EXISTS (SELECT 1 FROM sp_reference {hr} WHERE {hr}.target_id = {a}.res_id "
                  f"AND {hr}.res_type = %s AND {hr}.param = %s AND {hr}.target_type = %s "
                  f"AND ({inner}) IS TRUE OFFSET 0)", *params)
        return
    where.add(f"{a}.res_id IN (SELECT {hr}.target_id FROM sp_reference {hr} JOIN resource {h} "
              f"ON {h}.pk = {hr}.res_pk WHERE {hr}.res_type = %s AND {hr}.param = %s AND "
              f"{hr}.target_type = %s AND NOT {h}.deleted AND {inner})", *params)


def _has_by_pair(where: Where, ctx: _Ctx, a: str, res_type: str, clause: Clause) -> bool:
    """`_has:T:ref:code=x` from T's paired rows of code and reference (akson.fhir.pairs), when
    they exist for these parameters, the inner clause is a plain token and a policy's
    predicates on T read only its pk (as a label rule's do): one index lookup per resource,
    where the general form joins every T with the code (52,000 at a million resources) to
    their references. False: the general form is needed."""
    assert clause.has is not None
    inner = clause.has.inner
    pair = pairs.find(clause.has.res_type, inner.name, clause.has.param.code)
    if (pair is None or pair.kind != "reference" or pair.name not in ctx.pairs
            or inner.type != "token" or inner.modifier):
        return False
    x, h = ctx.alias("x"), ctx.alias("h")
    policy = Where()
    _scoped(policy, ctx, h, pair.res_type)
    if not reads_pk_only(policy.render(), h):
        return False
    frags, params = _ors(ctx, inner)
    rows = (f"sp_composite {x} WHERE {x}.res_type = %s AND {x}.param = %s AND {x}.v_system = %s "
            f"AND ({' OR '.join(frags)})")
    if policy.sql:
        rows += " AND " + with_pk_from(policy.render(), h, f"{x}.res_pk")
    params = [pair.res_type, pair.name, res_type, *params, *policy.params]
    if ctx.probe_has:
        where.add(f"EXISTS (SELECT 1 FROM {rows} AND {x}.v_code = {a}.res_id)", *params)
    else:
        where.add(f"{a}.res_id IN (SELECT {x}.v_code FROM {rows})", *params)
    return True


#: Each date prefix as a condition on the hull [v_low, v_high] of a resource's date rows that
#: holds whenever one of its rows meets the prefix (akson.fhir.pairs); then which bound of the
#: search range that puts on `v_high` from below, and on `v_low` from above ("" none). `ne`
#: says nothing about the hull.
_HULL_SQL = {
    "eq": ("v_high >= %s AND v_low <= %s", "lohi", "lo", "hi"),
    "ne": ("1=1", "", "", ""),
    "gt": ("v_high > %s", "hi", "hi", ""),
    "ge": ("v_high >= %s", "lo", "lo", ""),
    "lt": ("v_low < %s", "lo", "", "lo"),
    "le": ("v_low <= %s", "hi", "", "hi"),
    "sa": ("v_high > %s", "hi", "hi", ""),
    "eb": ("v_low < %s", "lo", "", "lo"),
}


@dataclass
class Hull:
    """`clauses` (date clauses on a pair's date parameter, no modifier) as conditions on the
    paired rows' hulls, met by a superset of the resources that match them; `start` bounds
    every such hull's end from below and `end` its start from above (None: unbounded)."""

    sql: str
    params: list[Any]
    start: int | None
    end: int | None


def hull_of(clauses: Sequence[Clause]) -> Hull:
    """The `Hull` conditions of these date clauses (see `_HULL_SQL`)."""
    conds: list[str] = []
    params: list[Any] = []
    start: int | None = None
    end: int | None = None
    for clause in clauses:
        ors: list[str] = []
        starts: list[int | None] = []
        ends: list[int | None] = []
        for value in clause.values:
            plo, phi = dates.date_range(value.raw)
            if value.prefix == "ap":
                frag, frag_params = _date_value(value, "v_low", "v_high")
                starts.append(frag_params[1])
                ends.append(frag_params[0])
            else:
                frag, kind, start_kind, end_kind = _HULL_SQL[value.prefix]
                frag_params = {"lohi": [plo, phi], "lo": [plo], "hi": [phi], "": []}[kind]
                starts.append({"lo": plo, "hi": phi, "": None}[start_kind])
                ends.append({"lo": plo - 1, "hi": phi, "": None}[end_kind])
            ors.append(f"({frag})")
            params += frag_params
        conds.append(f"({' OR '.join(ors)})")
        # A clause bounds the hull when each of its values does, by the loosest of them.
        if None not in starts:
            least = min(b for b in starts if b is not None)
            start = least if start is None else max(start, least)
        if None not in ends:
            most = max(b for b in ends if b is not None)
            end = most if end is None else min(end, most)
    return Hull(" AND ".join(conds), params, start, end)


def _pair_key(res_type: str, drv: Driver, pair_name: str) -> tuple[str, list[Any]]:
    return ("res_type = %s AND param = %s AND code = %s AND system = %s AND v_code IS NULL",
            [res_type, pair_name, drv.code, drv.system])


def pair_date_rows(res_type: str, drv: Driver, pair_name: str, hull: Hull
                   ) -> tuple[str, list[Any]]:
    """`SELECT res_pk` of the paired rows (akson.fhir.pairs) of the driver's code whose hull
    meets `hull`: a superset of the resources with the code that match its clauses, exact
    when a resource has one date row. As in `same_row_sql`, a lower bound X on the hull's end
    bounds the scan at both ends: short hulls from `v_low ≥ X − SHORT_SPAN`, long ones from
    the partial index."""
    key, head = _pair_key(res_type, drv, pair_name)
    sql = f"SELECT res_pk FROM sp_composite WHERE {key} AND {hull.sql}"
    if hull.start is None:
        return sql, [*head, *hull.params]
    return (f"{sql} AND v_low >= %s AND v_high - v_low <= {SHORT_SPAN} "
            f"UNION ALL {sql} AND v_high - v_low > {SHORT_SPAN}",
            [*head, *hull.params, hull.start - SHORT_SPAN, *head, *hull.params])


#: A pair-date walk (`pair_date_walk`) reads at most this many buckets of 31 days, one
#: subquery each: about three years. A longer range is read by `pair_date_rows`.
MAX_BUCKETS = 40


def _buckets(hull: Hull, bucket_of: Callable[[int], int]) -> range | None:
    """The buckets a walk of `hull` reads: a row no longer than SHORT_SPAN that meets it starts
    at most SHORT_SPAN before its `start` and at most at its `end`. None when the hull is not
    bounded at both ends or they are more than MAX_BUCKETS."""
    if hull.start is None or hull.end is None or hull.end < hull.start - SHORT_SPAN:
        return None
    first, last = bucket_of(hull.start - SHORT_SPAN), bucket_of(hull.end)
    return range(first, last + 1) if last - first < MAX_BUCKETS else None


def pair_date_walk(res_type: str, drv: Driver, pair_name: str, hull: Hull, after: str,
                   after_params: list[Any], order: str) -> tuple[str, list[Any]] | None:
    """`SELECT res_pk` of the same rows as `pair_date_rows` in pk order (`order`), after the
    cursor (`after` on `res_pk`), or None when the hull is not bounded at both ends or spans
    more than MAX_BUCKETS buckets. Short hulls are kept by bucket (akson.fhir.pairs): one
    index range per bucket, each already in pk order, merged — so a page reads its first
    matches and stops, however many the range holds (a common code in a recent year: 8,000
    rows at a million resources). Long hulls, few, come from the partial index."""
    buckets = _buckets(hull, lambda us: us // pairs.BUCKET)  # as akson.fhir.pairs files them
    if buckets is None:
        return None
    key, head = _pair_key(res_type, drv, pair_name)

    def branch(part: str) -> str:
        return (f"(SELECT res_pk FROM sp_composite WHERE {key} AND {part} AND {hull.sql}"
                f"{after} ORDER BY res_pk {order})")

    sqls, params = [], list[Any]()
    for bucket in buckets:
        sqls.append(branch("v_value = %s"))
        params += [*head, float(bucket), *hull.params, *after_params]
    sqls.append(branch(f"v_high - v_low > {SHORT_SPAN}"))
    params += [*head, *hull.params, *after_params]
    return " UNION ALL ".join(sqls), params


#: Date parameters whose short rows are also kept by 31-day bucket in pk order (PostgreSQL,
#: `ix_sp_date_walk_encounter_date`, migration 0025), so a range of them is walked like a
#: pair's: a month of Encounters held 4,000 rows at a million resources, all read and sorted
#: for a page of 20.
#: Each must give a resource at most one row (akson.fhir.cardinality), and the literals must
#: match the partial index's predicate; adding one is a migration.
DATE_WALKS: tuple[tuple[str, str], ...] = (("Encounter", "date"),)


def date_walk(query: SearchQuery, after: str, after_params: list[Any], order: str
              ) -> tuple[list[Clause], str, list[Any]] | None:
    """The clauses of a search's date range on a DATE_WALKS parameter and `SELECT res_pk` of
    the rows meeting them in pk order (`order`), after the cursor (`after` on `res_pk`): one
    branch per bucket the range can reach, each already in pk order, merged, and one for the
    few long rows. None when there is no such range, or it is not bounded at both ends or
    reaches more than MAX_BUCKETS buckets."""
    found = next(((g, w) for g in same_row_ranges(query) for w in DATE_WALKS
                  if w == (query.resource_type, g[0].name)), None)
    if found is None:
        return None
    group, (res_type, param) = found
    buckets = _buckets(hull_of(group), _truncated)
    if buckets is None:
        return None
    exact, exact_params = _meets_all(group)
    # Literals, as the partial indexes' predicates are (from DATE_WALKS, not from the query).
    key = f"res_type = '{res_type}' AND param = '{param}'"

    def branch(part: str) -> str:
        return (f"(SELECT res_pk FROM sp_date WHERE {key} AND {part} AND {exact}{after} "
                f"ORDER BY res_pk {order})")

    sqls, params = [], list[Any]()
    for bucket in buckets:
        sqls.append(branch(f"high - low <= {SHORT_SPAN} AND low / {pairs.BUCKET} = %s"))
        params += [bucket, *exact_params, *after_params]
    sqls.append(branch(f"high - low > {SHORT_SPAN}"))
    params += [*exact_params, *after_params]
    return group, " UNION ALL ".join(sqls), params


def _truncated(us: int) -> int:
    """`us / BUCKET` as PostgreSQL divides integers (towards zero, where `//` floors): the
    bucket `ix_sp_date_walk_encounter_date` files a row under, also before 1970."""
    whole = abs(us) // pairs.BUCKET
    return whole if us >= 0 else -whole


def _value_predicate(ctx: _Ctx, clause: Clause, value: Value) -> tuple[str, list[Any]]:
    kind = clause.type
    if kind == "token":
        if clause.modifier == "text":
            return _token_text(value.raw)
        if clause.modifier == "of-type":
            tsys, tcode, ident = (_unpipe(p) for p in split_or(value.raw, "|"))
            return "(type_system = %s AND type_code = %s AND value = %s)", [tsys, tcode, ident]
        if clause.modifier in ("in", "not-in"):
            return _in_valueset(ctx, value.raw)
        return _token(value.raw)
    if kind == "string":
        return _string(clause.modifier, value.raw)
    if kind == "date":
        w = Where()
        _date_clause(w, Clause(clause.name, "date", "", (value,)), "low", "high")
        return w.render(), w.params
    if kind == "reference":
        if clause.modifier == "identifier":
            return _token(value.raw)
        return _reference(clause, value.raw, ctx.base_url)
    if kind == "number":
        return _number(value)
    if kind == "quantity":
        return _quantity(value)
    if kind == "uri":
        return _uri(clause.modifier, value.raw)
    if kind == "composite":
        return _composite(clause, value)
    raise FhirError(400, f"Search parameter type {kind} is not supported", "not-supported")


@dataclass(frozen=True)
class Driver:
    """A clause whose index rows can lead a page in primary-key order (see `driver`)."""

    clause: Clause
    system: str
    code: str


def driver(query: SearchQuery) -> Driver | None:
    """The clause to lead an unsorted page from, if there is one: a token clause with one
    `system|code` value and no modifier. Its rows in `sp_token (res_type, param, code, system,
    res_pk)` are unique per resource and already in pk order, so a page reads its first
    matches and stops — instead of reading and sorting every match (50,000+ for a common
    code at a million resources; docs/performance.md)."""
    for clause in query.clauses:
        if (clause.type != "token" or clause.modifier or clause.param is None
                or len(clause.values) != 1):
            continue
        parts = split_or(clause.values[0].raw, "|")
        if len(parts) == 2 and parts[0] and parts[1]:
            return Driver(clause, _unpipe(parts[0]), _unpipe(parts[1]))
    return None


#: Clause kinds that usually match few resources (one patient's, one id, one name): the
#: planner, not a walk in index order, should lead when one of them is in a search.
_NARROWING = frozenset({"reference", "chain", "has", "compartment", "string", "uri"})


def narrowing(clauses: Sequence[Clause], leader: Clause | None = None) -> bool:
    """Does a clause other than `leader` likely match few resources (see `_NARROWING`)?"""
    return any(c is not leader and (c.type in _NARROWING or c.name in ("_id", "identifier"))
               for c in clauses)


def needs_index_row(clauses: Sequence[Clause]) -> bool:
    """Does some clause hold only for a resource with a matching index row (`r.pk IN` an index
    table)? Then the resource is live: index rows exist only for live current versions."""
    return any(c.name not in ("_id", "_lastUpdated") and c.modifier not in _NEGATING
               and (c.type in TABLES or c.type in ("chain", "compartment")) for c in clauses)


#: Modifiers that make a clause hold for resources without a matching index row.
_NEGATING = frozenset({"not", "not-in", "missing"})


def _unpipe(raw: str) -> str:
    return raw.replace("\\|", "|").replace("\\$", "$") if "\\" in raw else raw


def _token(raw: str) -> tuple[str, list[Any]]:
    parts = split_or(raw, "|")
    if len(parts) == 1:
        return "code = %s", [_unpipe(raw)]
    system, code = _unpipe(parts[0]), _unpipe("|".join(parts[1:]))
    if not system:
        return "(system IS NULL AND code = %s)", [code]
    if not code:
        return "system = %s", [system]
    return "(system = %s AND code = %s)", [system, code]


def _token_text(raw: str) -> tuple[str, list[Any]]:
    """`:text` (search.html#token): a string search on the display texts, by word start."""
    norm = text.normalize(raw)
    escaped = norm.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return ("(value_norm LIKE %s ESCAPE '\\' OR value_norm LIKE %s ESCAPE '\\')",
            [f"{escaped}%", f"% {escaped}%"])


def _in_valueset(ctx: _Ctx, url: str) -> tuple[str, list[Any]]:
    """`:in` / `:not-in` (search.html#token): one term per system, its codes as one IN list
    (an OR per code would nest one level per code, and SQLite refuses depths beyond 1000)."""
    pairs = ctx.valuesets.get(url)
    if pairs is None:
        raise FhirError(400, f"ValueSet '{url[:200]}' is not known to this server", "not-found")
    whole = {system for system, code in pairs if code is None}
    codes: dict[str, list[str]] = {}
    for system, code in pairs:
        if code is not None and system not in whole:
            codes.setdefault(system, []).append(code)
    ors = ["system = %s"] * len(whole)
    params: list[Any] = sorted(whole)
    for system, listed in codes.items():
        ors.append(f"(system = %s AND code IN ({', '.join(['%s'] * len(listed))}))")
        params += [system, *listed]
    return ("(" + " OR ".join(ors) + ")" if ors else "1=0"), params


def _string(modifier: str, raw: str) -> tuple[str, list[Any]]:
    if modifier == "exact":
        return "value_exact = %s", [raw]
    norm = text.normalize(raw)
    if modifier == "contains":
        escaped = norm.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return "value_norm LIKE %s ESCAPE '\\'", [f"%{escaped}%"]
    if not norm:
        return "1=1", []
    # A prefix match as a range, so the byte-ordered index answers it on both databases.
    upper = _successor(norm)
    if upper is None:
        return "value_norm >= %s", [norm]
    return "(value_norm >= %s AND value_norm < %s)", [norm, upper]


def _successor(prefix: str) -> str | None:
    """The least string above every string starting with `prefix` (None: there is none).

    Code-point order is UTF-8 byte order; the bound must itself be encodable, so it skips the
    surrogates (U+D800–U+DFFF) and carries past U+10FFFF instead of overflowing.
    """
    while prefix:
        code = ord(prefix[-1]) + 1
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
        prefix = prefix[:-1]
    return None


def _date_clause(where: Where, clause: Clause, low: str, high: str) -> None:
    ors: list[str] = []
    params: list[Any] = []
    for value in clause.values:
        frag, frag_params = _date_value(value, low, high)
        ors.append(frag)
        params += frag_params
    where.add("(" + " OR ".join(ors) + ")", *params)


def _date_value(value: Value, low: str, high: str) -> tuple[str, list[Any]]:
    """One date value against a stored range; precision-aware via `dates.date_range`."""
    plo, phi = dates.date_range(value.raw)
    template, kind = _DATE_SQL[value.prefix]
    frag = "(" + template.format(low=low, high=high) + ")"
    if kind == "lohi":
        return frag, [plo, phi]
    if kind == "lohihi":
        return frag, [plo, phi, phi]
    if kind == "lolo":
        return frag, [plo, plo]
    if kind == "lo":
        return frag, [plo]
    if kind == "hi":
        return frag, [phi]
    # ap: within 10 % of the distance to now (search.html#prefix), at least a day
    gap = max(abs(dates.now_us() - plo) // 10, 86_400_000_000)
    return frag, [phi + gap, plo - gap]


def _reference(clause: Clause, raw: str, base_url: str) -> tuple[str, list[Any]]:
    if base_url and raw.startswith(base_url.rstrip("/") + "/"):
        raw = raw[len(base_url.rstrip("/")) + 1 :]
    if "://" in raw or raw.startswith("urn:"):
        return "url = %s", [raw]
    parts = raw.split("/")
    if len(parts) >= 2:
        if clause.modifier and clause.modifier[0].isupper() and parts[0] != clause.modifier:
            return "1=0", []
        return "(target_type = %s AND target_id = %s)", [parts[0], parts[1]]
    target_type = clause.modifier if clause.modifier and clause.modifier[0].isupper() else None
    if target_type:
        return "(target_type = %s AND target_id = %s)", [target_type, raw]
    return "target_id = %s", [raw]


_NUM_SQL = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "sa": ">", "eb": "<"}


def _number(value: Value, column: str = "value") -> tuple[str, list[Any]]:
    """search.html#number: `eq`/`ne` honour the precision given (100 means [99.5, 100.5))."""
    number = float(value.raw)
    if value.prefix in ("eq", "ne", "ap"):
        half = _half_precision(value.raw) if value.prefix != "ap" else abs(number) * 0.1
        frag = f"({column} >= %s AND {column} < %s)"
        if value.prefix == "ne":
            frag = f"NOT {frag}"
        return frag, [number - half, number + half]
    return f"{column} {_NUM_SQL[value.prefix]} %s", [number]


def _half_precision(raw: str) -> float:
    mantissa, _, exponent = raw.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    if (exponent.lstrip("+-").isascii() and exponent.lstrip("+-").isdigit()):
        decimals -= int(exponent)
    return 0.5 * 10.0 ** (-decimals)


def _quantity(value: Value, prefix: str = "") -> tuple[str, list[Any]]:
    """search.html#quantity: `value|system|code`, and `value||unit` (any system).

    With the UCUM system and a unit akson.fhir.ucum understands, the value is compared in
    canonical form: `1|http://unitsofmeasure.org|g` finds `1000 mg`. Rows indexed before
    canonical rows existed still match in the literal unit. Without a system (`value||mg`, or a
    value alone) only the literal rows match, never the canonical ones the indexer adds
    (akson.fhir.indexing.canonical_quantity). `prefix` names the columns (`v_` in composites).
    """
    number, _, rest = value.raw.partition("|")
    system, _, code = rest.partition("|")
    frag, params = _number(Value(number, value.prefix), f"{prefix}value")
    if code:
        frag += f" AND {prefix}code = %s"
        params.append(code)
    if system:
        frag += f" AND {prefix}system = %s"
        params.append(system)
    else:
        frag += f" AND ({prefix}system IS NULL OR {prefix}system <> %s)"
        params.append(CANONICAL_SYSTEM)
    canonical = _canonical_quantity(value.prefix, number, code, prefix) \
        if system == ucum.SYSTEM and code else None
    if canonical is None:
        return "(" + frag + ")", params
    return f"(({frag}) OR {canonical[0]})", params + canonical[1]


def _canonical_quantity(op: str, number: str, unit: str, prefix: str
                        ) -> tuple[str, list[Any]] | None:
    """`op number unit` against the canonical rows (UCUM-coded literals already in canonical
    form, and the indexer's CANONICAL_SYSTEM rows); None when the unit is not understood.

    The implicit range of `eq`/`ne` (half a unit of the last digit given) and the ±10 % of
    `ap` are taken in the unit of the query and then converted, bound by bound, with Decimal
    arithmetic (search.html#quantity, #number; conversion is monotonic, affine for Cel/[degF]).
    """
    unit_ = ucum.parse(unit)
    value = ucum.to_decimal(number)
    if unit_ is None or value is None:
        return None
    column = f"{prefix}value"
    tail = f" AND {prefix}code = %s AND {prefix}system IN (%s, %s))"
    tail_params = [unit_.code, ucum.SYSTEM, CANONICAL_SYSTEM]
    try:
        if op in ("eq", "ne", "ap"):
            half = abs(value) / 10 if op == "ap" else \
                Decimal(5).scaleb(int(value.as_tuple().exponent) - 1)
            low, high = (float(unit_.to_canonical(value - half)),
                         float(unit_.to_canonical(value + half)))
            frag = f"({column} >= %s AND {column} < %s)"
            frag = f"(NOT {frag}" if op == "ne" else f"({frag}"
            return frag + tail, [low, high, *tail_params]
        bound = float(unit_.to_canonical(value))
    except (DecimalException, OverflowError):
        return None
    return f"({column} {_NUM_SQL[op]} %s" + tail, [bound, *tail_params]


def _uri(modifier: str, raw: str) -> tuple[str, list[Any]]:
    if modifier == "below":
        upper = _successor(raw)
        if upper is None:
            return "uri >= %s", [raw]
        return "(uri >= %s AND uri < %s)", [raw, upper]
    if modifier == "above":
        prefixes = [raw[:i] for i in range(1, len(raw)) if raw[i] == "/"] + [raw]
        return "uri IN (" + ", ".join(["%s"] * len(prefixes)) + ")", prefixes
    return "uri = %s", [raw]


def _composite(clause: Clause, value: Value) -> tuple[str, list[Any]]:
    """search.html#composite: both components match the same element (one `sp_composite` row)."""
    first, params = _token(value.raw)
    second = value.parts[0]
    kind = clause.component_types[1]
    if kind == "token":
        frag, more = _token(second.raw)
        frag = frag.replace("system", "v_system").replace("code", "v_code")
    elif kind == "quantity":
        frag, more = _quantity(second, "v_")
    elif kind == "date":
        frag, more = _date_value(second, "v_low", "v_high")
    else:
        frag, more = _string("", second.raw)
        frag = frag.replace("value_norm", "v_text")
    return f"({first} AND {frag})", params + more


# --- sorting ----------------------------------------------------------------------------------

_SORT_COLUMN = {"string": "value_norm", "token": "code", "number": "value", "quantity": "value",
                "uri": "uri",
                "reference": "COALESCE(target_type || '/' || target_id, url)"}


def sort_expressions(query: SearchQuery, alias: str = "r") -> list[tuple[str, list[Any]]]:
    """One SQL expression per `_sort` key: the resource's least value (greatest when
    descending) of that parameter, NULL when it has none (search.html#sort)."""
    out: list[tuple[str, list[Any]]] = []
    for key in query.sort:
        out.append(_sort_expression(key, alias))
    return out


def _sort_expression(key: SortKey, a: str) -> tuple[str, list[Any]]:
    if key.type == "id":
        return f"{a}.res_id", []
    if key.type == "lastUpdated":
        return f"{a}.last_updated", []
    agg = "MAX" if key.descending else "MIN"
    column = ("high" if key.descending else "low") if key.type == "date" else \
        _SORT_COLUMN[key.type]
    if key.type == "quantity":  # the values as given, not their canonical UCUM copies
        return (f"(SELECT {agg}(value) FROM sp_quantity s WHERE s.res_pk = {a}.pk "
                "AND s.param = %s AND (s.system IS NULL OR s.system <> %s))",
                [key.name, CANONICAL_SYSTEM])
    return (f"(SELECT {agg}({column}) FROM {TABLES[key.type]} s WHERE s.res_pk = {a}.pk "
            "AND s.param = %s)", [key.name])
