"""A minimal FHIRPath evaluator over plain JSON for the expressions TestScript asserts use."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>>=|<=|!=|[=<>().\[\],])"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]*`))"
)
_COMPARE = ("=", "!=", ">=", "<=", ">", "<")

Collection = list[Any]
Fn = Callable[[Collection, Any], Collection]


class FhirPathError(ValueError):
    """The expression is outside the supported subset."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FhirPathError(f"cannot tokenize {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks, self.pos = _tokens(text), 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.pos] if self.pos < len(self.toks) else ("eof", "")

    def take(self, want: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if want is not None and tok[1] != want:
            raise FhirPathError(f"expected {want!r}, got {tok[1]!r}")
        self.pos += 1
        return tok

    def parse(self) -> Fn:
        fn = self.boolean()
        if self.peek()[0] != "eof":
            raise FhirPathError(f"unexpected {self.peek()[1]!r}")
        return fn

    def boolean(self) -> Fn:
        left = self.comparison()
        while self.peek() in (("id", "and"), ("id", "or")):
            op, right, prev = self.take()[1], self.comparison(), left
            left = _logic(op, prev, right)
        return left

    def comparison(self) -> Fn:
        left = self.path()
        if self.peek()[0] == "op" and self.peek()[1] in _COMPARE:
            op, right = self.take()[1], self.path()
            return _compare(op, left, right)
        return left

    def path(self) -> Fn:
        kind, text = self.peek()
        if kind == "str":
            self.take()
            lit = bytes(text[1:-1], "utf-8").decode("unicode_escape")
            fn: Fn = lambda _c, _r: [lit]  # noqa: E731
        elif kind == "num":
            self.take()
            num = float(text) if "." in text else int(text)
            fn = lambda _c, _r: [num]  # noqa: E731
        elif text in ("true", "false"):
            self.take()
            fn = (lambda _c, _r: [True]) if text == "true" else (lambda _c, _r: [False])
        elif text == "(":
            self.take()
            fn = self.boolean()
            self.take(")")
        else:
            fn = self.step(first=True)
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                fn = _then(fn, self.step(first=False))
            else:
                index = self.boolean()
                self.take("]")
                fn = _index(fn, index)
        return fn

    def step(self, *, first: bool) -> Fn:
        kind, name = self.take()
        if kind != "id":
            raise FhirPathError(f"expected a name, got {name!r}")
        name = name.strip("`")
        if self.peek()[1] != "(":
            return _member(name, first=first)
        self.take("(")
        args = []
        while self.peek()[1] != ")":
            args.append(self.boolean())
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return _function(name, args)


def _then(left: Fn, right: Fn) -> Fn:
    return lambda coll, root: right(left(coll, root), root)


def _index(base: Fn, index: Fn) -> Fn:
    def run(coll: Collection, root: Any) -> Collection:
        items, idx = base(coll, root), index(coll, root)
        return [items[idx[0]]] if idx and 0 <= idx[0] < len(items) else []

    return run


def _children_of(item: Any, name: str | None) -> Collection:
    if not isinstance(item, dict):
        return []
    if name is None:
        keys = [k for k in item if not k.startswith("_") and k != "resourceType"]
    elif name in item:
        keys = [name]
    else:  # a choice element: value → valueQuantity
        keys = [k for k in item if k.startswith(name) and k[len(name):][:1].isupper()]
    out: Collection = []
    for key in keys:
        value = item[key]
        out.extend(value if isinstance(value, list) else [value])
    return out


def _member(name: str, *, first: bool) -> Fn:
    def run(coll: Collection, root: Any) -> Collection:
        if first and name[:1].isupper():  # a leading type name filters the context
            return [c for c in coll if isinstance(c, dict) and c.get("resourceType") == name]
        return [child for item in coll for child in _children_of(item, name)]

    return run


def _to_integer(value: Any) -> Collection:
    if isinstance(value, bool):
        return [int(value)]
    if isinstance(value, int):
        return [value]
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return [int(value)]
    return []


def _function(name: str, args: list[Fn]) -> Fn:
    def run(coll: Collection, root: Any) -> Collection:
        if name == "first":
            return coll[:1]
        if name == "last":
            return coll[-1:]
        if name == "count":
            return [len(coll)]
        if name == "exists":
            if args:
                return [any(_truth(args[0]([c], root)) for c in coll)]
            return [bool(coll)]
        if name == "empty":
            return [not coll]
        if name == "not":
            truth = _truth(coll)
            return [] if truth is None else [not truth]
        if name == "children":
            return [child for item in coll for child in _children_of(item, None)]
        if name == "where":
            return [c for c in coll if _truth(args[0]([c], root))]
        if name in ("toInteger", "toString"):
            if len(coll) != 1:
                return []
            if name == "toInteger":
                return _to_integer(coll[0])
            return [to_text(coll[0])]
        raise FhirPathError(f"function {name}() is not supported")

    return run


def _truth(coll: Collection) -> bool | None:
    if not coll:
        return None
    if len(coll) == 1 and isinstance(coll[0], bool):
        return coll[0]
    return True


def _logic(op: str, left: Fn, right: Fn) -> Fn:
    def run(coll: Collection, root: Any) -> Collection:
        a, b = _truth(left(coll, root)), _truth(right(coll, root))
        if op == "and":
            if a is False or b is False:
                return [False]
            return [True] if a and b else []
        if a or b:
            return [True]
        return [False] if a is False and b is False else []

    return run


def _compare(op: str, left: Fn, right: Fn) -> Fn:
    def run(coll: Collection, root: Any) -> Collection:
        a, b = left(coll, root), right(coll, root)
        if not a or not b:
            return []
        if op in ("=", "!="):
            equal = len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
            return [equal if op == "=" else not equal]
        if len(a) != 1 or len(b) != 1:
            raise FhirPathError(f"{op} needs single values")
        x, y = a[0], b[0]
        result = {">=": x >= y, "<=": x <= y, ">": x > y, "<": x < y}[op]
        return [result]

    return run


def values_equal(a: Any, b: Any) -> bool:
    """FHIRPath-style equality of two JSON values (numbers by value, the rest structurally)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return bool(a == b)


def to_text(value: Any) -> str:
    """The string form of a primitive value as FHIRPath's toString() gives it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(expression: str, resource: Any) -> Collection:
    """Evaluate `expression` with `resource` (parsed JSON) as context; returns a collection."""
    return _Parser(expression).parse()([resource], resource)
