"""`akson import`: load Bundles and NDJSON into the store through the normal FHIR interactions.

Every resource passes the same validation and indexing as a REST write. Bundles run as the
transaction or batch they are, through the FHIR router. NDJSON lines are validated one by one (a
bad line is rejected with its reason, the rest load) and bulk-loaded in chunks, one transaction
each. Resources with an `id` keep it, so references between files hold.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from tqdm import tqdm

from akson.api.fhir import router
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.config import Settings
from akson.fhir import jsonio
from akson.fhir.outcome import FhirError
from akson.fhir.searchparams import SearchParamRegistry
from akson.fhir.validation import validate
from akson.store.bulk import bulk_create
from akson.store.database import connect
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore

CHUNK = 500
BASE_URL = "urn:akson:import"


@dataclass
class Summary:
    """What an import did: counts, and each rejection with where it was and why."""

    loaded: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"Loaded {self.loaded} resources; rejected {len(self.rejected)}."]
        lines += [f"  rejected {where}: {why}" for where, why in self.rejected[:200]]
        if len(self.rejected) > 200:
            lines.append(f"  … and {len(self.rejected) - 200} more")
        return "\n".join(lines)


def source_files(paths: list[str]) -> list[Path]:
    """The .json/.ndjson files named or found (recursively, sorted) below named folders."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson"))
        else:
            out.append(path)
    return out


def run_import(settings: Settings, paths: list[str], *, progress: bool = True) -> Summary:
    upgrade(settings.database_url)
    return asyncio.run(_run(settings, source_files(paths), progress))


async def _run(settings: Settings, files: list[Path], progress: bool) -> Summary:
    registry = SearchParamRegistry.default()
    db = connect(settings.database_url, pool_size=2)
    await db.open()
    ctx = FhirContext(ResourceStore(db, registry), registry, settings)
    summary = Summary()
    bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
               disable=not progress, desc="import")
    try:
        for path in files:
            if path.suffix == ".ndjson":
                await _ndjson(ctx, path, summary)
            else:
                await _json(ctx, path, summary)
            bar.update(path.stat().st_size)
    finally:
        bar.close()
        await db.close()
    return summary


async def _json(ctx: FhirContext, path: Path, summary: Summary) -> None:
    try:
        doc = jsonio.loads(path.read_bytes(), max_depth=ctx.settings.max_json_depth)
    except FhirError as err:
        summary.rejected.append((str(path), err.diagnostics))
        return
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle" and doc.get("type") in (
        "transaction", "batch"
    ):
        resp = await call(ctx, FhirRequest("POST", [], parsed_body=doc, base_url=BASE_URL))
        if resp.status >= 300:
            summary.rejected.append((str(path), _why(resp)))
            return
        count_bundle(resp, str(path), summary)
        return
    await _resources(ctx, [(str(path), doc)], summary)


def count_bundle(resp: FhirResponse, where: str, summary: Summary) -> None:
    body = orjson.loads(resp.body_bytes())
    for i, entry in enumerate(body.get("entry") or []):
        status = str(entry.get("response", {}).get("status", ""))
        if status[:1] == "2":
            summary.loaded += 1
        else:
            outcome = entry.get("response", {}).get("outcome") or {}
            issues = outcome.get("issue") or [{}]
            summary.rejected.append((f"{where} entry {i}", issues[0].get("diagnostics", status)))


def _lines(path: Path) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield f"{path}:{number}", line


async def _ndjson(ctx: FhirContext, path: Path, summary: Summary) -> None:
    chunk: list[tuple[str, object]] = []
    for where, line in _lines(path):
        try:
            chunk.append((where, jsonio.loads(line, max_depth=ctx.settings.max_json_depth)))
        except FhirError as err:
            summary.rejected.append((where, err.diagnostics))
        if len(chunk) >= CHUNK:
            await _resources(ctx, chunk, summary)
            chunk = []
    if chunk:
        await _resources(ctx, chunk, summary)


async def _resources(ctx: FhirContext, items: list[tuple[str, object]], summary: Summary) -> None:
    """Validate each resource, then bulk-load the valid ones in one transaction.

    Resources keep their `id` (new ones get a server id); an existing id becomes a new version.
    """
    valid: list[tuple[str, str, dict]] = []
    for where, resource in items:
        issues = validate(resource, allow_synthetic_ids=ctx.settings.allow_synthetic_ids)
        if issues:
            summary.rejected.append((where, issues[0].diagnostics))
            continue
        assert isinstance(resource, dict)
        res_id = resource.get("id") or str(uuid.uuid4())
        valid.append((resource["resourceType"], res_id, resource))
    if not valid:
        return
    async with ctx.store.session(write=True, bulk=True) as s:
        await bulk_create(s, valid)
    summary.loaded += len(valid)


async def call(ctx: FhirContext, req: FhirRequest) -> FhirResponse:
    req.headers.setdefault("prefer", "return=minimal")
    try:
        return await router.handle(ctx, req)
    except FhirError as err:
        return FhirResponse(err.status, err.outcome())


def _why(resp: FhirResponse) -> str:
    body = resp.body if isinstance(resp.body, dict) else orjson.loads(resp.body_bytes() or b"{}")
    issues = body.get("issue") or [{}]
    return str(issues[0].get("diagnostics") or f"HTTP {resp.status}")
