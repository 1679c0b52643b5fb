"""Compile a parsed SearchQuery into one parameterised SQL statement over the index tables.

Each AND clause becomes `r.pk IN (SELECT res_pk FROM sp_<type> WHERE …)` — a semi-join both
databases plan well — and each OR value a disjunct inside it. The resulting `Where` is a list of
predicates on alias `r` (the resource table), so an access policy can append its own predicates
to the same statement (filter in the query, not after it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from akson.fhir import dates, text
from akson.fhir.outcome import FhirError
from akson.fhir.search import Clause, SearchQuery, Value

_DATE_SQL = {
    # Resource range [low, high] against the search range [plo, phi] (search.html#prefix).
    "eq": ("{low} >= %s AND {high} <= %s", "lohi"),
    "ne": ("NOT ({low} >= %s AND {high} <= %s)", "lohi"),
    "gt": ("{high} > %s", "hi"),
    "lt": ("{low} < %s", "lo"),
    "ge": ("{high} >= %s", "lo"),
    "le": ("{low} <= %s", "hi"),
    "sa": ("{low} > %s", "hi"),
    "eb": ("{high} < %s", "lo"),
    "ap": ("{low} <= %s AND {high} >= %s", "ap"),
}


@dataclass
class Where:
    """SQL predicates on `r` with their bound parameters, ANDed together."""

    sql: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, sql: str, *params: Any) -> None:
        self.sql.append(sql)
        self.params.extend(params)

    def render(self) -> str:
        return " AND ".join(self.sql) if self.sql else "1=1"


def compile_where(query: SearchQuery, *, base_url: str = "") -> Where:
    """Predicates for every clause of `query` (resource type and deletion not included)."""
    where = Where()
    for clause in query.clauses:
        _clause(where, query.resource_type or "", clause, base_url)
    return where


def _clause(where: Where, res_type: str, clause: Clause, base_url: str) -> None:
    if clause.name == "_id":
        _id_clause(where, clause)
        return
    if clause.name == "_lastUpdated":
        _date_clause(where, clause, "r.last_updated", "r.last_updated", direct=True)
        return
    table = {"token": "sp_token", "string": "sp_string", "date": "sp_date",
             "reference": "sp_reference", "number": "sp_number", "quantity": "sp_quantity",
             "uri": "sp_uri"}[clause.type]
    sub_params: list[Any] = [res_type, clause.name]
    head = f"SELECT res_pk FROM {table} WHERE res_type = %s AND param = %s"
    if clause.modifier == "missing":
        sql = f"r.pk {'NOT IN' if clause.values[0].raw == 'true' else 'IN'} ({head})"
        where.add(sql, *sub_params)
        return
    ors: list[str] = []
    for value in clause.values:
        frag, frag_params = _value_predicate(clause, value, base_url)
        ors.append(frag)
        sub_params.extend(frag_params)
    negate = clause.type == "token" and clause.modifier == "not"
    sql = f"r.pk {'NOT IN' if negate else 'IN'} ({head} AND ({' OR '.join(ors)}))"
    where.add(sql, *sub_params)


def _id_clause(where: Where, clause: Clause) -> None:
    ids = [v.raw for v in clause.values]
    marks = ", ".join(["%s"] * len(ids))
    op = "NOT IN" if clause.modifier == "not" else "IN"
    where.add(f"r.res_id {op} ({marks})", *ids)


def _value_predicate(clause: Clause, value: Value, base_url: str) -> tuple[str, list[Any]]:
    kind = clause.type
    if kind == "token":
        return _token(value.raw)
    if kind == "string":
        return _string(clause.modifier, value.raw)
    if kind == "date":
        w = Where()
        _date_clause(w, Clause(clause.name, "date", "", (value,)), "low", "high", direct=True)
        return w.render(), w.params
    if kind == "reference":
        return _reference(clause, value.raw, base_url)
    if kind == "number":
        return _number(value)
    if kind == "quantity":
        return _quantity(value)
    if kind == "uri":
        return _uri(clause.modifier, value.raw)
    raise FhirError(400, f"Search parameter type {kind} is not supported", "not-supported")


def _token(raw: str) -> tuple[str, list[Any]]:
    if "|" not in raw:
        return "code = %s", [raw]
    system, code = raw.split("|", 1)
    if not system:
        return "(system IS NULL AND code = %s)", [code]
    if not code:
        return "system = %s", [system]
    return "(system = %s AND code = %s)", [system, code]


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


def _date_clause(where: Where, clause: Clause, low: str, high: str, *, direct: bool) -> None:
    ors: list[str] = []
    params: list[Any] = []
    for value in clause.values:
        plo, phi = dates.date_range(value.raw)
        template, kind = _DATE_SQL[value.prefix]
        ors.append("(" + template.format(low=low, high=high) + ")")
        if kind == "lohi":
            params += [plo, phi]
        elif kind == "lo":
            params.append(plo)
        elif kind == "hi":
            params.append(phi)
        else:  # ap: within 10 % of the distance to now (search.html#prefix), at least a day
            gap = max(abs(dates.now_us() - plo) // 10, 86_400_000_000)
            params += [phi + gap, plo - gap]
    where.add("(" + " OR ".join(ors) + ")", *params)


def _reference(clause: Clause, raw: str, base_url: str) -> tuple[str, list[Any]]:
    if base_url and raw.startswith(base_url.rstrip("/") + "/"):
        raw = raw[len(base_url.rstrip("/")) + 1 :]
    if "://" in raw or raw.startswith("urn:"):
        return "url = %s", [raw]
    parts = raw.split("/")
    if len(parts) >= 2:
        return "(target_type = %s AND target_id = %s)", [parts[0], parts[1]]
    target_type = clause.modifier if clause.modifier and clause.modifier[0].isupper() else None
    if target_type:
        return "(target_type = %s AND target_id = %s)", [target_type, raw]
    return "target_id = %s", [raw]


_NUM_SQL = {"eq": "=", "ne": "<>", "gt": ">", "lt": "<", "ge": ">=", "le": "<=", "sa": ">",
            "eb": "<"}


def _number(value: Value) -> tuple[str, list[Any]]:
    number = float(value.raw)
    if value.prefix in ("eq", "ap"):
        # Equality within the precision the client gave (search.html#number): 100 matches [99.5, 100.5).
        half = _half_precision(value.raw) if value.prefix == "eq" else abs(number) * 0.1
        return "(value >= %s AND value < %s)", [number - half, number + half]
    return f"value {_NUM_SQL[value.prefix]} %s", [number]


def _half_precision(raw: str) -> float:
    mantissa = raw.lower().split("e", 1)[0]
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 0.5 * 10 ** (-decimals)


def _quantity(value: Value) -> tuple[str, list[Any]]:
    number, _, rest = value.raw.partition("|")
    system, _, code = rest.partition("|")
    frag, params = _number(Value(number, value.prefix))
    if code:
        frag += " AND code = %s"
        params.append(code)
    if system:
        frag += " AND system = %s"
        params.append(system)
    return "(" + frag + ")", params


def _uri(modifier: str, raw: str) -> tuple[str, list[Any]]:
    if modifier == "below":
        return "(uri >= %s AND uri < %s)", [raw, raw + "\uffff"]
    if modifier == "above":
        prefixes = [raw[:i] for i in range(1, len(raw)) if raw[i] == "/"] + [raw]
        return "uri IN (" + ", ".join(["%s"] * len(prefixes)) + ")", prefixes
    return "uri = %s", [raw]
