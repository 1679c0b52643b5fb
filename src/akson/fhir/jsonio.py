"""JSON in and out without loss: decimals keep the digits the client sent.

FHIR decimals carry precision (`1.50` is not `1.5`, R4 datatypes.html#decimal), so a round trip
through binary floats would change what the client wrote. Most bodies have no such literal; they
take orjson's fast path. Bodies that do are parsed with floats that remember their source text.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from akson.fhir.outcome import FhirError

_INF = float("inf")
#: C0 control characters other than tab, LF and CR, as JSON escapes: R4 strings may not hold
#: them (datatypes.html#string), and PostgreSQL text cannot hold NUL at all.
_CONTROL_ESCAPE = re.compile(rb"\\u00(?:0[0-8bcefBCEF]|1[0-9a-fA-F])")
#: Integers orjson would not keep exactly: beyond 64 bits (it reads them as floats) and -0.
_BIG_OR_NEGATIVE_ZERO = re.compile(rb"-?\d{19,}|-0(?![\d.eE])")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_HAS_FRACTION_OR_EXP = re.compile(rb"\d[.eE]")


class ExactDecimal(float):
    """A float that remembers its JSON text, so it is written back exactly as received."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> ExactDecimal:
        value = float.__new__(cls, text)
        if value in (_INF, -_INF):
            raise ValueError(f"number {text[:40]} is too large")
        value.text = text
        return value


def _default(obj: Any) -> Any:
    if isinstance(obj, ExactDecimal):
        return orjson.Fragment(obj.text)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _needs_exact(body: bytes) -> bool:
    if _BIG_OR_NEGATIVE_ZERO.search(body):
        return True
    if not _HAS_FRACTION_OR_EXP.search(body):
        return False
    for match in _NUMBER.finditer(body):
        literal = match.group()
        if (b"." in literal or b"e" in literal or b"E" in literal) and repr(
            float(literal)
        ).encode() != literal:
            return True
    return False


def loads(body: bytes, *, max_depth: int = 64) -> Any:
    """Parse a request body; raise FhirError 400 naming the problem if it is not usable JSON."""
    if _CONTROL_ESCAPE.search(body):
        raise FhirError(400, "Strings may not contain control characters (U+0000 to U+001F other "
                        "than tab, line feed and carriage return)", "invalid")
    try:
        if _needs_exact(body):
            tree = json.loads(body, parse_float=ExactDecimal, parse_int=_exact_int,
                              parse_constant=_reject_constant)
        else:
            tree = orjson.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FhirError(400, f"Request body is not valid JSON: {_short(exc)}", "invalid") from None
    check_depth(tree, max_depth)
    return tree


def _exact_int(text: str) -> int | ExactDecimal:
    """Integers that fit 64 bits stay ints; larger ones and -0 keep their text as decimals."""
    digits = text.lstrip("-")
    if text == "-0" or len(digits) > 18 and not -(2**63) <= int(text) < 2**63:
        return ExactDecimal(text)
    return int(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


def check_depth(tree: Any, max_depth: int) -> None:
    """Refuse trees nested deeper than `max_depth` (iteratively: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise FhirError(400, f"JSON is nested deeper than {max_depth} levels", "too-costly")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


def dumps(tree: Any) -> bytes:
    """Serialise compactly; ExactDecimal values are written with their original digits."""
    return orjson.dumps(tree, default=_default)
