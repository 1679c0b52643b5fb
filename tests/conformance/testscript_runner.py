"""Run FHIR R4 TestScript resources (JSON operations only) against a server through httpx."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.conformance.fhirpath_mini import FhirPathError, evaluate, to_text, values_equal

FHIR_JSON = "application/fhir+json"
MIME = {"json": FHIR_JSON, "xml": "application/fhir+xml", "ttl": "text/turtle"}
RESPONSE_CODES = {
    "okay": 200, "created": 201, "noContent": 204, "notModified": 304, "bad": 400,
    "forbidden": 403, "notFound": 404, "methodNotAllowed": 405, "conflict": 409, "gone": 410,
    "preconditionFailed": 412, "unprocessable": 422,
}  # fmt: skip
METHODS = {
    "read": "GET", "vread": "GET", "search": "GET", "history": "GET", "create": "POST",
    "update": "PUT", "delete": "DELETE", "transaction": "POST", "batch": "POST", "patch": "PATCH",
}  # fmt: skip
_VAR = re.compile(r"\$\{([^}]+)\}")


class ScriptError(RuntimeError):
    """The TestScript cannot be executed as written (unresolvable fixture, malformed action)."""


class Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """This action cannot run here; the message says why."""


@dataclass
class Exchange:
    """One HTTP request and its response, as the asserts see them."""

    method: str
    url: str
    request_headers: dict[str, str]
    status: int
    headers: httpx.Headers
    body: Any

    @property
    def resource_id(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("id"), str):
            return str(self.body["id"])
        location = self.headers.get("location", "")
        parts = urlsplit(location).path.split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        return parts[-1] if len(parts) > 1 else None


@dataclass
class Report:
    """What happened: asserts that passed, failed (or warned), and everything skipped, with why."""

    name: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skip_reasons: set[str] = field(default_factory=set)

    def skip(self, label: str, reason: str) -> None:
        self.skipped.append(f"{label}: {reason}")
        self.skip_reasons.add(reason)

    def lines(self) -> list[str]:
        out = [f"TestScript {self.name}: {len(self.passed)} passed, {len(self.failed)} failed, "
               f"{len(self.warnings)} warnings, {len(self.skipped)} skipped"]
        out += [f"  FAIL {m}" for m in self.failed]
        out += [f"  WARN {m}" for m in self.warnings]
        out += [f"  SKIP {m}" for m in self.skipped]
        return out


def resolve_fixture(ref: str, script_dir: Path, spec_examples: Path) -> Path:
    """The file a fixture reference names.

    `fixtures/...` paths resolve beside the TestScript, else beside its sibling folders (the MITRE
    engine shares one fixtures folder), else without the `fixtures/` prefix (where the MITRE
    Observation fixtures sit); `Type/id` names an R4 spec example. Remote URLs and references to
    resources the corpus does not hold are errors.
    """
    if ref.startswith(("http://", "https://")):
        raise ScriptError(f"fixture {ref} is a remote URL (no network in tests)")
    candidates = [script_dir / ref]
    if ref.startswith("fixtures/"):
        siblings = sorted(p for p in script_dir.parent.iterdir() if p.is_dir() and p != script_dir)
        candidates += [sibling / ref for sibling in siblings]
        candidates.append(script_dir / ref.removeprefix("fixtures/"))
    if re.fullmatch(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}", ref) and not ref.endswith(".json"):
        candidates.append(spec_examples / f"{ref.replace('/', '-')}.json")
    for path in candidates:
        if path.is_file():
            return path
    raise ScriptError(f"fixture {ref} is not in the corpus (tried {', '.join(map(str, candidates))})")


class TestScriptRunner:
    """Executes one TestScript: fixtures, variables, setup, tests, teardown, autodelete."""

    __test__ = False  # not a pytest class

    def __init__(self, client: httpx.Client, script_path: Path, spec_examples: Path) -> None:
        self.client = client
        self.script_path = script_path
        self.spec_examples = spec_examples
        self.script: dict[str, Any] = json.loads(script_path.read_text(encoding="utf-8"))
        self.report = Report(script_path.name)
        self.fixture_refs = {f.get("id", f"#{i}"): f for i, f in enumerate(self.script.get("fixture", []))}
        self.fixtures: dict[str, Any] = {}
        self.responses: dict[str, Exchange] = {}
        self.server_ids: dict[str, str] = {}  # fixture id → id on the server after create/update
        self.variables = {v["name"]: v for v in self.script.get("variable", [])}
        self.last: Exchange | None = None
        self.last_skipped: str | None = None

    # ------------------------------------------------------------------ driving

    def run(self) -> Report:
        created: list[tuple[str, str]] = []
        try:
            for fid, fx in self.fixture_refs.items():
                if fx.get("autocreate"):
                    created.append(self._autocreate(fid))
            self._actions("setup", self.script.get("setup", {}).get("action", []))
            for i, test in enumerate(self.script.get("test", [])):
                self._actions(f"test[{i}] {test.get('name', '')}".strip(), test.get("action", []))
        finally:
            self._actions("teardown", self.script.get("teardown", {}).get("action", []))
            for rtype, rid in created:
                if self.client.delete(f"/{rtype}/{rid}").status_code not in (200, 202, 204):
                    self.report.warnings.append(f"autodelete {rtype}/{rid} failed")
        return self.report

    def _autocreate(self, fid: str) -> tuple[str, str]:
        resource = self.fixture(fid)
        rtype = resource["resourceType"]
        resp = self.client.post(f"/{rtype}", json=resource, headers={"Content-Type": FHIR_JSON})
        if resp.status_code != 201:
            raise ScriptError(f"autocreate of fixture {fid} gave {resp.status_code}: {resp.text[:300]}")
        self.server_ids[fid] = resp.json()["id"]
        return rtype, self.server_ids[fid]

    def _actions(self, phase: str, actions: list[dict]) -> None:
        for n, action in enumerate(actions):
            where = f"{phase} action[{n}]"
            if "operation" in action:
                self._run_operation(where, action["operation"])
            elif "assert" in action:
                self._run_assert(where, action["assert"])

    # ------------------------------------------------------------------ fixtures and variables

    def fixture(self, fid: str) -> Any:
        if fid not in self.fixtures:
            ref = self.fixture_refs.get(fid, {}).get("resource", {}).get("reference")
            if ref is None:
                raise ScriptError(f"no fixture with id {fid}")
            path = resolve_fixture(ref, self.script_path.parent, self.spec_examples)
            self.fixtures[fid] = json.loads(path.read_text(encoding="utf-8"))
        return self.fixtures[fid]

    def source(self, sid: str | None) -> Any:
        """The body a sourceId names: a stored response, else a fixture; None → last response."""
        if sid is None:
            if self.last_skipped:
                raise Skip(self.last_skipped)
            if self.last is None:
                raise ScriptError("an assert with no sourceId before any operation")
            return self.last.body
        if sid in self.responses:
            return self.responses[sid].body
        if sid in self.fixture_refs:
            return self.fixture(sid)
        raise Skip(f"source {sid} is the response of an operation that did not run")

    def variable(self, name: str) -> str:
        var = self.variables.get(name)
        if var is None:
            raise ScriptError(f"undefined variable ${{{name}}}")
        sid = var.get("sourceId")
        if "headerField" in var:
            exchange = self.responses.get(sid or "") or self.last
            if exchange is None or (sid and sid not in self.responses):
                raise Skip(f"variable {name}: response {sid} does not exist (operation skipped)")
            return exchange.headers.get(var["headerField"], var.get("defaultValue", ""))
        expression = var.get("expression")
        if expression is None and "path" in var:
            if var["path"].startswith("fhir:") or "@" in var["path"]:
                raise Skip(f"variable {name}: XPath {var['path']!r} is not evaluated")
            expression = var["path"].replace("/", ".")  # `Patient/id` is the FHIRPath Patient.id
        if expression is not None:
            values = evaluate(expression, self.source(sid))
            if values:
                return to_text(values[0])
        if "defaultValue" in var:
            return str(var["defaultValue"])
        raise Skip(f"variable {name} needs the tester's input ({var.get('hint', 'no hint')})")

    def substitute(self, text: str) -> str:
        return _VAR.sub(lambda m: self.variable(m.group(1)), text)

    # ------------------------------------------------------------------ operations

    def _run_operation(self, where: str, op: dict) -> None:
        code = op.get("type", {}).get("code")
        label = f"{where} operation {code or op.get('method', '?')}"
        self.last, self.last_skipped = None, None
        try:
            exchange = self._send(code, op)
        except Skip as skip:
            self.last_skipped = f"its operation was skipped ({skip})"
            self.report.skip(label, str(skip))
            return
        self.last = exchange
        if op.get("responseId"):
            self.responses[op["responseId"]] = exchange
        sid = op.get("sourceId")
        created = code in ("create", "update") and 200 <= exchange.status < 300
        if created and sid in self.fixture_refs and exchange.resource_id:
            self.server_ids[sid] = exchange.resource_id

    def _send(self, code: str | None, op: dict) -> Exchange:
        for key in ("accept", "contentType"):
            if op.get(key) and op[key] not in ("json", FHIR_JSON, "application/json"):
                raise Skip(f"{key} {op[key]} (only JSON is exercised)")
        if code is None and not op.get("method"):
            raise ScriptError(f"operation without type or method: {op}")
        method = (op.get("method") or METHODS.get(code or "", "")).upper()
        if not method:
            raise Skip(f"operation type {code} is not supported by this runner")
        url = self._url(code, op)
        headers = {"Accept": FHIR_JSON}
        for h in op.get("requestHeader", []):
            headers[h["field"]] = self.substitute(h["value"])
        body = None
        if op.get("sourceId") and method in ("POST", "PUT", "PATCH"):
            body = json.dumps(self.source(op["sourceId"]))
            headers["Content-Type"] = MIME.get(op.get("contentType", "json"), FHIR_JSON)
            if code == "patch" and op.get("contentType") == "json-patch":
                headers["Content-Type"] = "application/json-patch+json"
        resp = self.client.request(method, url, content=body, headers=headers)
        try:
            parsed = resp.json() if resp.content else None
        except ValueError:
            parsed = None
        return Exchange(method, str(resp.request.url), headers, resp.status_code, resp.headers, parsed)

    def _url(self, code: str | None, op: dict) -> str:
        if op.get("url"):
            url = self.substitute(op["url"])
            if "{{" in url:
                raise ScriptError(f"url {url} holds a Postman-style placeholder, not a TestScript variable")
            base = str(self.client.base_url).rstrip("/")
            url = url.removeprefix(base)
            return url if url.startswith("/") else "/" + url
        rtype = op.get("resource")
        if op.get("params"):
            params = self.substitute(op["params"])
            return f"/{rtype}{params}" if rtype else params
        target = op.get("targetId")
        if target:
            resource = self.source(target)
            rtype = rtype or resource.get("resourceType")
            rid = self.server_ids.get(target) or resource.get("id")
            if code == "history":
                return f"/{rtype}/{rid}/_history"
            if code == "vread":
                return f"/{rtype}/{rid}/_history/{resource.get('meta', {}).get('versionId')}"
            return f"/{rtype}/{rid}"
        if code in ("transaction", "batch"):
            return "/"
        if code == "update" and op.get("sourceId"):
            resource = self.source(op["sourceId"])
            return f"/{resource['resourceType']}/{resource['id']}"
        if rtype is None and op.get("sourceId"):
            rtype = self.source(op["sourceId"]).get("resourceType")
        return f"/{rtype}/_history" if code == "history" else f"/{rtype}"

    # ------------------------------------------------------------------ asserts

    def _run_assert(self, where: str, spec: dict) -> None:
        label = f"{where} assert {spec.get('label') or _describe(spec)}"
        try:
            ok, detail = self._check(spec)
        except Skip as skip:
            self.report.skip(label, str(skip))
            return
        except FhirPathError as exc:
            ok, detail = False, f"FHIRPath error: {exc}"
        if ok:
            self.report.passed.append(label)
        elif spec.get("warningOnly"):
            self.report.warnings.append(f"{label}: {detail}")
        else:
            self.report.failed.append(f"{label}: {detail}")

    def _exchange(self, spec: dict) -> Exchange:
        sid = spec.get("sourceId")
        if sid:
            if sid in self.responses:
                return self.responses[sid]
            raise Skip(f"{sid} is not the response of an operation that ran")
        if self.last is None:
            raise Skip(self.last_skipped or "no operation has run")
        return self.last

    def _check(self, spec: dict) -> tuple[bool, str]:
        operator = spec.get("operator", "equals")
        for unsupported, why in (("validateProfileId", "profile validation is not run"),
                                 ("minimumId", "minimumId is not implemented"),
                                 ("path", "XPath asserts are not evaluated (JSON only)"),
                                 ("compareToSourcePath", "XPath asserts are not evaluated")):
            if unsupported in spec:
                raise Skip(why)
        if "response" in spec or "responseCode" in spec:
            status = self._exchange(spec).status
            want = str(RESPONSE_CODES[spec["response"]]) if "response" in spec else spec["responseCode"]
            ok = compare(str(status), operator, self.substitute(want))
            return ok, f"status {status}, wanted {operator} {want}"
        if "resource" in spec:
            body = self._exchange(spec).body
            got = body.get("resourceType") if isinstance(body, dict) else None
            return got == spec["resource"], f"resourceType {got}, wanted {spec['resource']}"
        if "contentType" in spec:
            want = MIME.get(spec["contentType"], spec["contentType"])
            if "xml" in want:
                raise Skip(f"contentType {want} (only JSON is exercised)")
            got = self._exchange(spec).headers.get("content-type", "")
            return got.split(";")[0].strip() == want, f"Content-Type {got!r}, wanted {want}"
        if "headerField" in spec:
            exchange = self._exchange(spec)
            if spec.get("direction") == "request":
                got = exchange.request_headers.get(spec["headerField"])
            else:
                got = exchange.headers.get(spec["headerField"])
            want = self.substitute(spec.get("value", ""))
            return compare(got, operator, want), f"{spec['headerField']}: {got!r} {operator} {want!r}"
        if "requestURL" in spec:
            url = self._exchange(spec).url
            return compare(url, operator, self.substitute(spec["requestURL"])), f"URL {url}"
        if "requestMethod" in spec:
            method = self._exchange(spec).method
            return compare(method.lower(), operator, spec["requestMethod"].lower()), f"method {method}"
        if spec.get("navigationLinks"):
            body = self._exchange(spec).body or {}
            links = {lk.get("relation"): lk.get("url") for lk in body.get("link", [])}
            return bool(links.get("self")) and all(links.values()), f"links {links}"
        if "expression" in spec or "compareToSourceId" in spec:
            return self._check_expression(spec, operator)
        raise Skip(f"assert kind not supported: {sorted(spec)}")

    def _check_expression(self, spec: dict, operator: str) -> tuple[bool, str]:
        # With compareToSourceExpression and no expression, the same expression applies to both.
        expression = spec.get("expression") or spec.get("compareToSourceExpression")
        if expression is None:
            raise Skip("compareToSourceId without an expression")
        sid = spec.get("sourceId")
        if sid is None and self.last_skipped:
            raise Skip(self.last_skipped)
        got = evaluate(self.substitute(expression), self.source(sid))
        if "compareToSourceId" in spec:
            other = evaluate(spec["compareToSourceExpression"], self.source(spec["compareToSourceId"]))
            same = len(got) == len(other) and all(values_equal(a, b) for a, b in zip(got, other, strict=True))
            ok = same if operator == "equals" else not same if operator == "notEquals" else None
            if ok is None:
                raise Skip(f"operator {operator} with compareToSourceId")
            return ok, f"{expression} = {got!r}, source gives {other!r}"
        if "value" not in spec and operator in ("equals", "notEquals"):
            ok = got == [True]
            return ok if operator == "equals" else not ok, f"{expression} = {got!r}"
        text = ",".join(to_text(v) for v in got) if got else None
        return compare(text, operator, self.substitute(spec.get("value", ""))), f"{expression} = {got!r}"


def compare(got: str | None, operator: str, want: str) -> bool:
    """Apply a TestScript assert operator to a string result."""
    if operator == "empty":
        return not got
    if operator == "notEmpty":
        return bool(got)
    if got is None:
        return operator in ("notEquals", "notIn", "notContains")
    if operator in ("greaterThan", "lessThan"):
        a, b = _number(got), _number(want)
        return a > b if operator == "greaterThan" else a < b
    return {
        "equals": got == want, "notEquals": got != want,
        "in": got in [w.strip() for w in want.split(",")],
        "notIn": got not in [w.strip() for w in want.split(",")],
        "contains": want in got, "notContains": want not in got,
    }.get(operator, False)  # fmt: skip


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise ScriptError(f"{text!r} is not a number") from exc


def _describe(spec: dict) -> str:
    keys = [k for k in spec if k not in ("warningOnly", "description", "direction", "label")]
    return ", ".join(f"{k}={spec[k]}" for k in keys)
