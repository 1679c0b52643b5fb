"""Locate elements in FHIR JSON with the small FHIRPath subset that FHIRPath Patch paths use."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any


class PathSyntaxError(ValueError):
    """The path is not in the supported FHIRPath subset (or not FHIRPath at all)."""


@dataclass
class Node:
    """One item of a FHIRPath result: its value plus, for elements, where it sits in the JSON tree.

    `parent[key]` holds the value (or, when `index` is not None, `parent[key][index]` does).
    `name` is the FHIRPath element name; it differs from `key` for choice elements
    (`value` vs `valueString`).
    """

    value: Any
    type: str | None = None
    parent: dict | None = None
    key: str | None = None
    index: int | None = None
    name: str | None = None


# --------------------------------------------------------------------------- type model (R4 schema)


@dataclass(frozen=True)
class Element:
    """What the R4 schema says about one JSON property of a type."""

    key: str
    type: str | None
    is_array: bool


class Model:
    """Element names, cardinalities and types of R4 types, read from the R4 JSON schema."""

    def __init__(self, definitions: dict[str, Any]) -> None:
        self._defs = definitions

    def knows(self, type_name: str | None) -> bool:
        return type_name is not None and "properties" in self._defs.get(type_name, {})

    def is_type(self, name: str) -> bool:
        return name in self._defs

    def element(self, type_name: str | None, key: str) -> Element | None:
        """The schema's description of JSON property `key` of `type_name`, or None if unknown."""
        if type_name is None:
            return None
        prop = self._defs.get(type_name, {}).get("properties", {}).get(key)
        if prop is None or key.startswith("_"):
            return None
        is_array = prop.get("type") == "array"
        target = prop.get("items", {}) if is_array else prop
        ref = target.get("$ref")
        if ref:
            child: str | None = ref.rsplit("/", 1)[-1]
        else:
            # Inline primitives (`"type": "boolean"`); a choice suffix is more precise if present.
            child = {"boolean": "boolean", "number": "decimal", "string": "string"}.get(
                target.get("type", "")
            )
        return Element(key, child, is_array)

    def choice_keys(self, type_name: str | None, name: str) -> list[str]:
        """JSON keys of choice element `name[x]` of `type_name` (`valueString`, ...); [] if none."""
        if type_name is None or name in self.properties(type_name):
            return []
        return [k for k in self.properties(type_name) if _is_choice_key(k, name)]

    def properties(self, type_name: str) -> dict[str, Any]:
        return self._defs.get(type_name, {}).get("properties", {})

    def type_of_suffix(self, suffix: str) -> str:
        """`Quantity` → `Quantity`, `String` → `string`, `DateTime` → `dateTime` (schema names)."""
        if suffix in self._defs and "properties" in self._defs[suffix]:
            return suffix
        lowered = suffix[:1].lower() + suffix[1:]
        return lowered if lowered in self._defs else suffix


def _is_choice_key(key: str, name: str) -> bool:
    return len(key) > len(name) and key.startswith(name) and key[len(name)].isupper()


@cache
def model() -> Model:
    """The R4 model, loaded once from package data (a read of a bundled file, not external I/O)."""
    try:
        text = resources.files("akson.fhir").joinpath("data/fhir.schema.json").read_text("utf-8")
        return Model(json.loads(text).get("definitions", {}))
    except (OSError, ValueError):  # pragma: no cover - only if the package data is missing
        return Model({})


def value_type(value: Any, declared: str | None) -> str | None:
    """The FHIR type of a JSON value: a resource's own resourceType wins over the declared type."""
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return str(value["resourceType"])
    return declared


# --------------------------------------------------------------------------- tokenizer / parser

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<date>@[0-9T:.+\-Z]+)
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`|\$this|%resource)
      | (?P<op>!=|<=|>=|[.\[\](),=<>])
    )""",
    re.VERBOSE,
)
_ESCAPES = {
    "'": "'",
    '"': '"',
    "`": "`",
    "\\": "\\",
    "/": "/",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "f": "\f",
}

Ast = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PathSyntaxError(
                f"unexpected character {text[pos:].lstrip()[:1]!r} at offset {pos}"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "eof" or (value is not None and tok[1] != value):
            raise PathSyntaxError(
                f"expected {value or 'more input'!r}, found {tok[1] or 'end of path'!r}"
            )
        self.pos += 1
        return tok

    def parse(self) -> Ast:
        ast = self.expr()
        if self.peek()[0] != "eof":
            raise PathSyntaxError(f"unexpected {self.peek()[1]!r}")
        return ast

    def expr(self) -> Ast:
        left = self.and_expr()
        while self.peek() == ("ident", "or"):
            self.take()
            left = ("or", left, self.and_expr())
        return left

    def and_expr(self) -> Ast:
        left = self.equality()
        while self.peek() == ("ident", "and"):
            self.take()
            left = ("and", left, self.equality())
        return left

    def equality(self) -> Ast:
        left = self.term()
        if self.peek()[1] in ("=", "!=") and self.peek()[0] == "op":
            op = self.take()[1]
            return ("eq" if op == "=" else "ne", left, self.term())
        if self.peek()[0] == "op" and self.peek()[1] in ("<", ">", "<=", ">="):
            raise PathSyntaxError(f"operator {self.peek()[1]!r} is not supported in patch paths")
        return left

    def term(self) -> Ast:
        kind, text = self.peek()
        ast: Ast
        if kind == "string":
            self.take()
            ast = ("lit", _unescape(text[1:-1]))
        elif kind == "date":
            self.take()
            ast = ("lit", text[1:])
        elif kind == "number":
            self.take()
            ast = ("lit", float(text) if "." in text else int(text))
        elif (kind, text) == ("op", "("):
            self.take()
            ast = self.expr()
            self.take(")")
        elif kind == "ident" and text in ("true", "false"):
            self.take()
            ast = ("lit", text == "true")
        elif kind == "ident":
            ast = self.invocation(None)
        else:
            raise PathSyntaxError(f"unexpected {text or 'end of path'!r}")
        return self.postfix(ast)

    def postfix(self, ast: Ast) -> Ast:
        while True:
            kind, text = self.peek()
            if (kind, text) == ("op", "."):
                self.take()
                ast = self.invocation(ast)
            elif (kind, text) == ("op", "["):
                self.take()
                index = self.expr()
                self.take("]")
                ast = ("index", ast, index)
            elif (kind, text) in (("ident", "as"), ("ident", "is")):
                self.take()
                type_name = self.type_name()
                ast = ("call", ast, "ofType" if text == "as" else "is", [("lit", type_name)])
            else:
                return ast

    def type_name(self) -> str:
        name = _ident(self.take()[1])
        while self.peek() == ("op", "."):  # FHIR.Quantity, System.String
            self.take()
            name = _ident(self.take()[1])
        return name

    def invocation(self, base: Ast | None) -> Ast:
        kind, text = self.take()
        if kind != "ident":
            raise PathSyntaxError(f"expected an element or function name, found {text!r}")
        if text == "$this":
            return ("this",) if base is None else base
        if text == "%resource":
            return ("resource",)
        if self.peek() == ("op", "("):
            self.take()
            args: list[Ast] = []
            if text == "ofType":  # the argument is a type specifier, not an expression
                args.append(("lit", self.type_name()))
            elif self.peek() != ("op", ")"):
                args.append(self.expr())
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self.expr())
            self.take(")")
            if text not in _FUNCTIONS:
                raise PathSyntaxError(f"function {text}() is not supported in patch paths")
            return ("call", base, text, args)
        return ("member", base, _ident(text))


def _ident(text: str) -> str:
    return text[1:-1] if text.startswith("`") else text


def _unescape(text: str) -> str:
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _unescape_one, text)


def _unescape_one(m: re.Match[str]) -> str:
    esc = m.group(1)
    if esc.startswith("u") and len(esc) == 5:
        return chr(int(esc[1:], 16))
    return _ESCAPES.get(esc, esc)


@lru_cache(maxsize=1024)  # bounded: paths come from clients
def parse(path: str) -> Ast:
    """Parse a FHIRPath expression of the supported subset; raises PathSyntaxError.

    FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html) restricts paths to navigation plus
    filters, so this supports `Type.elem.elem`, indexers `[n]`, `$this`, `%resource`, `.where()`,
    `.first()`, `.last()`, `.tail()`, `.extension('url')`, `.ofType(T)`, `as T`, `is T`,
    `exists()`, `empty()`, `not()`, `count()`, and in predicates `=` / `!=` against string, number,
    boolean and `@date` literals, combined with `and` / `or`. Full FHIRPath:
    https://hl7.org/fhirpath/N1/ .
    """
    return _Parser(path).parse()


# --------------------------------------------------------------------------- evaluation

_FUNCTIONS = frozenset(
    {
        "where",
        "first",
        "last",
        "tail",
        "extension",
        "ofType",
        "is",
        "exists",
        "empty",
        "not",
        "count",
    }
)


def evaluate(path: str, resource: dict) -> list[Node]:
    """Evaluate `path` against `resource`; each returned Node can be used to change the element.

    Choice elements (`value` ~ `valueString`, ...) and types come from the bundled R4 JSON schema
    (fhir/data/fhir.schema.json) when the element's type is known.
    """
    root = Node(resource, value_type(resource, None))
    return _eval(parse(path), [root], root)


def _eval(ast: Ast, focus: list[Node], root: Node) -> list[Node]:
    kind = ast[0]
    if kind == "lit":
        return [Node(ast[1])]
    if kind == "this":
        return focus
    if kind == "resource":
        return [root]
    if kind == "member":
        base = focus if ast[1] is None else _eval(ast[1], focus, root)
        return [child for node in base for child in _member(node, ast[2], implicit=ast[1] is None)]
    if kind == "index":
        base = _eval(ast[1], focus, root)
        index = _eval(ast[2], focus, root)
        if len(index) != 1 or not _is_int(index[0].value):
            raise PathSyntaxError("an indexer must be a single integer")
        i = index[0].value
        return [base[i]] if 0 <= i < len(base) else []
    if kind == "call":
        base = focus if ast[1] is None else _eval(ast[1], focus, root)
        return _call(ast[2], ast[3], base, root)
    if kind in ("eq", "ne"):
        left, right = _eval(ast[1], focus, root), _eval(ast[2], focus, root)
        if not left or not right:
            return []
        same = len(left) == len(right) and all(
            _values_equal(a.value, b.value) for a, b in zip(left, right, strict=True)
        )
        return [Node(same if kind == "eq" else not same, "boolean")]
    if kind in ("and", "or"):
        a = _truth(_eval(ast[1], focus, root))
        b = _truth(_eval(ast[2], focus, root))
        if kind == "and":
            result = (
                False if a is False or b is False else (None if a is None or b is None else True)
            )
        else:
            result = True if a is True or b is True else (None if a is None or b is None else False)
        return [] if result is None else [Node(result, "boolean")]
    raise PathSyntaxError(f"unsupported expression {kind}")  # pragma: no cover - parser guards


def _member(node: Node, name: str, *, implicit: bool) -> list[Node]:
    value = node.value
    if not isinstance(value, dict):
        return []
    # `Patient.name`: a leading type name selects the resource itself (FHIRPath §Path selection).
    if implicit and name[:1].isupper() and value.get("resourceType") == name:
        return [node]
    m = model()
    keys: list[str]
    if name in value:
        keys = [name]
    elif m.knows(node.type):
        keys = [k for k in m.choice_keys(node.type, name) if k in value]
    else:
        keys = [k for k in value if _is_choice_key(k, name)]
    out: list[Node] = []
    for key in keys:
        element = m.element(node.type, key)
        declared = element.type if element else None
        if key != name:
            declared = m.type_of_suffix(key[len(name) :])
        child = value[key]
        if isinstance(child, list):
            for i, item in enumerate(child):
                out.append(Node(item, value_type(item, declared), value, key, i, name))
        elif child is not None:
            out.append(Node(child, value_type(child, declared), value, key, None, name))
    return out


def _call(name: str, args: list[Ast], base: list[Node], root: Node) -> list[Node]:
    if name == "where":
        _arity(name, args, 1)
        return [n for n in base if _truth(_eval(args[0], [n], root)) is True]
    if name in ("first", "last", "tail", "exists", "empty", "not", "count"):
        _arity(name, args, 1 if name == "exists" and args else 0)
        if name == "first":
            return base[:1]
        if name == "last":
            return base[-1:]
        if name == "tail":
            return base[1:]
        if name == "exists":
            if args:
                base = [n for n in base if _truth(_eval(args[0], [n], root)) is True]
            return [Node(bool(base), "boolean")]
        if name == "empty":
            return [Node(not base, "boolean")]
        if name == "count":
            return [Node(len(base), "integer")]
        truth = _truth(base)
        return [] if truth is None else [Node(not truth, "boolean")]
    if name == "extension":
        _arity(name, args, 1)
        urls = _eval(args[0], base, root)
        if len(urls) != 1 or not isinstance(urls[0].value, str):
            raise PathSyntaxError("extension() needs a single string url")
        url = urls[0].value
        exts = [c for n in base for c in _member(n, "extension", implicit=False)]
        return [e for e in exts if isinstance(e.value, dict) and e.value.get("url") == url]
    if name in ("ofType", "is"):
        _arity(name, args, 1)
        wanted = str(args[0][1])
        matched = [n for n in base if _type_matches(n, wanted)]
        if name == "ofType":
            return matched
        if len(base) != 1:
            return []
        return [Node(bool(matched), "boolean")]
    raise PathSyntaxError(f"function {name}() is not supported")  # pragma: no cover - parser guards


def _arity(name: str, args: list[Ast], count: int) -> None:
    if len(args) != count:
        raise PathSyntaxError(f"{name}() takes {count} argument(s), got {len(args)}")


def _type_matches(node: Node, wanted: str) -> bool:
    if node.type is None:
        return False
    if node.type == wanted:
        return True
    # FHIRPath names primitives `string`, `dateTime`, ... but `String` is a common spelling.
    return node.type.lower() == wanted.lower() and not model().is_type(wanted)


def _truth(nodes: list[Node]) -> bool | None:
    """FHIRPath singleton evaluation of a collection as a boolean (§4.5); None means empty."""
    if not nodes:
        return None
    if len(nodes) == 1:
        value = nodes[0].value
        return value if isinstance(value, bool) else True
    raise PathSyntaxError("a boolean expression returned more than one item")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b
