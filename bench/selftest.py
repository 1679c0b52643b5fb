"""Test-only in-memory stand-in FHIR server, plus an end-to-end self-test of the benchmark."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from loadgen import Connection, build_request, install_fast_loop
from synth import FNR_SYSTEM, PatientFactory, is_valid_fnr

JSON = "application/fhir+json"


class Store:
    """In-memory resources with the indexes the benchmark searches on."""

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_fnr: dict[str, str] = {}
        self.by_family: dict[str, list[str]] = {}

    def create(self, res: dict[str, Any]) -> dict[str, Any]:
        rtype = res["resourceType"]
        res = {**res, "id": uuid.uuid4().hex, "meta": {"versionId": "1"}}
        self.resources[(rtype, res["id"])] = res
        if rtype == "Patient":
            self.by_fnr[res["identifier"][0]["value"]] = res["id"]
            family = res["name"][0]["family"].lower()
            self.by_family.setdefault(family, []).append(res["id"])
        return res


def check_patient(res: dict[str, Any]) -> str | None:
    ident = [i for i in res.get("identifier", []) if i.get("system") == FNR_SYSTEM]
    if len(ident) != 1:
        return "Patient needs exactly one fødselsnummer identifier"
    fnr = ident[0]["value"]
    if not is_valid_fnr(fnr) or int(fnr[2:4]) <= 80:
        return f"invalid Tenor fødselsnummer {fnr}"
    y, m, d = res["birthDate"].split("-")
    if fnr[:6] != f"{d}{int(m) + 80}{y[2:]}":
        return f"fødselsnummer {fnr} does not match birthDate {res['birthDate']}"
    if (int(fnr[8]) % 2 == 0) != (res["gender"] == "female"):
        return f"fødselsnummer {fnr} sex digit does not match gender {res['gender']}"
    if fnr in STORE.by_fnr:
        return f"duplicate fødselsnummer {fnr}"
    if not res["name"][0].get("family") or not res.get("address"):
        return "Patient needs family name and address"
    return None


def check_observation(res: dict[str, Any]) -> str | None:
    coding = res["code"]["coding"][0]
    qty = res.get("valueQuantity", {})
    if (coding["system"], coding["code"]) != ("http://loinc.org", "8867-4"):
        return "expected LOINC 8867-4"
    if qty.get("system") != "http://unitsofmeasure.org" or qty.get("code") != "/min":
        return "expected UCUM /min"
    if "effectiveDateTime" not in res:
        return "missing effectiveDateTime"
    return None


STORE = Store()
COUNTER = itertools.count()


def outcome(status: int, text: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    issue = {"severity": "error", "code": "invalid", "diagnostics": text}
    return status, {"resourceType": "OperationOutcome", "issue": [issue]}, {}


def searchset(ids: list[str], total: int) -> dict[str, Any]:
    entries = [
        {"resource": STORE.resources[("Patient", i)], "search": {"mode": "match"}} for i in ids
    ]
    return {"resourceType": "Bundle", "type": "searchset", "total": total, "entry": entries}


def transaction(bundle: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    if bundle.get("type") != "transaction":
        return outcome(400, "expected a transaction Bundle")
    resolved: dict[str, str] = {}
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Patient" and (problem := check_patient(res)):
            return outcome(400, problem)
        resolved[entry["fullUrl"]] = f"{res['resourceType']}/{uuid.uuid4().hex}"
    out = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation":
            ref = res["subject"]["reference"]
            if ref not in resolved or not resolved[ref].startswith("Patient/"):
                return outcome(400, f"unresolvable subject {ref}")
            if problem := check_observation(res):
                return outcome(400, problem)
            res = {**res, "subject": {"reference": resolved[ref]}}
        stored = STORE.create(res)
        loc = f"{stored['resourceType']}/{stored['id']}/_history/1"
        out.append({"response": {"status": "201 Created", "location": loc}})
    return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": out}, {}


def route(method: str, target: str, body: bytes, host: str = "127.0.0.1"
          ) -> tuple[int, dict[str, Any], dict[str, str]]:
    url = urlsplit(target)
    parts = [p for p in url.path.split("/") if p]
    fail = os.environ.get("AKSON_STANDIN_FAIL", "")
    if parts == ["health"]:
        return 200, {"status": "ok"}, {}
    # The benchmark asks for a token as from Akson's built-in provider; the stand-in hands out
    # one it never checks: the harness is under test here, not authentication.
    if parts == ["auth", ".well-known", "openid-configuration"]:
        return 200, {"token_endpoint": f"http://{host}/auth/token"}, {}
    if method == "POST" and parts == ["auth", "token"]:
        return 200, {"access_token": "stand-in", "token_type": "Bearer", "expires_in": 3600}, {}
    if parts[:1] != ["fhir"]:
        return outcome(404, "not found")
    if method == "POST" and parts == ["fhir"]:
        return transaction(orjson.loads(body))
    if method == "POST" and parts == ["fhir", "Patient"]:
        res = orjson.loads(body)
        if problem := check_patient(res):
            return outcome(400, problem)
        stored = STORE.create(res)
        return 201, stored, {"Location": f"/fhir/Patient/{stored['id']}/_history/1"}
    if method == "GET" and parts[:2] == ["fhir", "Patient"] and len(parts) == 3:
        res = STORE.resources.get(("Patient", parts[2]))
        if fail == "read" or res is None:
            return outcome(404 if res is None else 500, f"no Patient/{parts[2]}")
        return 200, res, {}
    if method == "GET" and parts == ["fhir", "Patient"]:
        query = parse_qs(url.query)
        if "identifier" in query:
            system, _, value = unquote(query["identifier"][0]).partition("|")
            pid = STORE.by_fnr.get(value) if system == FNR_SYSTEM else None
            return 200, searchset([pid] if pid else [], 1 if pid else 0), {}
        if "family" in query:
            prefix = query["family"][0].lower()
            count = int(query.get("_count", ["20"])[0])
            ids = [i for f, v in STORE.by_family.items() if f.startswith(prefix) for i in v]
            return 200, searchset(ids[:count], len(ids)), {}
    return outcome(400, f"unsupported {method} {target}")


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {
                k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, payload, extra = route(method, target, body, headers.get("host", ""))
            data = orjson.dumps(payload)
            n = next(COUNTER)
            lines = [f"HTTP/1.1 {status} X", f"Content-Type: {JSON}"]
            lines += [f"{k}: {v}" for k, v in extra.items()]
            close = n % 500 == 499  # exercise the client's reconnect path
            if close:
                lines.append("Connection: close")
            if "?" in target:  # searches go out chunked to exercise that path
                half = len(data) // 2
                chunks = b"".join(
                    b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:half], data[half:]) if c
                )
                lines.append("Transfer-Encoding: chunked")
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + chunks + b"0\r\n\r\n")
            else:
                lines.append(f"Content-Length: {len(data)}")
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
            if close:
                await writer.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def serve(host: str, port: int, workers: int) -> None:
    """Serve in one process; idle children stand in for extra workers (RSS tree test)."""
    for _ in range(workers - 1):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])

    async def main() -> None:
        server = await asyncio.start_server(handle, host, port)
        async with server:
            await server.serve_forever()

    install_fast_loop()
    asyncio.run(main())


def upgrade() -> None:
    """Stand-in for `akson db upgrade`: prove the benchmark's database exists."""
    url = os.environ["AKSON_DATABASE_URL"]
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            conn.execute("SELECT 1")
    else:
        Path(url.removeprefix("sqlite:///")).touch()


# --- self-test -----------------------------------------------------------------------------


async def _chunked_client_check() -> None:
    """The raw client parses chunked and Content-Length responses and reconnects on close."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = Connection("127.0.0.1", port)
    host = f"127.0.0.1:{port}"
    patient = PatientFactory(7).patient()
    created = await conn.send(build_request("POST", "/fhir/Patient", host, orjson.dumps(patient)))
    assert created.status == 201, created.body
    fnr = patient["identifier"][0]["value"]
    for _ in range(600):  # crosses a server-initiated Connection: close
        found = await conn.send(build_request("GET", f"/fhir/Patient?identifier=x|{fnr}", host))
        assert found.status == 200 and found.headers["transfer-encoding"] == "chunked"
        assert orjson.loads(found.body)["resourceType"] == "Bundle"
    assert conn.reconnects >= 2, conn.reconnects
    await conn.close()
    server.close()


def _pg_has_bench_db() -> bool:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres") as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'akson_bench'")
        return bool(row.fetchone()[0])  # type: ignore[index]


def selftest() -> int:
    import http_bench

    asyncio.run(_chunked_client_check())
    print("raw client: chunked + Content-Length + reconnect OK")
    cmd = f"{sys.executable} {Path(__file__).resolve()}"
    common = ["--server-cmd", cmd, "--warmup", "0.3", "--workers", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rc = http_bench.main(
            ["--db", "both", "--duration", "1.5", "--calibrate", "1", "--results-dir", tmp, *common]
        )
        assert rc == 0, f"benchmark exited {rc}"
        files = sorted(out.glob("*.json"))
        assert [f.name.split("-")[0] for f in files] == ["postgres", "sqlite"], files
        for f in files:
            result = orjson.loads(f.read_bytes())
            assert result["ok"] and len(result["phases"]) == 6, result
            assert all(p["requests"] > 0 and p["errors"] == 0 for p in result["phases"])
            assert result["server_peak_rss_mb"] > result["phases"][0]["peak_rss_mb"] / 2
        assert not _pg_has_bench_db(), "akson_bench was not dropped"
        rc = http_bench.main(
            [
                "--db",
                "sqlite",
                "--requests",
                "300",
                "--calibrate",
                "0",
                "--results-dir",
                tmp,
                *common,
            ]
        )
        assert rc == 0
        fixed = orjson.loads(max(out.glob("sqlite-*.json"), key=os.path.getmtime).read_bytes())
        assert all(p["requests"] == 300 for p in fixed["phases"]), fixed["phases"]
        os.environ["AKSON_STANDIN_FAIL"] = "read"
        try:
            rc = http_bench.main(
                [
                    "--db",
                    "sqlite",
                    "--duration",
                    "0.5",
                    "--calibrate",
                    "0",
                    "--results-dir",
                    tmp,
                    *common,
                ]
            )
        finally:
            del os.environ["AKSON_STANDIN_FAIL"]
        assert rc == 1, "injected read errors must fail the benchmark"
    print("\nSELFTEST PASSED (expected 'FAILED' above comes from the injected-error run)")
    return 0


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd")
    db = sub.add_parser("db")
    db.add_argument("action", choices=["upgrade"])
    srv = sub.add_parser("serve")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if args.cmd == "db":
        upgrade()
    elif args.cmd == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            serve(args.host, args.port, args.workers)
    else:
        return selftest()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
