"""Delayed release of results to the citizen: NORU while the delay of the report's category runs.

Some results should reach the citizen only after the clinician has had the chance to talk to
them (pathology, for instance). A category's results are stored with the Volven 9603 label NORU,
which the access policy hides from the citizen and parents (akson.access.policy), and with the
instant they may be released (extension RELEASE_AFTER_URL). `release_due` lifts the label once
that instant has passed; the server runs it periodically and `akson results release` on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from akson.access.gate import Gate, GuardedSession
from akson.access.principal import Principal
from akson.access.scopes import parse_scopes
from akson.fhir import jsonio
from akson.fhir import search as fhir_search
from akson.fhir.naming import RESTRICTION_CODE_SYSTEM
from akson.results import model

RELEASE_AFTER_URL: Final = "https://akson.no/fhir/StructureDefinition/release-to-citizen-after"
NORU: Final = {"system": RESTRICTION_CODE_SYSTEM, "code": "NORU"}
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_ITEM = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=\s*(\d+)\s*([dhms])\s*")


@dataclass(frozen=True)
class ReleasePolicy:
    """Seconds of delay per report category (Volven 8202 code); missing means none."""

    delays: dict[str, int]

    @classmethod
    def parse(cls, text: str) -> ReleasePolicy:
        """From `AKSON_RESULTS_RELEASE_DELAY`, e.g. "HIST=14d,CYTO=14d"; ValueError naming the
        part it cannot read."""
        delays: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            m = _ITEM.fullmatch(part)
            if m is None:
                raise ValueError(f"AKSON_RESULTS_RELEASE_DELAY: cannot read {part[:40]!r} "
                                 "(expected CATEGORY=<number><d|h|m|s>)")
            delays[m.group(1).upper()] = int(m.group(2)) * _UNITS[m.group(3)]
        return cls(delays)

    def release_after(self, category: str, received: datetime) -> datetime | None:
        """When results of `category` received at `received` may reach the citizen; None when
        at once."""
        delay = self.delays.get(category.upper(), 0)
        return received + timedelta(seconds=delay) if delay > 0 else None


def hold(resource: dict[str, Any], until: datetime) -> None:
    """Label `resource` NORU until `until` (in place)."""
    meta = resource.setdefault("meta", {})
    security = [s for s in meta.get("security") or [] if s.get("code") != "NORU"]
    meta["security"] = [*security, dict(NORU)]
    ext = [e for e in resource.get("extension") or [] if e.get("url") != RELEASE_AFTER_URL]
    resource["extension"] = [*ext, {"url": RELEASE_AFTER_URL,
                                    "valueDateTime": until.astimezone(UTC).isoformat()}]


def held(resource: dict[str, Any]) -> bool:
    return any(s.get("system") == NORU["system"] and s.get("code") == "NORU"
               for s in (resource.get("meta") or {}).get("security") or [])


def release_time(resource: dict[str, Any]) -> datetime | None:
    for e in resource.get("extension") or []:
        if e.get("url") == RELEASE_AFTER_URL and isinstance(e.get("valueDateTime"), str):
            return datetime.fromisoformat(e["valueDateTime"])
    return None


def released(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy of `resource` without NORU and without the release instant."""
    out = {k: v for k, v in resource.items() if k != "extension"}
    ext = [e for e in resource.get("extension") or [] if e.get("url") != RELEASE_AFTER_URL]
    if ext:
        out["extension"] = ext
    meta = dict(out.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    security = [s for s in meta.get("security") or [] if not (
        s.get("system") == NORU["system"] and s.get("code") == "NORU")]
    if security:
        meta["security"] = security
    else:
        meta.pop("security", None)
    out["meta"] = meta
    return out


async def release_due(g: GuardedSession, now: datetime, *, batch: int = 500) -> int:
    """Lift NORU from held results whose release instant has passed; returns how many were
    released. Runs in a write session of a system principal that reaches every record."""
    count = 0
    for res_type in sorted(model.SUBJECT_TYPES):
        query = fhir_search.parse(res_type, [
            ("_security", f"{NORU['system']}|NORU"),
            ("_tag", f"{model.ORIGIN_SYSTEM}|{model.ORIGIN_RESULTS}"),
            ("_count", str(batch))], registry=g.registry)
        while True:  # every page: held results not yet due must not hide due ones
            page = await g.search(query)
            for stored in page.items:
                doc = jsonio.loads(stored.content) if stored.content else {}
                until = release_time(doc)
                if until is not None and until <= now:
                    await g.update(res_type, stored.res_id, released(doc))
                    count += 1
            if page.next_cursor is None:
                break
            query.cursor = page.next_cursor
    return count


#: Who lifts NORU when a delay has run: the results service itself, as a local system client.
RELEASER = Principal(kind="system", issuer="akson:local", subject="akson-results-release",
                     client_id="akson-results-release", scopes=parse_scopes("system/*.*"))


async def release_now(gate: Gate, now: datetime) -> int:
    """One pass of `release_due` in its own write session."""
    async with gate.session(RELEASER, write=True) as g:
        g.writes_results = True
        return await release_due(g, now)
