"""Paired index rows: each code of a resource with its date or its patient, in one row.

A search for a common code in one year (`Observation?code=…&date=ge2023&date=lt2024`), or for
the patients with such a code (`Patient?_has:Observation:patient:code=…`), otherwise reads the
index rows of every match of the code — 52,000 at a million resources — to find the few it
needs. A row holding both values is found by one range scan of one index instead (ADR 0018).

The rows are derived from the resource's own token, date and reference index rows, so they
always agree with them. They are stored in `sp_composite` under a name that is not a search
parameter (`code+date`), with the token's system and code, then:

- a date pair: the *hull* of the date rows (earliest low, latest high) in `v_low`/`v_high`. A
  resource whose date rows meet a search's date clauses has a hull that overlaps them, so a
  range on the hull finds a superset of the matches, exact when the resource has one date row
  (the usual case); the search checks the date clauses on what it finds. A hull of at most
  BUCKET µs also has its bucket, `v_low // BUCKET`, in `v_value`: a range of buckets is a
  few index ranges each in pk order, so a page of a common code in a year reads its first
  matches only (akson.store.search_sql.pair_date_walk).
- a reference pair: the target's type in `v_system` and id in `v_code`, one row per target.
  Exact: a resource with the code and a reference to the target is what `_has` asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from akson.fhir.indexing import IndexRows

#: A composite row as `sp_composite` holds it: (param, system, code, v_system, v_code, v_value,
#: v_low, v_high, v_text).
CompositeRow = tuple[str, str | None, str | None, str | None, str | None, float | None,
                     int | None, int | None, str | None]


#: The width of a date pair's bucket: 31 days in µs, the short span of
#: akson.store.search_sql (a hull this short lies in its bucket or reaches into the next).
BUCKET = 2_678_400_000_000


@dataclass(frozen=True)
class Pair:
    """A token parameter paired with a date or reference parameter of the same resource type."""

    res_type: str
    token: str
    other: str
    kind: str  # "date" | "reference"

    @property
    def name(self) -> str:
        """The rows' `param`: `+` cannot start or end a search parameter code, and no code of
        R4's or ours contains it (the registry refuses one that does)."""
        return f"{self.token}+{self.other}"


#: The pairs indexed: where a population-wide search for a common code is usual (results in a
#: year, patients with a result or a diagnosis). Every pair adds a row per code of each such
#: resource to every write, so the list stays short; adding one needs a reindex of its token
#: parameter (`akson reindex --param`), as migration 0021 does for these.
PAIRS: tuple[Pair, ...] = (
    Pair("Observation", "code", "date", "date"),
    Pair("Observation", "code", "patient", "reference"),
    Pair("Condition", "code", "patient", "reference"),
)
_BY_TYPE: dict[str, tuple[Pair, ...]] = {}
for _p in PAIRS:
    _BY_TYPE[_p.res_type] = (*_BY_TYPE.get(_p.res_type, ()), _p)


def pairs_of(res_type: str) -> tuple[Pair, ...]:
    """The pairs indexed on `res_type`."""
    return _BY_TYPE.get(res_type, ())


def find(res_type: str, token: str, other: str) -> Pair | None:
    """The pair of these two parameters on `res_type`, if it is indexed."""
    return next((p for p in pairs_of(res_type) if p.token == token and p.other == other), None)


def involving(code: str) -> tuple[Pair, ...]:
    """The pairs one of whose parameters is `code` (on any type): a reindex of `code` must
    rebuild their rows too (akson.store.reindex)."""
    return tuple(p for p in PAIRS if code in (p.token, p.other))


def pair_rows(res_type: str, rows: IndexRows) -> list[CompositeRow]:
    """The paired rows of a resource of `res_type` whose index rows are `rows`."""
    out: list[CompositeRow] = []
    for pair in pairs_of(res_type):
        codes = [(s, c) for p, s, c in rows.tokens if p == pair.token]
        if not codes:
            continue
        if pair.kind == "date":
            spans = [(lo, hi) for p, lo, hi in rows.dates if p == pair.other]
            if spans:
                low, high = min(s[0] for s in spans), max(s[1] for s in spans)
                bucket = float(low // BUCKET) if high - low <= BUCKET else None
                out += [(pair.name, s, c, None, None, bucket, low, high, None) for s, c in codes]
        else:
            targets = [(t, i) for p, t, i, _ in rows.references
                       if p == pair.other and t is not None and i is not None]
            out += [(pair.name, s, c, t, i, None, None, None, None)
                    for s, c in codes for t, i in targets]
    return out
