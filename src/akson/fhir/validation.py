"""Structural validation of FHIR R4 resources: JSON schema, ids, references, Norwegian person ids.

https://hl7.org/fhir/R4/validation.html — this is the "structure" level of validation (the R4 JSON
schema, https://hl7.org/fhir/R4/json.html#schema) plus a few cheap rules the schema cannot
express: reference syntax (https://hl7.org/fhir/R4/references.html#literal) and the form and check
digits of Norwegian identifiers: FNR / D-nummer, felles hjelpenummer, HPR-nr, orgnr, HER-id
(DOMAIN.md §1). Profiles, invariants and terminology are not checked here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from importlib import resources
from itertools import chain, islice
from typing import Any

import jsonschema_rs
import orjson

from akson.fhir import jsonio
from akson.fhir.identifiers import (
    classify_person_id,
    fhn_is_valid,
    fnr_is_valid,
    her_id_is_valid,
    hpr_is_valid,
    orgnr_is_valid,
)
from akson.fhir.naming import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    FNR_SYSTEM_URL,
    HER_ID_SYSTEM,
    HPR_SYSTEM,
    ORGNR_SYSTEM,
)
from akson.fhir.outcome import Issue

__all__ = ["FNR_SYSTEMS", "MAX_DEPTH", "MAX_ISSUES", "RESOURCE_TYPES", "to_fhirpath", "validate"]

#: Nesting limit (JSON objects + arrays), which is orjson's serialisation limit (see
#: `_not_plain_json`). The schema engine recurses natively and crashes the process on very deep
#: input, so deeper resources are refused before it sees them.
MAX_DEPTH = 254
#: Schema and rule errors reported per resource; further errors are summarised in one issue.
MAX_ISSUES = 20

_SCHEMA_URI = "http://hl7.org/fhir/json-schema/4.0"
_DEF_PREFIX = "#/definitions/"

FNR_SYSTEMS: dict[str, str] = {
    FNR_SYSTEM: "Fødselsnummer",
    FNR_SYSTEM_URL: "Fødselsnummer",
    DNR_SYSTEM: "D-nummer",
}

_FNR_CHECK = (fnr_is_valid, 11, "is not 11 digits", "has an invalid check digit or birth date")
_NUMBER_SHAPE = "is not a number of 1-9 digits without leading zeros"
#: Identifier systems whose values are checked: system → (name, is_valid, digit count or None,
#: problem when not that many ASCII digits, problem when the digits are wrong).
_ID_CHECKS: dict[str, tuple[str, Callable[[str], bool], int | None, str, str]] = {
    **{system: (name, *_FNR_CHECK) for system, name in FNR_SYSTEMS.items()},
    FHN_SYSTEM: (
        "Felles hjelpenummer",
        fhn_is_valid,
        11,
        "is not 11 digits",
        "does not start with 8 or 9 or has an invalid check digit",
    ),
    HPR_SYSTEM: ("HPR-nummer", hpr_is_valid, None, _NUMBER_SHAPE, _NUMBER_SHAPE),
    ORGNR_SYSTEM: (
        "Organisasjonsnummer",
        orgnr_is_valid,
        9,
        "is not 9 digits",
        "has an invalid check digit",
    ),
    HER_ID_SYSTEM: ("HER-id", her_id_is_valid, None, _NUMBER_SHAPE, _NUMBER_SHAPE),
}

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")
# https://hl7.org/fhir/R4/references.html#regex, split so each part can be judged separately.
_RELATIVE_REF = re.compile(r"([A-Za-z]+)/([^/?#]*)(?:/_history/([^/?#]*))?")
_CONDITIONAL_REF = re.compile(r"([A-Za-z]+)\?\S+")
_LOCAL_REF = re.compile(r"#[A-Za-z0-9\-.]{0,64}")
_ABSOLUTE_REF = re.compile(r"https?://[^\s/?#]+[^\s]*")
_UUID_REF = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_OID_REF = re.compile(r"urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+")
_FHIRPATH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

PathPart = str | int


@cache
def _schema() -> dict[str, Any]:
    """The packaged R4 JSON schema (see akson/fhir/data/NOTICE.md), parsed once."""
    raw = resources.files("akson.fhir.data").joinpath("fhir.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(raw)
    return schema


RESOURCE_TYPES: frozenset[str] = frozenset(_schema()["discriminator"]["mapping"])


def _target(prop: dict[str, Any]) -> str | None:
    """Definition name a property schema points at (directly or as array items), if any."""
    ref = prop.get("$ref") or (prop.get("items") or {}).get("$ref")
    return ref[len(_DEF_PREFIX) :] if isinstance(ref, str) and ref.startswith(_DEF_PREFIX) else None


# FHIR's primitive regexes are XML Schema regexes, where \s is only space, tab, CR and LF
# (https://hl7.org/fhir/R4/datatypes.html#primitive). The JSON schema runs them as Unicode regexes,
# where \s also covers U+00A0 and other spaces — which would refuse ordinary text such as a
# no-break space pasted from a word processor. These rewrites restore the XML Schema meaning.
_XSD_WS = " \\t\\n\\r"
_XSD_WHITESPACE_PATTERNS: dict[str, tuple[str, str]] = {
    "string": ("^[ \\r\\n\\t\\S]+$", "^[\\s\\S]+$"),
    "markdown": ("^[ \\r\\n\\t\\S]+$", "^[\\s\\S]+$"),
    "code": ("^[^\\s]+(\\s[^\\s]+)*$", f"^[^{_XSD_WS}]+([{_XSD_WS}][^{_XSD_WS}]+)*$"),
    "uri": ("^\\S*$", f"^[^{_XSD_WS}]*$"),
    "url": ("^\\S*$", f"^[^{_XSD_WS}]*$"),
    "canonical": ("^\\S*$", f"^[^{_XSD_WS}]*$"),
}


# R4 integers are 32-bit whole numbers (datatypes.html#integer), but the schema says only "number"
# with a pattern (patterns do not apply to numbers): both the named types and the choice-type
# properties that inline the pattern (e.g. Patient.multipleBirthInteger) get real bounds.
_INTEGER_PATTERNS = {
    "integer": "^-?([0]|([1-9][0-9]*))$",
    "positiveInt": "^[1-9][0-9]*$",
    "unsignedInt": "^[0]|([1-9][0-9]*)$",
}
_INLINE_INTEGERS: dict[str, dict[str, Any]] = {
    pattern: {"type": "integer", "minimum": low, "maximum": 2**31 - 1}
    for pattern, low in zip(_INTEGER_PATTERNS.values(), (-(2**31), 1, 0), strict=True)
}


@cache
def _registry() -> jsonschema_rs.Registry:
    """The schema's definitions as a registry every per-type validator compiles against.

    `ResourceList` (contained, Bundle.entry.resource, Parameters.parameter.resource) is a oneOf
    over 146 types: slow, and its failure reports nothing useful. It is replaced by a check of
    `resourceType` alone; each embedded resource is then validated with its own type's validator
    (see `_embedded`). Descriptions are dropped: they are a third of the schema and unused.
    """
    defs: dict[str, Any] = {}
    for name, definition in _schema()["definitions"].items():
        d = {k: v for k, v in definition.items() if k != "description"}
        if "properties" in d:
            d["properties"] = {
                p: _INLINE_INTEGERS.get(s.get("pattern", ""))
                if s.get("type") == "number" and s.get("pattern") in _INLINE_INTEGERS
                else {k: v for k, v in s.items() if k != "description"}
                for p, s in d["properties"].items()
            }
        defs[name] = d
    for prim, (original, xsd) in _XSD_WHITESPACE_PATTERNS.items():
        # Fail loudly if a different schema file is ever packaged: the rewrite must stay exact.
        if defs[prim].get("pattern") != original:
            raise RuntimeError(f"unexpected R4 schema pattern for {prim}")
        defs[prim]["pattern"] = xsd
    for prim, pattern in _INTEGER_PATTERNS.items():
        defs[prim] = _INLINE_INTEGERS[pattern]
    defs["ResourceList"] = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"enum": sorted(RESOURCE_TYPES)}},
    }
    root = {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "id": _SCHEMA_URI,
        "definitions": defs,
    }
    return jsonschema_rs.Registry([(_SCHEMA_URI, root)])


_validators: dict[str, Any] = {}
_validators_lock = threading.Lock()


def _validator(resource_type: str) -> Any:
    """The compiled validator for one resource type (compiled on first use, ~5 ms, then cached)."""
    v = _validators.get(resource_type)
    if v is None:
        with _validators_lock:
            v = _validators.get(resource_type)
            if v is None:
                v = jsonschema_rs.Draft6Validator(
                    {"$ref": f"{_SCHEMA_URI}{_DEF_PREFIX}{resource_type}"}, registry=_registry()
                )
                _validators[resource_type] = v
    return v


@cache
def _elements() -> dict[str, dict[str, str]]:
    """For each complex type: element name → type name, for elements that are not primitives."""
    definitions = _schema()["definitions"]
    out: dict[str, dict[str, str]] = {}
    for name, definition in definitions.items():
        props: dict[str, str] = {}
        for prop, s in definition.get("properties", {}).items():
            target = _target(s)
            if target == "ResourceList" or (target and "properties" in definitions.get(target, {})):
                props[prop] = target
        out[name] = props
    return out


_EXTENSION_KEYS = frozenset({"extension", "modifierExtension"})


@cache
def _judged_elements() -> dict[str, dict[str, str]]:
    """`_elements` without the elements whose types can hold a Reference, an Identifier or a
    resource only inside an extension: all the walker need visit in a resource without
    extensions (a Coding, a Quantity, a Period then hold nothing it judges)."""
    elements = _elements()
    reach = {"Reference", "Identifier", "ResourceList"}
    grew = True
    while grew:  # a fixpoint: types are recursive (Questionnaire.item, Extension)
        grew = False
        for name, props in elements.items():
            if name not in reach and any(t in reach for k, t in props.items()
                                         if k not in _EXTENSION_KEYS):
                reach.add(name)
                grew = True
    return {name: {k: t for k, t in props.items() if t in reach and k not in _EXTENSION_KEYS}
            for name, props in elements.items()}


def to_fhirpath(resource_type: str, parts: Sequence[PathPart]) -> str:
    """FHIRPath for a JSON location, e.g. ('name', 0, '_given', 1) → Patient.name[0].given[1].

    `_x` (a primitive's id/extensions) is the same element as `x` in FHIRPath; names that are not
    FHIRPath identifiers are quoted with backticks.
    """
    out = [resource_type]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
            continue
        name = part[1:] if part.startswith("_") and len(part) > 1 else part
        if not _FHIRPATH_NAME.fullmatch(name):
            name = "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
        out.append("." + name)
    return "".join(out)


def validate(
    resource: object, *, expected_type: str | None = None, allow_synthetic_ids: bool = True
) -> list[Issue]:
    """Validate a parsed JSON resource against the R4 structure rules; [] means valid.

    Checks, in order: a JSON object with a known R4 `resourceType` (equal to `expected_type` when
    given — on mismatch nothing else is checked), nesting at most MAX_DEPTH, the R4 JSON schema
    (contained and Bundle/Parameters resources against their own type), reference syntax and
    Norwegian identifier values (FNR/D-nummer, FHN, HPR-nr, orgnr, HER-id). Each issue names the
    element with a FHIRPath `expression`; diagnostics never repeat element values, which may be
    personal data. At most MAX_ISSUES errors are reported, followed by one informational issue
    when more were cut.
    """
    if not isinstance(resource, dict):
        return [Issue("The body is not a JSON object holding a FHIR resource", "structure")]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return [
            Issue(
                "Missing resourceType (a string naming an R4 resource type)",
                "invalid",
                "error",
                ("resourceType",),
            )
        ]
    if rtype not in RESOURCE_TYPES:
        return [
            Issue(
                f"Unknown resource type {_show_type(rtype)}", "invalid", "error", ("resourceType",)
            )
        ]
    if expected_type is not None and rtype != expected_type:
        return [
            Issue(
                f"Resource type {rtype} does not match the expected type "
                f"{_show_type(expected_type)}",
                "invalid",
                "error",
                ("resourceType",),
            )
        ]
    problem, text = _not_plain_json(resource)
    if problem and _has_exact_decimals(resource):
        # Decimals that keep their digits (jsonio.ExactDecimal) are floats to the schema: validate
        # a plain copy. Rare (only bodies whose decimals would not survive a float round trip).
        resource = dict(orjson.loads(jsonio.dumps(resource)))
        problem, text = _not_plain_json(resource)
    if problem:
        return [Issue(f"{rtype} {problem}", "too-costly" if "deep" in problem else "structure")]
    try:
        # Without an extension anywhere (no key ending in "xtension"), the walker can skip
        # elements whose types hold a Reference or Identifier only inside extensions.
        return _validate(resource, rtype, allow_synthetic_ids, b'xtension"' not in text)
    except RecursionError:
        # Unreachable given the depth guard; kept so bad input can never become a 500.
        return [Issue(f"{rtype} is nested too deeply to validate", "too-costly")]


def _show_type(name: str) -> str:
    """Quote a type name for diagnostics, only if it looks like one (never echo arbitrary text)."""
    return f"'{name}'" if _TYPE_NAME.fullmatch(name) else "(not a resource type name)"


def _has_exact_decimals(value: object) -> bool:
    try:
        jsonio.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return False
    return True


def _not_plain_json(value: object) -> tuple[str | None, bytes]:
    """Why `value` cannot be validated (too deep, not JSON), or None — in one C-speed pass —
    and its JSON text when it can.

    orjson refuses nesting beyond MAX_DEPTH, cycles, non-string keys, sets, bytes and integers
    beyond 64 bits. This must run first: the schema engine recurses natively and would crash
    the process (not raise) on input a few thousand levels deep.
    """
    try:
        return None, orjson.dumps(value)
    except orjson.JSONEncodeError as e:
        if "Recursion" in str(e):
            return f"is nested more than {MAX_DEPTH} levels deep", b""
        return "holds a value that is not plain JSON (or an integer beyond 64 bits)", b""


def _validate(resource: dict[str, Any], rtype: str, allow_synthetic: bool = True,
              no_extensions: bool = False) -> list[Issue]:
    transaction = rtype == "Bundle" and resource.get("type") in ("transaction", "batch")
    walker = _Walker(rtype, transaction, allow_synthetic, no_extensions)
    walker.visit(resource, rtype)
    rule_issues, embedded = walker.issues, walker.embedded
    schema_issues = chain.from_iterable(
        _schema_issues(node, node_type, rtype, path)
        for node, node_type, path in [(resource, rtype, ()), *embedded]
    )
    # Errors are produced lazily: stop asking once one more than the limit is known.
    issues = list(islice(chain(schema_issues, rule_issues), MAX_ISSUES + 1))
    if len(issues) > MAX_ISSUES:
        del issues[MAX_ISSUES:]
        issues.append(
            Issue(
                f"Further issues were not reported (limit {MAX_ISSUES})",
                "informational",
                "information",
            )
        )
    return issues


class _Walker:
    """Type-directed walk: checks references and person ids, collects embedded resources.

    Element types come from the schema, so only real Reference.reference and Identifier elements
    are judged (other elements named `reference` are uris). Unknown elements are skipped — the
    schema reports them. Recursive in document order; depth is bounded by `_not_plain_json`.
    `path` is one shared list (pushed and popped) because tuples per node cost more than the
    checks themselves.
    """

    def __init__(self, rtype: str, transaction: bool, allow_synthetic: bool = True,
                 no_extensions: bool = False) -> None:
        self.rtype = rtype
        self.transaction = transaction
        self.allow_synthetic = allow_synthetic
        self.elements = _judged_elements() if no_extensions else _elements()
        self.issues: list[Issue] = []
        self.embedded: list[tuple[dict[str, Any], str, tuple[PathPart, ...]]] = []
        self.path: list[PathPart] = []

    def visit(self, node: dict[str, Any], tname: str) -> None:
        if tname == "Reference":
            _check_reference(node, self.rtype, self.path, self.transaction, self.issues)
        elif tname == "Identifier":
            _check_identifier(node, self.rtype, self.path, self.issues, self.allow_synthetic)
        props = self.elements.get(tname)
        if not props:
            return
        path = self.path
        for key, value in node.items():
            target = props.get(key)
            if target is None:
                continue
            path.append(key)
            if type(value) is list:
                for i, item in enumerate(value):
                    if type(item) is dict:
                        path.append(i)
                        self.child(item, target)
                        path.pop()
            elif type(value) is dict:
                self.child(value, target)
            path.pop()

    def child(self, item: dict[str, Any], target: str) -> None:
        if target == "ResourceList":
            inner = item.get("resourceType")
            if not isinstance(inner, str) or inner not in RESOURCE_TYPES:
                return  # reported by the schema (ResourceList checks resourceType)
            self.embedded.append((item, inner, tuple(self.path)))
            target = inner
        self.visit(item, target)


def _check_reference(
    node: dict[str, Any],
    rtype: str,
    path: Sequence[PathPart],
    transaction: bool,
    issues: list[Issue],
) -> None:
    ref = node.get("reference")
    if not isinstance(ref, str):
        return  # absent, or a type error the schema reports
    problem = _reference_problem(ref, transaction)
    if problem:
        expr = to_fhirpath(rtype, (*path, "reference"))
        issues.append(Issue(f"{expr} {problem}", "value", "error", (expr,)))


def _reference_problem(ref: str, transaction: bool) -> str | None:
    """Why `ref` is not a literal reference (https://hl7.org/fhir/R4/references.html), or None."""
    m = _RELATIVE_REF.fullmatch(ref)
    if m:
        rtype, rid, vid = m.groups()
        if rtype not in RESOURCE_TYPES:
            return f"names {_show_type(rtype)}, which is not an R4 resource type"
        if not _ID.fullmatch(rid):
            return "has an invalid id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')"
        if vid is not None and not _ID.fullmatch(vid):
            return "has an invalid version id in its _history part"
        return None
    if (
        _LOCAL_REF.fullmatch(ref)
        or _ABSOLUTE_REF.fullmatch(ref)
        or _UUID_REF.fullmatch(ref)
        or _OID_REF.fullmatch(ref)
    ):
        return None
    m = _CONDITIONAL_REF.fullmatch(ref)
    if m and transaction and m.group(1) in RESOURCE_TYPES:
        # A conditional reference, resolved by transaction processing (R4 http.html#trules).
        return None
    return (
        "is not a valid reference (expected '#id', 'Type/id', 'Type/id/_history/vid', "
        "an absolute http(s) URL, 'urn:uuid:<uuid>' or 'urn:oid:<oid>')"
    )


def _check_identifier(
    node: dict[str, Any],
    rtype: str,
    path: Sequence[PathPart],
    issues: list[Issue],
    allow_synthetic: bool = True,
) -> None:
    system, value = node.get("system"), node.get("value")
    check = _ID_CHECKS.get(system) if isinstance(system, str) else None
    if check is None or not isinstance(value, str):
        return
    kind, is_valid, length, shape_problem, digits_problem = check
    if is_valid(value):
        if not allow_synthetic and system in FNR_SYSTEMS:
            person = classify_person_id(value)
            if person is not None and person.synthetic:
                where = to_fhirpath(rtype, path)
                issues.append(Issue(f"{kind} in {where} is a synthetic test number, refused in "
                                    "production", "value", "error", (f"{where}.value",)))
        return
    where = to_fhirpath(rtype, path)
    if len(value) != length or not value.isascii() or not value.isdigit():
        problem = shape_problem
    else:
        problem = digits_problem
    # The value is personal data: name where it is, never what it is.
    issues.append(Issue(f"{kind} in {where} {problem}", "value", "error", (f"{where}.value",)))


def _schema_issues(
    node: dict[str, Any], node_type: str, rtype: str, base: tuple[PathPart, ...]
) -> Iterator[Issue]:
    validator = _validator(node_type)
    if validator.is_valid(node):  # most are: 5 µs against 8 µs for collecting no errors
        return
    for err in validator.iter_errors(node):
        yield from _to_issues(err, rtype, (*base, *err.instance_path), node)


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else "not JSON"


def _to_issues(err: Any, rtype: str, path: tuple[PathPart, ...], root: object) -> Iterator[Issue]:
    """Turn one jsonschema_rs error into issues with our own wording (theirs echo values)."""
    kind = err.kind
    name = kind.name
    expr = to_fhirpath(rtype, path)
    if name == "additionalProperties":
        for key in kind.unexpected:
            e = to_fhirpath(rtype, (*path, key))
            yield Issue(f"Unknown element '{_clip(key)}' in {expr}", "structure", "error", (e,))
        return
    if name == "required":
        e = to_fhirpath(rtype, (*path, kind.property))
        yield Issue(
            f"Missing required element '{kind.property}' in {expr}", "required", "error", (e,)
        )
        return
    if name == "type":
        wanted = " or ".join(kind.types)
        found = _json_type(err.instance)
        yield Issue(
            f"{expr} must be {_article(wanted)}, not {found}", "structure", "error", (expr,)
        )
        return
    if name == "pattern":
        schema_path = list(err.schema_path)
        prim = str(schema_path[-2]) if len(schema_path) >= 2 else "value"
        if _schema()["definitions"].get(prim, {}).get("type", "string") != "string":
            return  # a string where boolean/number is wanted: the type error already says so
        if err.instance == "":
            msg = f"{expr} is an empty string; FHIR forbids empty values (leave the element out)"
        elif prim == "id":
            msg = f"{expr} is not a valid id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')"
        else:
            msg = f"{expr} is not a valid FHIR {prim}"
        yield Issue(msg, "value", "error", (expr,))
        return
    if name == "enum":
        if path and path[-1] == "resourceType":
            msg = f"{expr} is not an R4 resource type"
        else:
            options = [str(o) for o in kind.options]
            shown = ", ".join(options[:12]) + (", …" if len(options) > 12 else "")
            msg = f"{expr} has a code that is not allowed here (allowed: {shown})"
        yield Issue(msg, "value", "error", (expr,))
        return
    yield Issue(
        f"{expr} does not satisfy the R4 schema rule '{name}'", "structure", "error", (expr,)
    )


def _article(type_names: str) -> str:
    return ("an " if type_names[:1] in "aeiou" else "a ") + type_names


def _clip(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
