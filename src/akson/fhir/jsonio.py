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
#: A JSON string literal. Numbers and brackets are looked for only outside strings: a uuid such
#: as "…-8e98-…" is not the number 8e98, and "[[" in a narrative is not nesting.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
#: Number literals orjson might not keep exactly: integers beyond 64 bits (read as floats), -0,
#: and decimals or exponents (kept only if Python's shortest repr gives the same text back).
_INEXACT = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
#: Every byte but brackets and quotes (for `bytes.translate` to delete), and a string literal
#: once only those are left.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'{}[]"')
_QUOTED = re.compile(rb'"[^"]*"')
_EMPTY_PAIR = re.compile(rb"\{\}|\[\]")


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


def _needs_exact(bare: bytes) -> bool:
    """True when a number in `bare` (the body with its strings emptied) would not survive orjson."""
    for match in _INEXACT.finditer(bare):
        literal = match.group()
        if literal.lstrip(b"-").isdigit():  # an integer: exact unless -0 or beyond 64 bits
            if literal == b"-0" or len(literal) > 18 and not -(2**63) <= int(literal) < 2**63:
                return True
            continue
        if repr(float(literal)).encode() != literal:
            return True
    return False


def loads(body: bytes, *, max_depth: int = 64) -> Any:
    """Parse a request body; raise FhirError 400 naming the problem if it is not usable JSON."""
    if _CONTROL_ESCAPE.search(body):
        raise FhirError(400, "Strings may not contain control characters (U+0000 to U+001F other "
                        "than tab, line feed and carriage return)", "invalid")
    if body.count(b"{") + body.count(b"[") > max_depth:  # fewer cannot nest deeper
        _check_nesting(_brackets(body), max_depth)
    # Compact JSON that orjson writes back byte for byte lost nothing (a bulk-data line as a
    # rule): no need to look for numbers it might change. orjson's own depth limit (1,024)
    # bounds its recursion.
    try:
        tree = orjson.loads(body)
        if orjson.dumps(tree) == body.rstrip():
            return tree
    except ValueError:
        pass  # the parser below names the error
    try:
        if _needs_exact(_STRING.sub(b'""', body)):
            tree = json.loads(body, parse_float=ExactDecimal, parse_int=_exact_int,
                              parse_constant=_reject_constant)
        else:
            tree = orjson.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FhirError(400, f"Request body is not valid JSON: {_short(exc)}", "invalid") from None
    return tree


def _brackets(body: bytes) -> bytes:
    """The body's brackets outside strings, in order, from passes at C speed (a tenth of the
    time a string-literal regex over a 10 kB resource took)."""
    if b"\\" in body:
        # An escape is a backslash and one character: only `\\` and `\"` can hide a quote.
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Most strings hold no bracket: their quotes meet as `""` (so do a string's closing quote
    # and the next one's opening), and one replace takes them out before the regex.
    return _QUOTED.sub(b"", body.translate(None, _NOT_STRUCTURE).replace(b'""', b""))


def _check_nesting(brackets: bytes, max_depth: int) -> None:
    """Refuse bodies nested deeper than `max_depth`, before parsing, at C speed.

    Each pass removes the innermost empty `{}`/`[]` pairs, so a body nested d deep empties in d
    passes; more than `max_depth` passes means too deep. Unbalanced brackets are left for the
    parser to report.
    """
    for _ in range(max_depth):
        if not brackets:
            return
        brackets, removed = _EMPTY_PAIR.subn(b"", brackets)
        if not removed:
            return  # unbalanced: the JSON parser names the error
    if brackets and _EMPTY_PAIR.search(brackets):
        raise FhirError(400, f"JSON is nested deeper than {max_depth} levels", "too-costly")


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


def dumps(tree: Any) -> bytes:
    """Serialise compactly; ExactDecimal values are written with their original digits."""
    return orjson.dumps(tree, default=_default)
