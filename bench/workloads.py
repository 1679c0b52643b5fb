"""Request generators and response checks for each benchmark phase."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from loadgen import Response, build_request
from synth import FNR_SYSTEM, PatientFactory

CHECK_EVERY = 50  # parse and verify one response body in this many (keeps the client light)


@dataclass
class Dataset:
    """Patients the server has confirmed as created."""

    ids: list[str] = field(default_factory=list)
    fnrs: list[str] = field(default_factory=list)
    families: dict[str, int] = field(default_factory=dict)

    def add(self, pid: str, fnr: str, family: str) -> None:
        self.ids.append(pid)
        self.fnrs.append(fnr)
        self.families[family] = self.families.get(family, 0) + 1


def _id_from_location(location: str, rtype: str) -> str | None:
    marker = f"/{rtype}/"
    location = "/" + location
    pos = location.find(marker)
    if pos < 0:
        return None
    return location[pos + len(marker) :].split("/", 1)[0] or None


def _patients_in(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == "Patient"
        and e.get("search", {}).get("mode", "match") == "match"
    ]


class _Base:
    def __init__(self, host: str, data: Dataset, seed: int) -> None:
        self.host = host
        self.data = data
        self.rng = random.Random(seed)
        self.n = 0

    def _sample(self) -> bool:
        self.n += 1
        return self.n % CHECK_EVERY == 1


class CreatePatients(_Base):
    """POST /fhir/Patient with fresh synthetic Patients; records id, fnr and family."""

    def __init__(self, host: str, data: Dataset, factory: PatientFactory, pregen: int) -> None:
        super().__init__(host, data, 1)
        self.factory = factory
        self.pool: deque[tuple[bytes, tuple[str, str]]] = deque(self._make() for _ in range(pregen))

    def _make(self) -> tuple[bytes, tuple[str, str]]:
        patient = self.factory.patient()
        raw = build_request("POST", "/fhir/Patient", self.host, orjson.dumps(patient))
        return raw, (patient["identifier"][0]["value"], patient["name"][0]["family"])

    def next_request(self) -> tuple[bytes, Any]:
        return self.pool.popleft() if self.pool else self._make()

    def on_response(self, ctx: tuple[str, str], resp: Response) -> str | None:
        if resp.status != 201:
            return f"create returned {resp.status}, expected 201"
        pid = _id_from_location(resp.headers.get("location", ""), "Patient")
        if pid is None:
            try:
                pid = orjson.loads(resp.body).get("id")
            except orjson.JSONDecodeError:
                pid = None
            if not pid:
                return "create: no id in Location header or body"
        self.data.add(pid, *ctx)
        return None


class ReadPatients(_Base):
    """GET /fhir/Patient/<id> for random created ids."""

    def next_request(self) -> tuple[bytes, Any]:
        pid = self.rng.choice(self.data.ids)
        return build_request("GET", f"/fhir/Patient/{pid}", self.host), pid

    def on_response(self, ctx: str, resp: Response) -> str | None:
        if self._sample():
            body = orjson.loads(resp.body)
            if body.get("resourceType") != "Patient" or body.get("id") != ctx:
                return f"read {ctx}: got {body.get('resourceType')}/{body.get('id')}"
        return None


class SearchIdentifier(_Base):
    """GET /fhir/Patient?identifier=<fnr system>|<fnr> for existing fødselsnummer."""

    def next_request(self) -> tuple[bytes, Any]:
        i = self.rng.randrange(len(self.data.fnrs))
        token = quote(f"{FNR_SYSTEM}|{self.data.fnrs[i]}", safe=":")
        return build_request("GET", f"/fhir/Patient?identifier={token}", self.host), i

    def on_response(self, ctx: int, resp: Response) -> str | None:
        if self._sample():
            found = _patients_in(orjson.loads(resp.body))
            want = self.data.ids[ctx]
            if [p.get("id") for p in found] != [want]:
                return f"identifier {self.data.fnrs[ctx]}: expected [{want}], got {len(found)} hits"
        return None


class SearchFamily(_Base):
    """GET /fhir/Patient?family=<surname>&_count=10 for surnames that exist."""

    def __init__(self, host: str, data: Dataset, seed: int) -> None:
        super().__init__(host, data, seed)
        self.names = sorted(data.families)

    def next_request(self) -> tuple[bytes, Any]:
        name = self.rng.choice(self.names)
        path = f"/fhir/Patient?family={quote(name)}&_count=10"
        return build_request("GET", path, self.host), name

    def on_response(self, ctx: str, resp: Response) -> str | None:
        if self._sample():
            found = _patients_in(orjson.loads(resp.body))
            if not 1 <= len(found) <= 10:
                return f"family {ctx}: {len(found)} hits on page (expected 1..10)"
        return None


class Transactions(_Base):
    """POST /fhir transaction Bundles of N Patients + N Observations linked by urn:uuid."""

    def __init__(self, host: str, data: Dataset, factory: PatientFactory, patients: int) -> None:
        super().__init__(host, data, 2)
        self.factory = factory
        self.patients = patients

    def next_request(self) -> tuple[bytes, Any]:
        body = orjson.dumps(self.factory.transaction(self.patients))
        return build_request("POST", "/fhir", self.host, body), None

    def on_response(self, ctx: None, resp: Response) -> str | None:
        if not self._sample():
            return None
        body = orjson.loads(resp.body)
        entries = body.get("entry", [])
        if body.get("type") != "transaction-response" or len(entries) != 2 * self.patients:
            return f"transaction: type={body.get('type')} entries={len(entries)}"
        statuses = [str(e.get("response", {}).get("status", "")) for e in entries]
        bad = [s for s in statuses if not s.startswith("201")]
        if bad:
            return f"transaction: {len(bad)} entries without 201 status, e.g. {bad[0]}"
        return None
