"""Hard deletion: every version and index row of resources, gone. The only hard delete in Akson,
used for a citizen's reservation against storage of their results (DOMAIN.md §5); everything
else deletes softly and keeps history (ARCHITECTURE.md, principle 6)."""

from __future__ import annotations

from collections.abc import Sequence

from akson.fhir import jsonio
from akson.store.repository import Session
from akson.store.schema import INDEX_TABLES

#: Search-only index tables (migration 0003) that hold rows per resource too.
_EXTRA_TABLES = ("sp_token_text", "sp_identifier_type", "sp_composite")


async def tagged_patient_resources(s: Session, patient_id: str, types: Sequence[str],
                                   tag: tuple[str, str]) -> list[tuple[int, str, str]]:
    """`(pk, type, id)` of the patient's resources of `types` whose latest stored content
    carries the `meta.tag` `tag` (system, code), soft-deleted ones included: their earlier
    versions still hold the data."""
    marks = ",".join(["%s"] * len(types))
    rows = await s.tx.fetchall(
        f"SELECT r.pk, r.res_type, r.res_id, COALESCE(r.content, (SELECT v.content "
        "FROM resource_version v WHERE v.res_type = r.res_type AND v.res_id = r.res_id "
        "AND v.content IS NOT NULL ORDER BY v.version DESC LIMIT 1)) "
        f"FROM resource r WHERE r.patient_id = %s AND r.res_type IN ({marks})",
        (patient_id, *types))
    found = []
    for pk, res_type, res_id, content in rows:
        tags = jsonio.loads(bytes(content)).get("meta", {}).get("tag", []) if content else []
        if any((t.get("system"), t.get("code")) == tag for t in tags):
            found.append((int(pk), str(res_type), str(res_id)))
    return found


async def purge(s: Session, keys: Sequence[tuple[int, str, str]]) -> int:
    """Delete these resources `(pk, type, id)` with every version and index row; returns how
    many there were."""
    for pk, res_type, res_id in keys:
        for table in (*INDEX_TABLES, *_EXTRA_TABLES):
            await s.tx.execute(f"DELETE FROM {table} WHERE res_pk = %s", (pk,))
        await s.tx.execute("DELETE FROM resource_version WHERE res_type = %s AND res_id = %s",
                           (res_type, res_id))
        await s.tx.execute("DELETE FROM resource WHERE pk = %s", (pk,))
    return len(keys)
