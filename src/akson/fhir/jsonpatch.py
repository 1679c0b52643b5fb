"""JSON Patch (RFC 6902) with JSON Pointers (RFC 6901), applied atomically to a copy of a doc."""

from __future__ import annotations

from typing import Any

from akson.fhir.outcome import FhirError

_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def deep_copy(value: Any) -> Any:
    """Copy a JSON value (dicts, lists, scalars); much faster than copy.deepcopy for JSON trees."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """RFC 6902 §4.6 equality: same JSON type and value; numbers compare numerically.

    Python's `==` is not enough because `True == 1` and `1 == 1.0` both hold, but JSON
    distinguishes booleans from numbers.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def parse_pointer(pointer: object, where: str) -> list[str]:
    """Split an RFC 6901 pointer into unescaped reference tokens; 400 if the syntax is invalid."""
    if not isinstance(pointer, str):
        raise FhirError(400, f"{where}: a JSON Pointer must be a string", expression=(where,))
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise FhirError(
            400,
            f"{where}: JSON Pointer {pointer!r} must be empty or start with '/'",
            expression=(where,),
        )
    tokens = pointer[1:].split("/")
    for token in tokens:
        # '~' may only appear as the escapes '~0' ('~') and '~1' ('/') — RFC 6901 §3.
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise FhirError(
                400,
                f"{where}: JSON Pointer {pointer!r} has an invalid '~' escape",
                expression=(where,),
            )
    # Order matters (RFC 6901 §4): '~1' first, so that '~01' becomes '~1', not '/'.
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


class _Unprocessable(Exception):
    """A well-formed operation that cannot be applied to this document (becomes a 422)."""


def _array_index(array: list, token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:  # noqa: S105 - RFC 6901 "past the end" token, not a password
        return len(array)
    # RFC 6901 §4: an array index is '0' or digits without a leading zero.
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise _Unprocessable(f"{token!r} is not a valid array index")
    index = int(token)
    limit = len(array) if allow_end else len(array) - 1
    if index > limit:
        raise _Unprocessable(f"array index {index} is out of bounds (array length {len(array)})")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for depth, token in enumerate(tokens):
        here = "/" + "/".join(tokens[: depth + 1])
        if isinstance(node, dict):
            if token not in node:
                raise _Unprocessable(f"path {here} does not exist")
            node = node[token]
        elif isinstance(node, list):
            try:
                node = node[_array_index(node, token, allow_end=False)]
            except _Unprocessable as e:
                raise _Unprocessable(f"path {here}: {e}") from None
        else:
            raise _Unprocessable(f"path {here} does not exist (parent is not an object or array)")
    return node


def _parent(doc: Any, tokens: list[str]) -> tuple[Any, str]:
    parent = _resolve(doc, tokens[:-1])
    if not isinstance(parent, dict | list):
        where = "/" + "/".join(tokens[:-1])
        raise _Unprocessable(f"the parent {where} is neither an object nor an array")
    return parent, tokens[-1]


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_array_index(parent, last, allow_end=True), value)
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _Unprocessable("cannot remove the whole document")
    _resolve(doc, tokens)  # existence check with a precise message
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict):
        return parent.pop(last)
    return parent.pop(_array_index(parent, last, allow_end=False))


def _operation(index: int, op: object) -> tuple[str, list[str], dict]:
    where = f"/{index}"
    if not isinstance(op, dict):
        raise FhirError(400, f"JSON Patch operation {index} is not an object", expression=(where,))
    name = op.get("op")
    if name not in _OPS:
        what = "has no 'op' member" if name is None else f"has unknown op {name!r}"
        raise FhirError(400, f"JSON Patch operation {index} {what}", expression=(where,))
    if "path" not in op:
        raise FhirError(
            400, f"JSON Patch operation {index} ({name}) has no 'path'", expression=(where,)
        )
    tokens = parse_pointer(op["path"], f"JSON Patch operation {index} ({name}) path")
    if name in ("add", "replace", "test") and "value" not in op:
        raise FhirError(
            400, f"JSON Patch operation {index} ({name}) has no 'value'", expression=(where,)
        )
    if name in ("move", "copy"):
        if "from" not in op:
            raise FhirError(
                400, f"JSON Patch operation {index} ({name}) has no 'from'", expression=(where,)
            )
        source = parse_pointer(op["from"], f"JSON Patch operation {index} ({name}) from")
        if name == "move" and len(source) < len(tokens) and tokens[: len(source)] == source:
            raise FhirError(
                400,
                f"JSON Patch operation {index}: cannot move {op['from']} "
                f"into its own child {op['path']}",
                expression=(where,),
            )
    return name, tokens, op


def apply_json_patch_document(document: Any, patch: object) -> Any:
    """Apply an RFC 6902 patch to a copy of any JSON `document` and return the copy.

    Spec: https://www.rfc-editor.org/rfc/rfc6902 , https://www.rfc-editor.org/rfc/rfc6901 and, for
    FHIR resources, https://hl7.org/fhir/R4/http.html#patch.

    Raises FhirError 400 when the patch document itself is malformed (not an array, unknown or
    missing `op`, missing members, invalid pointer syntax) and 422 (code "processing") when a
    well-formed operation cannot be applied (missing path, index out of range, failed `test`).
    Nothing is applied unless every operation succeeds; `document` and `patch` are never mutated.
    """
    if not isinstance(patch, list):
        raise FhirError(400, "a JSON Patch document must be a JSON array of operations")
    # Validate the whole document first: a malformed later op is a 400 even if an earlier one fails.
    ops = [_operation(i, op) for i, op in enumerate(patch)]
    doc = deep_copy(document)
    for i, (name, tokens, op) in enumerate(ops):
        pointer = op["path"]
        try:
            if name == "add":
                doc = _add(doc, tokens, deep_copy(op["value"]))
            elif name == "remove":
                _remove(doc, tokens)
            elif name == "replace":
                _resolve(doc, tokens)  # replace requires an existing target (RFC 6902 §4.3)
                if tokens:
                    _remove(doc, tokens)
                doc = _add(doc, tokens, deep_copy(op["value"]))
            elif name == "move":
                source = parse_pointer(op["from"], "from")
                if source != tokens:
                    value = _resolve(doc, source)
                    if not source:
                        raise _Unprocessable("cannot move the whole document")
                    _remove(doc, source)
                    doc = _add(doc, tokens, value)
            elif name == "copy":
                value = deep_copy(_resolve(doc, parse_pointer(op["from"], "from")))
                doc = _add(doc, tokens, value)
            else:  # test
                actual = _resolve(doc, tokens)
                if not json_equal(actual, op["value"]):
                    raise _Unprocessable(
                        f"test failed: value at {pointer or '(document)'} is {_short(actual)}, "
                        f"expected {_short(op['value'])}"
                    )
        except _Unprocessable as e:
            raise FhirError(
                422,
                f"JSON Patch operation {i} ({name} {pointer}) cannot be applied: {e}",
                code="processing",
                expression=(pointer or "/",),
            ) from None
    return doc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
