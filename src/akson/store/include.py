"""Fetch the resources `_include` / `_revinclude` add to a search page, through the page's Session.

https://hl7.org/fhir/R4/search.html#include — forward includes follow the page's own
`sp_reference` rows to live `resource` rows; reverse includes find `sp_reference` rows pointing
at the page. `:iterate` repeats the step on what the previous step added, at most
ITERATE_DEPTH times, never returning a resource twice (nor one that is already a match).
Each step is one statement per direction, and `extra` / `scope` (the access policy's
predicates, as for `Session.search`) sit inside it: what the policy hides is never fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from akson.fhir.search import Include, SearchQuery
from akson.store.repository import Session, Stored
from akson.store.search_sql import Scope, Where

#: Rounds of `:iterate` after the first step (search.html#include leaves the depth to servers).
ITERATE_DEPTH = 3
#: Included resources per page at most; past it the Bundle says the includes were cut.
MAX_INCLUDED = 1000

_COLS = "r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content"
Key = tuple[str, str]


@dataclass(frozen=True)
class Included:
    """The resources to add with `search.mode = include`, and whether MAX_INCLUDED cut them."""

    items: list[Stored]
    truncated: bool = False


async def fetch_included(session: Session, query: SearchQuery, matches: Iterable[Stored], *,
                         extra: Where | None = None, scope: Scope | None = None) -> Included:
    """The resources `query.includes` add to a page of `matches` (search.html#include).

    The first step applies every include to the matches; each further step only the
    `:iterate` ones, to the resources the step before added. `extra` adds predicates on alias
    `r` for every included row; `scope(alias, type)` those for a row of that type.
    """
    seen: set[Key] = {(m.res_type, m.res_id) for m in matches}
    frontier = sorted(seen)
    out: list[Stored] = []
    for depth in range(1 + ITERATE_DEPTH):
        specs = [i for i in query.includes if depth == 0 or i.iterate]
        if not specs or not frontier:
            break
        fresh: list[Stored] = []
        for reverse in (False, True):
            budget = MAX_INCLUDED - len(out) - len(fresh)
            if budget <= 0:
                return Included(out + fresh, True)
            step = [i for i in specs if i.reverse == reverse]
            rows = await _step(session, step, frontier, reverse, budget + 1, extra, scope)
            for stored in rows:
                key = (stored.res_type, stored.res_id)
                if key not in seen:
                    seen.add(key)
                    fresh.append(stored)
            if len(rows) > budget:
                return Included(out + fresh[:budget], True)
        out += fresh
        frontier = [(s.res_type, s.res_id) for s in fresh]
    return Included(out)


async def _step(session: Session, specs: list[Include], frontier: list[Key], reverse: bool,
                limit: int, extra: Where | None, scope: Scope | None) -> list[Stored]:
    """One include step from `frontier` in one direction: a single scoped statement."""
    types = {t for t, _ in frontier}
    if not reverse:  # a forward include starts only from resources of its source type
        specs = [i for i in specs if i.source is None or i.source in types]
    if not specs:
        return []
    match = Where()
    _spec_predicates(match, specs)
    _frontier_predicate(match, frontier, "ref.target" if reverse else "src.res")
    if reverse:
        pks = f"SELECT ref.res_pk FROM sp_reference ref WHERE {match.render()}"
        kinds = f"SELECT DISTINCT ref.res_type FROM sp_reference ref WHERE {match.render()}"
    else:
        source = "FROM sp_reference ref JOIN resource src ON src.pk = ref.res_pk"
        pks = (f"SELECT t.pk {source} JOIN resource t ON t.res_type = ref.target_type "
               f"AND t.res_id = ref.target_id WHERE {match.render()}")
        kinds = (f"SELECT DISTINCT ref.target_type {source} WHERE {match.render()} "
                 "AND ref.target_type IS NOT NULL")
    where = Where()
    where.add(f"r.pk IN ({pks})", *match.params)
    if scope is not None:
        # The policy's predicates depend on the row's type: ask which types this step can
        # reach, then filter each inside the statement.
        found = [row[0] for row in await session.tx.fetchall(kinds, match.params, prepare=False)]
        if not found:
            return []
        ors: list[str] = []
        params: list[Any] = []
        for res_type in sorted(found):
            sub = scope("r", res_type)
            ors.append(f"(r.res_type = %s AND {sub.render()})")
            params += [res_type, *sub.params]
        where.add("(" + " OR ".join(ors) + ")", *params)
    if extra is not None:
        where.sql += extra.sql
        where.params += extra.params
    rows = await session.tx.fetchall(
        f"SELECT {_COLS} FROM resource r WHERE NOT r.deleted AND {where.render()} "
        "ORDER BY r.pk LIMIT %s", [*where.params, limit], prepare=False)
    return [_stored(row) for row in rows]


def _spec_predicates(where: Where, specs: list[Include]) -> None:
    """`sp_reference` rows the includes follow: OR of (source type, parameter, target type)."""
    ors: list[str] = []
    params: list[Any] = []
    for spec in specs:
        parts: list[str] = []
        if spec.source is not None:
            parts.append("ref.res_type = %s")
            params.append(spec.source)
        if spec.param is not None:
            parts.append("ref.param = %s")
            params.append(spec.param)
        if spec.target is not None:
            parts.append("ref.target_type = %s")
            params.append(spec.target)
        if not parts:  # `*`: every reference of (or to) the frontier
            where.add("1=1")
            return
        ors.append("(" + " AND ".join(parts) + ")")
    where.add("(" + " OR ".join(ors) + ")", *params)


def _frontier_predicate(where: Where, frontier: list[Key], prefix: str) -> None:
    """`{prefix}_type`/`{prefix}_id` in the frontier, grouped by type (index-friendly IN lists)."""
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in frontier:
        by_type.setdefault(res_type, []).append(res_id)
    ors: list[str] = []
    params: list[Any] = []
    for res_type, ids in sorted(by_type.items()):
        ors.append(f"({prefix}_type = %s AND {prefix}_id IN ({', '.join(['%s'] * len(ids))}))")
        params += [res_type, *ids]
    where.add("(" + " OR ".join(ors) + ")", *params)


def _stored(row: Any) -> Stored:
    content = row[5]
    if content is not None and not isinstance(content, bytes):
        content = bytes(content)
    return Stored(row[0], row[1], row[2], row[3], bool(row[4]), content)
