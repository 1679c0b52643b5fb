"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): apply a Parameters to a resource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from akson.fhir.fhirpath_eval import Node, PathSyntaxError, evaluate, model, parse
from akson.fhir.jsonpatch import deep_copy
from akson.fhir.outcome import FhirError

_TYPES = frozenset({"add", "insert", "delete", "replace", "move"})
# Parts each operation type needs (fhirpatch.html "Operation" table); `value` is checked apart.
_REQUIRED = {
    "add": ("path", "name"),
    "insert": ("path", "index"),
    "delete": ("path",),
    "replace": ("path",),
    "move": ("path", "source", "destination"),
}
_NEEDS_VALUE = frozenset({"add", "insert", "replace"})
_MISSING = object()


@dataclass
class Value:
    """An operation's `value` part: typed value[x] (suffix "String"), nested parts or a resource."""

    data: Any
    suffix: str | None = None  # "String" for valueString; None for a part-list or a resource
    parts: list | None = None  # the nested `part` list for an anonymous complex value


@dataclass
class Operation:
    index: int
    type: str
    path: str
    name: str | None = None
    value: Value | None = None
    position: int | None = None  # `index`
    source: int | None = None
    destination: int | None = None

    @property
    def where(self) -> str:
        return f"Parameters.parameter[{self.index}]"

    def describe(self) -> str:
        target = f"{self.path}.{self.name}" if self.type == "add" else self.path
        return f"FHIRPath Patch operation {self.index} ({self.type} {target})"


class _Unprocessable(Exception):
    """A well-formed operation that cannot be applied to this resource (becomes a 422)."""


def apply_fhirpath_patch_operations(resource: dict, parameters: object) -> dict:
    """Apply a FHIRPath Patch `Parameters` resource to a copy of `resource` and return the copy.

    Spec: https://hl7.org/fhir/R4/fhirpatch.html and https://hl7.org/fhir/R4/http.html#patch; paths
    use the FHIRPath subset of :mod:`akson.fhir.fhirpath_eval`.

    Raises FhirError 400 when `parameters` is not a well-formed FHIRPath Patch (not a Parameters,
    a parameter not named `operation`, unknown type, missing parts, path syntax) and 422 (code
    "processing") when an operation cannot be applied: a path that matches nothing (except for
    delete, which is then a no-op), a replace/delete path that matches several elements, an index
    out of range. All or nothing: `resource` and `parameters` are never mutated. Empty objects and
    arrays left behind by deletes are pruned, as FHIR JSON forbids them.
    """
    ops = parse_operations(parameters)
    doc = deep_copy(resource)
    for op in ops:
        try:
            _apply(doc, op)
        except _Unprocessable as e:
            raise FhirError(
                422,
                f"{op.describe()} cannot be applied: {e}",
                code="processing",
                expression=(op.where,),
            ) from None
        except PathSyntaxError as e:  # evaluation-time path errors, e.g. a non-boolean filter
            raise FhirError(
                400, f"{op.describe()}: invalid path: {e}", expression=(op.where,)
            ) from None
    _prune(doc)
    return doc


# --------------------------------------------------------------------------- parsing the Parameters


def parse_operations(parameters: object) -> list[Operation]:
    """Validate a FHIRPath Patch and return its operations ; FhirError 400 if bad."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise FhirError(400, "a FHIRPath Patch document must be a Parameters resource")
    params = parameters.get("parameter", [])
    if not isinstance(params, list):
        raise FhirError(
            400, "Parameters.parameter must be an array", expression=("Parameters.parameter",)
        )
    return [_parse_operation(i, p) for i, p in enumerate(params)]


def _bad(where: str, message: str) -> FhirError:
    return FhirError(400, f"FHIRPath Patch {where}: {message}", expression=(where,))


def _parse_operation(i: int, param: object) -> Operation:
    where = f"Parameters.parameter[{i}]"
    if not isinstance(param, dict):
        raise _bad(where, "must be an object")
    if param.get("name") != "operation":
        raise _bad(where, f"name must be 'operation', not {param.get('name')!r}")
    parts = param.get("part")
    if not isinstance(parts, list):
        raise _bad(where, "an operation needs a 'part' array")
    by_name: dict[str, dict] = {}
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise _bad(f"{where}.part[{j}]", "a part needs a string 'name'")
        if part["name"] in by_name:
            raise _bad(f"{where}.part[{j}]", f"part {part['name']!r} is given more than once")
        by_name[part["name"]] = part

    op_type = _primitive(by_name, "type", str, where)
    if op_type not in _TYPES:
        raise _bad(where, f"type must be one of add|insert|delete|replace|move, not {op_type!r}")
    assert isinstance(op_type, str)
    for required in _REQUIRED[op_type]:
        if required not in by_name:
            raise _bad(where, f"a {op_type} operation needs a '{required}' part")
    path = _primitive(by_name, "path", str, where)
    assert isinstance(path, str)
    try:
        parse(path)
    except PathSyntaxError as e:
        raise _bad(where, f"invalid path {path!r}: {e}") from None
    op = Operation(i, op_type, path)
    if op_type == "add":
        op.name = _primitive(by_name, "name", str, where)
        if not op.name or not op.name.isidentifier():
            raise _bad(where, f"name {op.name!r} is not an element name")
    if op_type in _NEEDS_VALUE:
        if "value" not in by_name:
            raise _bad(where, f"a {op_type} operation needs a 'value' part")
        op.value = _value(by_name["value"], f"{where}.part[value]")
    for field in ("index", "source", "destination"):
        if field in by_name:
            number = _primitive(by_name, field, int, where)
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise _bad(where, f"{field} must be a non-negative integer")
            setattr(op, "position" if field == "index" else field, number)
    return op


def _primitive(parts: dict[str, dict], name: str, kind: type, where: str) -> Any:
    part = parts.get(name)
    if part is None:
        return None
    values = [v for k, v in part.items() if k.startswith("value")]
    if len(values) != 1 or not isinstance(values[0], kind):
        raise _bad(where, f"part {name!r} needs a single {kind.__name__} value")
    return values[0]


def _value(part: dict, where: str) -> Value:
    typed = [k for k in part if k.startswith("value") and k[5:6].isupper()]
    has_parts = isinstance(part.get("part"), list)
    has_resource = isinstance(part.get("resource"), dict)
    if len(typed) + has_parts + has_resource != 1:
        raise _bad(where, "the value needs exactly one of value[x], part or resource")
    if typed:
        return Value(part[typed[0]], suffix=typed[0][5:])
    if has_resource:
        return Value(part["resource"])
    for j, sub in enumerate(part["part"]):
        if not isinstance(sub, dict) or not isinstance(sub.get("name"), str):
            raise _bad(f"{where}.part[{j}]", "a part needs a string 'name'")
        _value(sub, f"{where}.part[{j}]")  # validate nested values up front (400, not 422)
    return Value(None, parts=part["part"])


# --------------------------------------------------------------------------- applying operations


def _apply(doc: dict, op: Operation) -> None:
    nodes = evaluate(op.path, doc)
    if op.type == "delete":
        if not nodes:
            return  # fhirpatch.html: deleting something that is not there is not an error
        _delete(_single(nodes, op))
    elif op.type == "add":
        if not nodes:
            raise _Unprocessable(f"No content found at {op.path} when adding")
        _add(_single(nodes, op), op)
    elif op.type == "replace":
        if not nodes:
            raise _Unprocessable(f"No content found at {op.path} when replacing")
        _replace(_single(nodes, op), op)
    else:
        items = _list_of(nodes, op)
        if op.type == "insert":
            assert op.position is not None and op.value is not None
            if op.position > len(items):
                raise _Unprocessable(
                    f"index {op.position} is beyond the end of the list (length {len(items)})"
                )
            items.insert(op.position, _build(op.value, nodes[0].type))
        else:
            assert op.source is not None and op.destination is not None
            for field, i in (("source", op.source), ("destination", op.destination)):
                if i >= len(items):
                    raise _Unprocessable(f"{field} {i} is out of range (list length {len(items)})")
            items.insert(op.destination, items.pop(op.source))


def _single(nodes: list[Node], op: Operation) -> Node:
    if len(nodes) > 1:
        raise _Unprocessable(
            f"path {op.path} matches {len(nodes)} elements; it must match exactly one"
        )
    return nodes[0]


def _list_of(nodes: list[Node], op: Operation) -> list:
    """The JSON array that `op.path` selects (insert and move work on a whole list)."""
    if not nodes:
        raise _Unprocessable(f"No content found at {op.path}")
    first = nodes[0]
    if first.parent is None or first.key is None or first.index is None:
        raise _Unprocessable(f"path {op.path} does not select a repeating element")
    if any(n.parent is not first.parent or n.key != first.key for n in nodes):
        raise _Unprocessable(f"path {op.path} selects elements from more than one list")
    items = first.parent[first.key]
    assert isinstance(items, list)
    return items


def _delete(node: Node) -> None:
    if node.parent is None or node.key is None:
        raise _Unprocessable("cannot delete the resource itself")
    shadow = "_" + node.key  # primitive extensions/ids live in `_key` (R4 json.html#primitive)
    if node.index is None:
        del node.parent[node.key]
        node.parent.pop(shadow, None)
        return
    items = node.parent[node.key]
    del items[node.index]
    extras = node.parent.get(shadow)
    if isinstance(extras, list) and len(extras) == len(items) + 1:
        del extras[node.index]


def _replace(node: Node, op: Operation) -> None:
    assert op.value is not None
    if node.parent is None or node.key is None:
        raise _Unprocessable("cannot replace the resource itself")
    key = node.key
    if node.name is not None and key != node.name:  # a choice element: the new value picks the key
        if op.value.suffix is None:
            raise _Unprocessable(
                f"{node.name}[x] is a choice element; the value must be a typed value[x]"
            )
        key = node.name + op.value.suffix
    declared = model().type_of_suffix(op.value.suffix) if op.value.suffix else node.type
    new = _build(op.value, declared)
    if node.index is not None:
        node.parent[key][node.index] = new
    else:
        if key != node.key:
            del node.parent[node.key]
            node.parent.pop("_" + node.key, None)
        node.parent[key] = new


def _add(node: Node, op: Operation) -> None:
    assert op.name is not None and op.value is not None
    target = node.value
    if not isinstance(target, dict):
        raise _Unprocessable(f"{op.path} is a primitive value; elements cannot be added to it")
    key, is_array, declared = _placement(node.type, target, op.name, op.value.suffix)
    new = _build(op.value, declared)
    if is_array:
        existing = target.get(key)
        if isinstance(existing, list):
            existing.append(new)
        else:  # absent, or a lone value where the schema says the element repeats
            target[key] = [new] if existing is None else [existing, new]
    else:
        # add sets a singleton (fhirpatch.html); drop other types of the same choice element.
        for other in [k for k in target if k != key and _same_choice(k, key, op.name)]:
            del target[other]
        target[key] = new


def _same_choice(other: str, key: str, name: str) -> bool:
    return (
        key != name
        and len(other) > len(name)
        and other.startswith(name)
        and other[len(name)].isupper()
    )


def _placement(
    type_name: str | None, target: dict, name: str, suffix: str | None
) -> tuple[str, bool, str | None]:
    """JSON key, whether it repeats, and the element type when adding `name` to a `type_name`."""
    m = model()
    if m.knows(type_name):
        element = m.element(type_name, name)
        if element is not None:
            return name, element.is_array, element.type
        if m.choice_keys(type_name, name):
            if suffix is None:
                raise _Unprocessable(
                    f"{name}[x] is a choice element; the value must be a typed value[x]"
                )
            choice = m.element(type_name, name + suffix)
            if choice is None:
                raise _Unprocessable(f"{type_name}.{name}[x] cannot be of type {suffix}")
            return choice.key, choice.is_array, m.type_of_suffix(suffix)
        raise _Unprocessable(f"{type_name} has no element named {name!r}")
    # Unknown type (no schema information): repeat only if the element already is a list.
    return name, isinstance(target.get(name), list), m.type_of_suffix(suffix) if suffix else None


def _build(value: Value, type_name: str | None) -> Any:
    """The JSON for an operation value; part-lists become objects shaped by `type_name`."""
    if value.parts is None:
        return deep_copy(value.data)
    out: dict[str, Any] = {}
    for sub in value.parts:
        name = sub["name"]
        typed = [k for k in sub if k.startswith("value") and k[5:6].isupper()]
        if typed:
            child = Value(sub[typed[0]], suffix=typed[0][5:])
        elif isinstance(sub.get("resource"), dict):
            child = Value(sub["resource"])
        else:
            child = Value(None, parts=sub["part"])
        key, is_array, declared = _placement(type_name, out, name, child.suffix)
        built = _build(child, declared)
        if is_array:
            out.setdefault(key, []).append(built)
        elif key in out:
            raise _Unprocessable(f"{name} is given more than once but does not repeat")
        else:
            out[key] = built
    return out


def _prune(value: Any) -> bool:
    """Remove empty objects and arrays in place; True if `value` itself is now empty.

    Nulls inside arrays are kept: they align primitive arrays with their `_name` extension arrays.
    """
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None or _prune(v)]:
            del value[key]
        return not value
    if isinstance(value, list):
        value[:] = [v for v in value if v is None or not _prune(v)]
        return not value or all(v is None for v in value)
    return False
