"""Maintained counts of common codes for `_total=accurate` (PostgreSQL; ADR 0019).

`sp_token_count` (migration 0023) holds, per promoted key (type, parameter, system, code),
rows whose sum is the key's number of `sp_token` rows: its triggers append the change of
every statement that writes such rows, in that statement's transaction. A count reads the
sum its snapshot sees instead of counting 50,000 index rows (9 ms at a million resources).

A key is promoted when a live count found it large (`wanted`, then `promote` in the
background), or by an operator for every common code at once (`common_keys`, `akson db
counts`): under a SHARE lock on `sp_token`, which waits for the writers in progress and
holds new ones off for the few milliseconds of one count, so no write is counted twice or
not at all. `fold` sums a key's rows into one now and then.
"""

from __future__ import annotations

from typing import Any

from akson.store.database import Tx
from akson.store.search_sql import Where

#: (resource type, parameter, system, code): a `system|code` search's (search_sql.driver).
Key = tuple[str, str, str, str]

#: A key whose live count reaches this is promoted: below it, counting is cheap enough.
PROMOTE_AT = 2000
#: Keys a live count found large, for this process's worker to promote.
wanted: set[Key] = set()


def _key(alias: str = "") -> str:
    """The condition on a row of a key (parameters: `_key_params`)."""
    a = f"{alias}." if alias else ""
    return f"{a}res_type = %s AND {a}param = %s AND {a}code = %s AND {a}system = %s"


def _key_params(key: Key) -> list[Any]:
    res_type, param, system, code = key
    return [res_type, param, code, system]


def count_sql(key: Key, excluded: Where) -> tuple[str, list[Any]]:
    """One row: the key's maintained count (NULL: not promoted), and its count less the pks
    `excluded` names (an access policy's label rules) — from the maintained rows when there
    are some, else counted live."""
    rows = f"FROM sp_token d WHERE {_key('d')}"
    out = " OR ".join(f"d.res_pk IN ({sql})" for sql, _ in excluded.excluded) or "false"
    out_params = [p for _, params in excluded.excluded for p in params]
    sql = (f"SELECT m.n, CASE WHEN m.n IS NULL THEN (SELECT count(*) {rows} AND NOT ({out})) "
           f"ELSE m.n - (SELECT count(*) {rows} AND ({out})) END "
           f"FROM (SELECT sum(n) AS n FROM sp_token_count WHERE {_key()}) m")
    key_params = _key_params(key)
    return sql, [*key_params, *out_params, *key_params, *out_params, *key_params]


async def promote(tx: Tx, key: Key) -> bool:
    """Start maintaining `key`'s count, in the caller's write transaction (False: it was
    already). The lock makes the count and the first row exact: see the module docstring."""
    await tx.execute("LOCK TABLE sp_token IN SHARE MODE")
    params = _key_params(key)
    if await tx.fetchone(f"SELECT 1 FROM sp_token_count WHERE {_key()} LIMIT 1", params):
        return False
    await tx.execute(
        f"INSERT INTO sp_token_count (res_type, param, system, code, n) SELECT %s, %s, %s, %s, "
        f"count(*) FROM sp_token WHERE {_key()}", [key[0], key[1], key[2], key[3], *params])
    return True


async def common_keys(tx: Tx, at_least: int) -> list[Key]:
    """The `system|code` keys with at least `at_least` index rows that are not promoted yet
    (one scan of `sp_token`: for an operator after a bulk load, `akson db counts`)."""
    rows = await tx.fetchall(
        "SELECT t.res_type, t.param, t.system, t.code FROM sp_token t WHERE t.system IS NOT NULL "
        "AND t.code IS NOT NULL GROUP BY 1, 2, 3, 4 HAVING count(*) >= %s AND NOT EXISTS "
        "(SELECT 1 FROM sp_token_count c WHERE c.res_type = t.res_type AND c.param = t.param "
        "AND c.code = t.code AND c.system = t.system) ORDER BY 1, 2, 3, 4", [at_least])
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def fold(tx: Tx) -> None:
    """Sum every key's rows into one. Rows appended meanwhile by transactions this one does
    not see are left alone, so the sums stay exact."""
    await tx.execute(
        "WITH gone AS (DELETE FROM sp_token_count RETURNING *) INSERT INTO sp_token_count "
        "(res_type, param, system, code, n) SELECT res_type, param, system, code, sum(n) "
        "FROM gone GROUP BY 1, 2, 3, 4")


async def rows_per_key(tx: Tx) -> float:
    """How many rows the keys have on average (1.0 right after a fold; 0 with no keys)."""
    row = await tx.fetchone("SELECT count(*), count(DISTINCT (res_type, param, system, code)) "
                            "FROM sp_token_count")
    return (row[0] / row[1]) if row and row[1] else 0.0
