"""Apply register records to the store: idempotent upserts keyed by each register's natural key.

Per record: take `Session.lock_condition` on the natural key (so two writers cannot both see
"absent" and both create), find the resource by identifier search, resolve the references the
record names (a reference to an unknown resource is a `MissingReference`, a `RecordError`),
build the resources with `akson.registry.mapping`, validate them, and only then write — so a
rejected record has written nothing. A resource whose content would not change is not written
(re-applying a record creates no new version).

Several registers describe one Organization (the municipality list, Enhetsregisteret, AR), and
a Patient may carry elements the journal added; so an update replaces only the elements and
identifier systems the writing register owns (`_OWNED`) and keeps the rest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from akson.config import Settings
from akson.fhir import jsonio
from akson.fhir.naming import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    HER_ID_SYSTEM,
    HPR_SYSTEM,
    KOMMUNENR_SYSTEM,
    ORGNR_SYSTEM,
    RESH_SYSTEM,
)
from akson.fhir.validation import validate
from akson.registry import mapping
from akson.registry.lookup import (
    by_identifier,
    organization_by_orgnr,
    patient_by_nin,
    practitioner_by_hpr,
    search_all,
)
from akson.registry.municipalities import municipality_organizations
from akson.registry.records import RecordError, check_synthetic, parse_record
from akson.store.repository import ResourceStore, Session, Stored

__all__ = ["CHUNK", "Counts", "ImportSummary", "MissingReference", "apply_record",
           "apply_record_counted", "import_file", "load_municipalities"]

#: Records applied per database transaction by `import_file`.
CHUNK = 200
log = logging.getLogger("akson.registry")


class MissingReference(RecordError):
    """The record refers to a resource that is not (yet) stored, e.g. a child unit listed before
    its parent; an importer may retry it after the rest of the file."""


@dataclass
class Counts:
    """Resources written by applying records: created, updated, left unchanged, deleted."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def add(self, other: Counts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted


@dataclass(frozen=True)
class _Owned:
    """What a register owns in a resource type: top-level elements, identifier systems and
    security-label systems. `elements=None` means the whole resource (replace on update)."""

    elements: frozenset[str] | None
    id_systems: frozenset[str] = frozenset()
    security_systems: frozenset[str] = frozenset()


_PERSON_SYSTEMS = frozenset({FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM})
_WHOLE = _Owned(None)
_OWNED: dict[tuple[str, str], _Owned] = {
    ("freg", "Patient"): _Owned(
        frozenset({"extension", "name", "gender", "birthDate", "deceasedDateTime",
                   "deceasedBoolean", "address"}),
        _PERSON_SYSTEMS, frozenset({mapping.ADDRESS_PROTECTION_SYSTEM})),
    ("hpr", "Practitioner"): _Owned(frozenset({"name", "qualification"}),
                                    _PERSON_SYSTEMS | {HPR_SYSTEM}),
    ("enhet", "Organization"): _Owned(frozenset({"name", "type", "active", "address", "partOf"}),
                                      frozenset({ORGNR_SYSTEM, RESH_SYSTEM, KOMMUNENR_SYSTEM})),
    ("ar", "Organization"): _Owned(frozenset({"endpoint"}), frozenset({HER_ID_SYSTEM})),
}


# ----------------------------------------------------------------------------- write helpers


def _content(stored: Stored) -> dict[str, Any]:
    return dict(orjson.loads(stored.content or b"{}"))


def _comparable(resource: Mapping[str, Any]) -> Any:
    """The resource as JSON without the server-managed meta, for "did anything change"."""
    doc = orjson.loads(jsonio.dumps(resource))
    meta = doc.get("meta") or {}
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if not meta:
        doc.pop("meta", None)
    return doc


def _merge(existing: dict[str, Any], new: dict[str, Any], owned: _Owned) -> dict[str, Any]:
    """`new` written over `existing`, keeping what the writing register does not own."""
    if owned.elements is None:
        merged = dict(new)
    else:
        merged = {k: v for k, v in existing.items()
                  if k not in owned.elements and k not in ("meta", "identifier")}
        merged.update({k: v for k, v in new.items() if k not in ("meta", "identifier")})
        identifiers = _union(existing.get("identifier"), new.get("identifier"),
                             owned.id_systems)
        if identifiers:
            merged["identifier"] = identifiers
    old_meta = {k: v for k, v in (existing.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated")}
    new_meta = new.get("meta") or {}
    meta = dict(old_meta) if owned.elements is not None else {}
    tags = list(old_meta.get("tag") or [])
    tags += [t for t in new_meta.get("tag") or [] if t not in tags]
    meta["tag"] = tags
    security = _union(old_meta.get("security") if owned.elements is not None else None,
                      new_meta.get("security"), owned.security_systems)
    if security:
        meta["security"] = security
    else:
        meta.pop("security", None)
    merged["meta"] = meta
    merged["resourceType"] = new["resourceType"]
    merged["id"] = new["id"]
    return merged


def _union(old: list[dict[str, Any]] | None, new: list[dict[str, Any]] | None,
           owned_systems: frozenset[str]) -> list[dict[str, Any]]:
    """Codings/identifiers: the old ones the register does not own or still sends, in their
    old order, then the new ones. Order-stable, so registers writing one resource in turn do
    not make a new version each time."""
    fresh = list(new or [])
    kept = [x for x in old or [] if x in fresh or x.get("system") not in owned_systems]
    return kept + [x for x in fresh if x not in kept]


class _Writer:
    """Validates and writes resources of one record; counts what happened."""

    def __init__(self, s: Session, register: str, allow_synthetic_ids: bool) -> None:
        self.s = s
        self.register = register
        self.allow_synthetic_ids = allow_synthetic_ids
        self.counts = Counts()
        self.pending: list[tuple[dict[str, Any], Stored | None]] = []
        self.fresh: set[str] = set()

    def new_id(self) -> str:
        """A new random resource id (never derived from a national id); known to be unused,
        so writing it needs no read first."""
        res_id = str(uuid.uuid4())
        self.fresh.add(res_id)
        return res_id

    def stage(self, resource: dict[str, Any], existing: Stored | None) -> None:
        """Check `resource` now, write it in `flush` (so a bad record writes nothing)."""
        issues = validate(resource, expected_type=resource["resourceType"],
                          allow_synthetic_ids=self.allow_synthetic_ids)
        if issues:
            raise RecordError(f"the {resource['resourceType']} built from the record is not "
                              f"valid: {issues[0].diagnostics}")
        self.pending.append((resource, existing))

    async def flush(self) -> None:
        for resource, existing in self.pending:
            await self._write(resource, existing)
        self.pending.clear()

    async def _write(self, resource: dict[str, Any], existing: Stored | None) -> None:
        res_type, res_id = resource["resourceType"], resource["id"]
        if existing is None and res_id in self.fresh:
            await self.s.create(res_type, resource, res_id=res_id)
            self.counts.created += 1
            return
        if existing is None:
            existing = await self.s.read(res_type, res_id)
        if existing is not None and not existing.deleted:
            owned = _OWNED.get((self.register, res_type), _WHOLE)
            resource = _merge(_content(existing), resource, owned)
            if _comparable(resource) == _comparable(_content(existing)):
                self.counts.unchanged += 1
                return
            await self.s.update(res_type, res_id, resource)
            self.counts.updated += 1
            return
        await self.s.update(res_type, res_id, resource)
        self.counts.created += 1


def _ref_id(ref: object, res_type: str) -> str | None:
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        raw: str = ref["reference"]
        if raw.startswith(f"{res_type}/"):
            return raw.split("/", 1)[1]
    return None


# -------------------------------------------------------------------------------- registers


async def _freg(w: _Writer, rec: Mapping[str, Any]) -> None:
    s = w.s
    system = mapping.person_id_system(rec["nin"])
    await s.lock_condition("Patient", f"identifier={system}|{rec['nin']}")
    found = await patient_by_nin(s, rec["nin"])
    patient_id = found.res_id if found else w.new_id()
    w.stage(mapping.person_to_patient(rec, patient_id=patient_id), found)
    # The patient's register-made RelatedPersons, by the related person's national id.
    current: dict[str, Stored] = {}
    if found is not None:
        async for item in search_all(s, "RelatedPerson", [("patient", f"Patient/{patient_id}")]):
            rel = _content(item)
            if mapping.source_tag("freg") not in (rel.get("meta") or {}).get("tag", []):
                continue
            for ident in rel.get("identifier") or []:
                if ident.get("system") in _PERSON_SYSTEMS:
                    current[ident.get("value")] = item
    nins = set(_related_nins(rec))
    ids = {nin: current[nin].res_id if nin in current else w.new_id() for nin in nins}
    for rel in mapping.person_relations(rec, patient_id=patient_id, related_ids=ids):
        nin = rel["identifier"][0]["value"]
        w.stage(rel, current.get(nin))
    await w.flush()
    for nin, item in current.items():
        if nin not in nins and await s.delete("RelatedPerson", item.res_id):
            w.counts.deleted += 1  # the relation ended in FREG


def _related_nins(rec: Mapping[str, Any]) -> Iterable[str]:
    yield from (f["nin"] for f in rec.get("family") or [])
    yield from (p["child_nin"] for p in rec.get("parental_responsibility") or [])
    yield from (g["guardian_nin"] for g in rec.get("guardianship") or [])


async def _hpr(w: _Writer, rec: Mapping[str, Any]) -> None:
    await w.s.lock_condition("Practitioner", f"identifier={HPR_SYSTEM}|{rec['hpr_number']}")
    found = await practitioner_by_hpr(w.s, rec["hpr_number"])
    practitioner_id = found.res_id if found else w.new_id()
    w.stage(mapping.hpr_to_practitioner(rec, practitioner_id=practitioner_id), found)
    await w.flush()


async def _enhet(w: _Writer, rec: Mapping[str, Any]) -> None:
    s = w.s
    await s.lock_condition("Organization", f"identifier={ORGNR_SYSTEM}|{rec['orgnr']}")
    found = await organization_by_orgnr(s, rec["orgnr"])
    if found is None and rec["kind"] == "kommune" and rec.get("municipality"):
        # The municipality list's Organization for this kommune becomes the enhet one.
        await s.lock_condition("Organization",
                               f"identifier={KOMMUNENR_SYSTEM}|{rec['municipality']}")
        found = await by_identifier(s, "Organization", KOMMUNENR_SYSTEM, rec["municipality"])
    parent_id = None
    if rec.get("parent_orgnr"):
        parent = await organization_by_orgnr(s, rec["parent_orgnr"])
        if parent is None:
            raise MissingReference("parent_orgnr is not a known organisation")
        parent_id = parent.res_id
    organization_id = found.res_id if found else w.new_id()
    w.stage(mapping.enhet_to_organization(rec, organization_id=organization_id,
                                          parent_id=parent_id), found)
    await w.flush()


async def _flr(w: _Writer, rec: Mapping[str, Any]) -> None:
    s = w.s
    if rec["kind"] == "contract":
        await s.lock_condition("PractitionerRole",
                               f"identifier={mapping.FLR_CONTRACT_SYSTEM}|{rec['contract_id']}")
        found = await by_identifier(s, "PractitionerRole", mapping.FLR_CONTRACT_SYSTEM,
                                    rec["contract_id"])
        practitioner = await practitioner_by_hpr(s, rec["hpr_number"])
        if practitioner is None:
            raise MissingReference("hpr_number is not a known practitioner")
        organization = await organization_by_orgnr(s, rec["orgnr"])
        if organization is None:
            raise MissingReference("orgnr is not a known organisation")
        w.stage(mapping.gp_contract_to_role(
            rec, role_id=found.res_id if found else w.new_id(),
            practitioner_id=practitioner.res_id, organization_id=organization.res_id), found)
        await w.flush()
        return
    role = await by_identifier(s, "PractitionerRole", mapping.FLR_CONTRACT_SYSTEM,
                               rec["contract_id"])
    if role is None:
        raise MissingReference("contract_id is not a known GP contract")
    patient = await patient_by_nin(s, rec["nin"])
    if patient is None:
        raise MissingReference("nin is not a known person")
    role_doc = _content(role)
    practitioner_id = _ref_id(role_doc.get("practitioner"), "Practitioner")
    organization_id = _ref_id(role_doc.get("organization"), "Organization")
    if practitioner_id is None or organization_id is None:
        raise RecordError("the GP contract has no practitioner or organisation")
    key = mapping.membership_key(rec)
    patient_ref = f"Patient/{patient.res_id}"
    await s.lock_condition("EpisodeOfCare",
                           f"identifier={mapping.FLR_MEMBERSHIP_SYSTEM}|{key}&patient={patient_ref}")
    found = await by_identifier(s, "EpisodeOfCare", mapping.FLR_MEMBERSHIP_SYSTEM, key,
                                extra=[("patient", patient_ref)])
    w.stage(mapping.gp_membership_to_episode(
        rec, episode_id=found.res_id if found else w.new_id(), patient_id=patient.res_id,
        practitioner_id=practitioner_id, organization_id=organization_id), found)
    await w.flush()


async def _ar(w: _Writer, rec: Mapping[str, Any]) -> None:
    s = w.s
    her_id, kind = rec["her_id"], rec["kind"]
    res_type = {"organization": "Organization", "service": "HealthcareService",
                "person": "PractitionerRole"}[kind]
    await s.lock_condition(res_type, f"identifier={HER_ID_SYSTEM}|{her_id}")
    found = await by_identifier(s, res_type, HER_ID_SYSTEM, her_id)
    ids: dict[str, str] = {}
    if kind != "organization":
        ids["organization"] = await _ar_parent_organization(s, rec["parent_her_id"])
        orgnr = await _orgnr_of(s, ids["organization"])
        if orgnr:
            ids["organization_orgnr"] = orgnr
    elif found is None and rec.get("orgnr"):
        found = await organization_by_orgnr(s, rec["orgnr"])  # the enhet Organization
    if kind == "person":
        practitioner = await practitioner_by_hpr(s, rec["hpr_number"])
        if practitioner is not None:
            ids["practitioner"] = practitioner.res_id
    party_doc = _content(found) if found else {}
    endpoint_id = next((e for e in (_ref_id(r, "Endpoint") for r in
                                    party_doc.get("endpoint") or []) if e), None)
    ids["self"] = found.res_id if found else w.new_id()
    ids["endpoint"] = endpoint_id or w.new_id()
    party, endpoint = mapping.ar_to_resources(rec, ids=ids)
    if kind == "organization" and found is not None:
        # An Organization already named by another register keeps its name and status.
        for key in ("name", "active"):
            if key in party_doc:
                party.pop(key)
    w.stage(endpoint, None)
    w.stage(party, found)
    await w.flush()


async def _orgnr_of(s: Session, organization_id: str) -> str | None:
    stored = await s.read("Organization", organization_id)
    if stored is None or stored.content is None:
        return None
    return next((i.get("value") for i in _content(stored).get("identifier") or []
                 if i.get("system") == ORGNR_SYSTEM), None)


async def _ar_parent_organization(s: Session, parent_her_id: str) -> str:
    """The Organization a service or person belongs to: the parent party, or its organisation."""
    for res_type, element in (("Organization", None), ("HealthcareService", "providedBy"),
                              ("PractitionerRole", "organization")):
        parent = await by_identifier(s, res_type, HER_ID_SYSTEM, parent_her_id)
        if parent is None:
            continue
        if element is None:
            return parent.res_id
        org_id = _ref_id(_content(parent).get(element), "Organization")
        if org_id:
            return org_id
    raise MissingReference("parent_her_id is not a known communication party")


_APPLY: dict[str, Callable[[_Writer, Mapping[str, Any]], Any]] = {
    "freg": _freg, "hpr": _hpr, "enhet": _enhet, "flr": _flr, "ar": _ar,
}


async def apply_record_counted(s: Session, register: str, record: Mapping[str, Any], *,
                               allow_synthetic_ids: bool) -> Counts:
    """`apply_record`, returning how many resources were created, updated, left or deleted."""
    apply = _APPLY.get(register)
    if apply is None:
        raise RecordError("unknown register")
    check_synthetic(record, allow_synthetic_ids=allow_synthetic_ids)
    writer = _Writer(s, register, allow_synthetic_ids)
    await apply(writer, record)
    return writer.counts


async def apply_record(s: Session, register: str, record: Mapping[str, Any], *,
                       allow_synthetic_ids: bool) -> None:
    """Upsert one normalised record (from `records.parse_record`) of `register` in session `s`.

    Idempotent: keyed by the register's natural key — Patient by national id, Practitioner by
    HPR-nr, Organization by orgnr (a `kommune` also by kommunenummer), PractitionerRole by FLR
    contract id, EpisodeOfCare by contract + person + from, AR parties by HER-id — and writes
    nothing when the stored content is already equal. Raises RecordError (MissingReference for
    an unknown patient, practitioner, organisation, contract or parent) before writing anything.
    """
    await apply_record_counted(s, register, record, allow_synthetic_ids=allow_synthetic_ids)


async def load_municipalities(s: Session) -> Counts:
    """Create the 357 municipality Organizations (`kommune-<number>`) that are not stored yet.

    A kommune already present — by id, or by kommunenummer identifier (e.g. written by
    Enhetsregisteret) — is left as it is. Idempotent.
    """
    counts = Counts()
    for org in municipality_organizations():
        number = org["identifier"][0]["value"]
        await s.lock_condition("Organization", f"identifier={KOMMUNENR_SYSTEM}|{number}")
        if await s.exists("Organization", org["id"]) or await by_identifier(
            s, "Organization", KOMMUNENR_SYSTEM, number
        ):
            counts.unchanged += 1
            continue
        await s.update("Organization", org["id"], org)
        counts.created += 1
    return counts


# ------------------------------------------------------------------------------ file import


@dataclass
class ImportSummary:
    """What importing one register file did. `rejected` holds (line number, reason)."""

    register: str
    records: int = 0
    applied: int = 0
    counts: Counts = field(default_factory=Counts)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def render(self, *, limit: int = 200) -> str:
        c = self.counts
        lines = [f"{self.register}: {self.records} records, {self.applied} applied, "
                 f"{len(self.rejected)} rejected; resources {c.created} created, "
                 f"{c.updated} updated, {c.unchanged} unchanged, {c.deleted} deleted."]
        lines += [f"  line {n}: {why}" for n, why in self.rejected[:limit]]
        if len(self.rejected) > limit:
            lines.append(f"  … and {len(self.rejected) - limit} more")
        return "\n".join(lines)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        yield from enumerate(f, start=1)


async def _apply_chunk(store: ResourceStore, register: str, chunk: list[tuple[int, dict]],
                       summary: ImportSummary, deferred: list[tuple[int, dict]] | None,
                       allow_synthetic_ids: bool) -> None:
    """Apply records in one transaction. A RecordError rejects only its record (it wrote
    nothing); any other failure rolls the chunk back and it is retried one record per
    transaction, so one broken record cannot take its neighbours with it."""
    try:
        async with store.session(write=True) as s:
            counts, applied = Counts(), 0
            rejected: list[tuple[int, str]] = []
            later: list[tuple[int, dict]] = []
            for lineno, record in chunk:
                try:
                    counts.add(await apply_record_counted(
                        s, register, record, allow_synthetic_ids=allow_synthetic_ids))
                    applied += 1
                except MissingReference as err:
                    if deferred is None:
                        rejected.append((lineno, err.reason))
                    else:
                        later.append((lineno, record))
                except RecordError as err:
                    rejected.append((lineno, err.reason))
    except Exception as exc:
        if len(chunk) == 1:
            log.warning("register record failed: %s", type(exc).__name__)
            summary.rejected.append((chunk[0][0], f"could not be stored ({type(exc).__name__})"))
            return
        for one in chunk:
            await _apply_chunk(store, register, [one], summary, deferred, allow_synthetic_ids)
        return
    summary.counts.add(counts)
    summary.applied += applied
    summary.rejected += rejected
    if deferred is not None:
        deferred += later


async def import_file(store: ResourceStore, register: str, path: str | Path, *,
                      settings: Settings, progress: bool = True) -> ImportSummary:
    """Import a register's JSON Lines file: parse, check and apply every record.

    Records are applied CHUNK per transaction. A bad record is rejected with its line number
    and reason and the rest continue; a record naming something not yet stored (e.g. a child
    unit before its parent) is retried once after the whole file. Blank lines are skipped.
    Idempotent: importing the same file again changes nothing.
    """
    path = Path(path)
    summary = ImportSummary(register)
    allow = settings.allow_synthetic_ids
    deferred: list[tuple[int, dict]] = []
    chunk: list[tuple[int, dict]] = []
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, disable=not progress,
               desc=f"registry {register}")
    try:
        for lineno, line in _lines(path):
            bar.update(len(line))
            if not line.strip():
                continue
            summary.records += 1
            try:
                chunk.append((lineno, parse_record(register, line)))
            except RecordError as err:
                summary.rejected.append((lineno, err.reason))
            if len(chunk) >= CHUNK:
                await _apply_chunk(store, register, chunk, summary, deferred, allow)
                chunk = []
                if summary.records == CHUNK:
                    await _analyze(store)  # statistics once the tables hold something
        if chunk:
            await _apply_chunk(store, register, chunk, summary, deferred, allow)
        for start in range(0, len(deferred), CHUNK):
            await _apply_chunk(store, register, deferred[start:start + CHUNK], summary, None,
                               allow)
    finally:
        bar.close()
    await _analyze(store)
    summary.rejected.sort()
    return summary


async def _analyze(store: ResourceStore) -> None:
    async with store.session(write=True) as s:
        await s.analyze()
