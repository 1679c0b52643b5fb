"""Compile the FHIRPath subset used by search-parameter expressions into Python closures.

FHIRPath (https://hl7.org/fhirpath/N1/) is the *definition* of what a search parameter indexes
(https://hl7.org/fhir/R4/searchparameter.html); interpreting it on every write would be slow. This
module parses an expression once and returns a function that walks the resource's JSON dicts.

Supported: paths (``Patient.name.family``), leading type names (``Patient.`` — resolved statically
for the resource type being compiled, so ``Patient.x | Practitioner.x`` costs one walk), choice
elements (a bare ``Observation.effective`` finds whichever ``effective[x]`` key is present),
``as``/``ofType``/``x as T`` (select the ``xT`` key), ``where(...)``, ``resolve() is T`` (filter
references by target type), ``exists()``, ``empty()``, ``not()``, ``hasValue()``, ``first()``,
``last()``, ``extension('url')``, ``[n]``, ``|``, ``=``, ``!=``, ``and``, ``or``, literals,
``%resource`` and ``$this``. Anything else raises :class:`FhirPathCompileError`.

Values are the raw JSON values (dicts, lists flattened, str, bool, numbers); types are inferred by
the caller from the JSON shape, which is what lets this work without StructureDefinitions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Evaluate a compiled expression on one resource; returns the FHIRPath result collection.
Extractor = Callable[[dict], list[Any]]
# A compiled node: (input collection, root resource) -> output collection.
_Fn = Callable[[list[Any], dict], list[Any]]

# Element names that are choice types ([x]) somewhere in R4, derived once from the R4 JSON schema
# (a property `fooBar`/`fooBaz` pair with no `foo`). A missing key is only searched for `foo<Type>`
# when its name is in this set, so the common "element absent" case stays one dict lookup.
CHOICE_ROOTS: frozenset[str] = frozenset(
    {
        "abatement", "additive", "age", "allowed", "amount", "answer", "asNeeded", "author",
        "born", "bounds", "characteristic", "chargeItem", "code", "collected", "compareToSource",
        "content", "created", "date", "deceased", "defaultValue", "definingSubstance",
        "definition", "detail", "diagnosis", "dose", "doseNumber", "due", "effective", "entity",
        "event", "example", "fastingStatus", "fixed", "identified", "indication", "instantiates",
        "item", "legallyBinding", "location", "manufacturer", "maxValue", "medication", "minValue",
        "minimumVolume", "module", "multipleBirth", "name", "occurred", "occurrence", "offset",
        "onset", "outcome", "participantEffective", "pattern", "payment", "performed",
        "probability", "procedure", "product", "prognosis", "quantity", "rate", "reason",
        "referenceSeq", "reported", "scheduled", "seriesDoses", "serviced", "source", "start",
        "statusReason", "studyEffective", "subject", "substance", "target", "time", "timing",
        "topic", "used", "value", "when",
    }
)

# Leading type names that match every resource.
_ABSTRACT = frozenset({"Resource", "DomainResource"})


class FhirPathCompileError(ValueError):
    """The expression uses FHIRPath this compiler does not support (or is malformed)."""


# --- lexer -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|`(?P<qid>[^`]*)`"
    r"|(?P<id>[%$]?[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>!=|!~|<=|>=|[.()\[\],|=<>~+\-*/&])"
    r")"
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # str | num | id | op | end
    text: str


def _lex(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, n = 0, len(src)
    while pos < n:
        if src[pos:].isspace():
            break
        m = _TOKEN_RE.match(src, pos)
        if m is None or m.end() == pos:
            raise FhirPathCompileError(f"cannot tokenise at offset {pos}: {src[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "qid":
            kind = "id"
        toks.append(_Tok(kind, text))
    toks.append(_Tok("end", ""))
    return toks


# --- AST ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ident:
    name: str


@dataclass(frozen=True)
class Member:
    base: Any
    name: str


@dataclass(frozen=True)
class Call:
    base: Any  # None: invoked on $this
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Index:
    base: Any
    index: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class TypeOp:
    op: str  # "as" | "is"
    operand: Any
    type_name: str


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Var:
    name: str  # "%resource", "$this", ...


class _Parser:
    """Recursive descent over FHIRPath's precedence levels (https://hl7.org/fhirpath/N1/#operator-precedence)."""

    def __init__(self, src: str) -> None:
        self.toks = _lex(src)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text or tok.kind not in ("op", "id"):
            raise FhirPathCompileError(f"expected {text!r}, found {tok.text!r}")

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "id") and tok.text in texts

    def parse(self) -> Any:
        node = self.expr()
        if self.peek().kind != "end":
            raise FhirPathCompileError(f"unexpected {self.peek().text!r}")
        return node

    def expr(self) -> Any:
        return self.binary_level(0)

    # Lowest to highest binding; "is"/"as" sit between union and the path terms.
    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("implies",),
        ("or", "xor"),
        ("and",),
        ("in", "contains"),
        ("=", "!=", "~", "!~"),
        ("<", ">", "<=", ">="),
        ("|",),
    )

    def binary_level(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self.type_expr()
        left = self.binary_level(level + 1)
        while self.at(*self._LEVELS[level]):
            op = self.take().text
            left = Binary(op, left, self.binary_level(level + 1))
        return left

    def type_expr(self) -> Any:
        node = self.term()
        while self.at("as", "is"):
            op = self.take().text
            node = TypeOp(op, node, self.type_name())
        return node

    def type_name(self) -> str:
        tok = self.take()
        if tok.kind != "id":
            raise FhirPathCompileError(f"expected a type name, found {tok.text!r}")
        name = tok.text
        while self.at("."):  # FHIR.Quantity, System.String
            self.take()
            name = self.take().text
        return name

    def term(self) -> Any:
        node = self.primary()
        while True:
            if self.at("."):
                self.take()
                tok = self.take()
                if tok.kind != "id":
                    raise FhirPathCompileError(f"expected a name after '.', found {tok.text!r}")
                is_call = self.at("(")
                node = Call(node, tok.text, self.args()) if is_call else Member(node, tok.text)
            elif self.at("["):
                self.take()
                idx = self.expr()
                self.expect("]")
                node = Index(node, idx)
            else:
                return node

    def args(self) -> tuple[Any, ...]:
        self.expect("(")
        out: list[Any] = []
        if not self.at(")"):
            out.append(self.expr())
            while self.at(","):
                self.take()
                out.append(self.expr())
        self.expect(")")
        return tuple(out)

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "op" and tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if tok.kind == "str":
            return Literal(re.sub(r"\\(.)", r"\1", tok.text[1:-1]))
        if tok.kind == "num":
            return Literal(float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "id":
            if tok.text in ("true", "false"):
                return Literal(tok.text == "true")
            if tok.text[0] in "%$":
                return Var(tok.text)
            if self.at("("):
                return Call(None, tok.text, self.args())
            return Ident(tok.text)
        raise FhirPathCompileError(f"unexpected {tok.text!r}")


def parse(expression: str) -> Any:
    """Parse a FHIRPath expression into a small AST (raises :class:`FhirPathCompileError`)."""
    return _Parser(expression).parse()


# --- runtime helpers (the hot path) ------------------------------------------------------------


def _choice_get(d: dict, name: str) -> Any:
    n = len(name)
    for k, v in d.items():
        if len(k) > n and k[n].isupper() and k.startswith(name):
            return v
    return None


def _walk(items: list[Any], steps: tuple[tuple[str, bool], ...]) -> list[Any]:
    """Follow member names through dicts, flattening lists (FHIRPath collection semantics)."""
    for key, choice in steps:
        out: list[Any] = []
        for it in items:
            if it.__class__ is dict:
                v = it.get(key)
                if v is None:
                    if not choice:
                        continue
                    v = _choice_get(it, key)
                    if v is None:
                        continue
                if v.__class__ is list:
                    out.extend(v)
                else:
                    out.append(v)
        if not out:
            return out
        items = out
    return items


_REF_TYPE_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def reference_type(ref: Any) -> str | None:
    """The target resource type of a Reference dict (from ``reference``, else ``type``)."""
    if ref.__class__ is not dict:
        return None
    r = ref.get("reference")
    if r.__class__ is str:
        m = _REF_TYPE_RE.search(r.split("|", 1)[0])
        if m is not None:
            return m.group(1)
    t = ref.get("type")
    return t if t.__class__ is str else None


def _eq(a: list[Any], b: list[Any]) -> list[Any]:
    if not a or not b:
        return []
    if len(a) != len(b):
        return [False]
    # bool is an int in Python; FHIRPath `true = 1` is false (different types).
    return [all(x.__class__ is y.__class__ and x == y for x, y in zip(a, b, strict=True))]


def _single_bool(c: list[Any]) -> bool | None:
    if not c:
        return None
    if len(c) == 1 and c[0].__class__ is bool:
        return bool(c[0])
    return True  # a non-empty non-boolean collection is "true" in boolean context


# --- compiler ----------------------------------------------------------------------------------


def _type_suffix(type_name: str) -> str:
    return type_name[:1].upper() + type_name[1:]


class _Compiler:
    """Turns AST nodes into closures. ``None`` means "statically empty" (pruned branch)."""

    def __init__(self, resource_type: str | None) -> None:
        self.resource_type = resource_type

    def compile(self, node: Any, at_root: bool) -> _Fn | None:
        """``at_root``: the input collection is the resource itself (enables static type tests)."""
        if isinstance(node, (Ident, Member)):
            return self._path(node, at_root)
        if isinstance(node, TypeOp):
            return self._type_op(node, at_root)
        if isinstance(node, Call):
            return self._call(node, at_root)
        if isinstance(node, Index):
            return self._index(node, at_root)
        if isinstance(node, Binary):
            return self._binary(node, at_root)
        if isinstance(node, Literal):
            value = [node.value]
            return lambda items, root: value
        if isinstance(node, Var):
            if node.name in ("%resource", "%rootResource", "%context"):
                return lambda items, root: [root]
            if node.name == "$this":
                return lambda items, root: items
            raise FhirPathCompileError(f"unsupported variable {node.name}")
        raise FhirPathCompileError(f"unsupported node {type(node).__name__}")

    # paths

    def _path(self, node: Any, at_root: bool) -> _Fn | None:
        steps: list[tuple[str, bool]] = []
        while isinstance(node, Member):
            steps.append((node.name, node.name in CHOICE_ROOTS))
            node = node.base
        steps.reverse()
        if isinstance(node, Ident):
            name = node.name
            if name[0].isupper():
                base = self._type_filter(name, at_root)
                if base is None:
                    return None
            else:
                base = _identity
                steps.insert(0, (name, name in CHOICE_ROOTS))
        else:
            compiled = self.compile(node, at_root)
            if compiled is None:
                return None
            base = compiled
        return _chain(base, tuple(steps))

    def _type_filter(self, name: str, at_root: bool) -> _Fn | None:
        if at_root and self.resource_type is not None:
            if name in _ABSTRACT or name == self.resource_type:
                return _identity
            return None
        if name in _ABSTRACT:
            return lambda items, root: [
                i for i in items if i.__class__ is dict and "resourceType" in i
            ]
        return lambda items, root: [
            i for i in items if i.__class__ is dict and i.get("resourceType") == name
        ]

    def _as(self, operand: Any, type_name: str, at_root: bool) -> _Fn | None:
        # `x as T` on a choice element `x[x]` is the key `xT` in FHIR JSON.
        if isinstance(operand, Ident) and not operand.name[0].isupper():
            # A bare `value.as(T)` relative to the context (composite components).
            key = operand.name
            if key in CHOICE_ROOTS:
                key += _type_suffix(type_name)
            return _chain(_identity, ((key, False),))
        if isinstance(operand, Member) and operand.name in CHOICE_ROOTS:
            renamed = Member(operand.base, operand.name + _type_suffix(type_name))
            return self._path_exact(renamed, at_root)
        if isinstance(operand, Member):
            # Not a choice element: `as` is a type assertion we cannot check without
            # definitions; the element's declared type is the only type it can have.
            return self.compile(operand, at_root)
        raise FhirPathCompileError(f"'as {type_name}' is only supported on a path")

    def _path_exact(self, node: Member, at_root: bool) -> _Fn | None:
        base = self.compile(node.base, at_root)
        if base is None:
            return None
        return _chain(base, ((node.name, False),))

    def _type_op(self, node: TypeOp, at_root: bool) -> _Fn | None:
        if node.op == "as":
            return self._as(node.operand, node.type_name, at_root)
        # `is`: only `resolve() is T`, the reference-target test of search parameters.
        operand = node.operand
        if isinstance(operand, Call) and operand.name == "resolve" and not operand.args:
            base = _identity if operand.base is None else self.compile(operand.base, at_root)
            if base is None:
                return None
            target = node.type_name
            return lambda items, root: [
                reference_type(r) == target for r in base(items, root)
            ]
        raise FhirPathCompileError("'is' is only supported as 'resolve() is Type'")

    # functions

    def _call(self, node: Call, at_root: bool) -> _Fn | None:
        name, args = node.name, node.args
        if name in ("as", "ofType") and len(args) == 1 and isinstance(args[0], Ident):
            if node.base is None:
                raise FhirPathCompileError(f"{name}() needs an input path")
            return self._as(node.base, args[0].name, at_root)
        if (name, len(args)) not in _FUNCTIONS:
            if name == "resolve":
                # Nothing is resolved at index time; `resolve() is T` is handled in _type_op.
                raise FhirPathCompileError("resolve() is only supported as 'resolve() is Type'")
            raise FhirPathCompileError(
                f"unsupported function {name}() with {len(args)} argument(s)"
            )
        base: _Fn | None = _identity if node.base is None else self.compile(node.base, at_root)
        if base is None:
            return _const_empty_result(name)
        if name == "where" and len(args) == 1:
            return self._where(base, args[0])
        if name == "exists" and len(args) == 0:
            return lambda items, root: [bool(base(items, root))]
        if name == "exists" and len(args) == 1:
            pred = self._predicate(args[0])
            return lambda items, root: [any(pred(i, root) for i in base(items, root))]
        if name == "empty" and not args:
            return lambda items, root: [not base(items, root)]
        if name == "not" and not args:

            def not_(items: list[Any], root: dict) -> list[Any]:
                b = _single_bool(base(items, root))
                return [] if b is None else [not b]

            return not_
        if name == "hasValue" and not args:

            def has_value(items: list[Any], root: dict) -> list[Any]:
                c = base(items, root)
                return [len(c) == 1 and c[0].__class__ is not dict]

            return has_value
        if name == "first" and not args:
            return lambda items, root: base(items, root)[:1]
        if name == "last" and not args:
            return lambda items, root: base(items, root)[-1:]
        if name == "extension" and len(args) == 1 and isinstance(args[0], Literal):
            url = args[0].value
            ext = _chain(base, (("extension", False),))
            shadow = self._primitive_extensions(node.base, at_root)
            if shadow is not None:
                ext = _union(ext, shadow)
            return lambda items, root: [
                e for e in ext(items, root) if e.__class__ is dict and e.get("url") == url
            ]
        raise FhirPathCompileError(f"unsupported function {name}() with {len(args)} argument(s)")

    def _primitive_extensions(self, base: Any, at_root: bool) -> _Fn | None:
        """``x.extension`` where ``x`` may be a primitive: in JSON its extensions sit on the
        sibling ``_x`` (https://hl7.org/fhir/R4/json.html#primitive), e.g. the no-basis
        municipality code on ``Address._district``. None when ``base`` is not a named element."""
        if isinstance(base, Member) and base.name not in CHOICE_ROOTS:
            return self._path(Member(Member(base.base, "_" + base.name), "extension"), at_root)
        if isinstance(base, Ident) and base.name[:1].islower() and base.name not in CHOICE_ROOTS:
            return self._path(Member(Ident("_" + base.name), "extension"), at_root)
        return None

    def _predicate(self, cond: Any) -> Callable[[Any, dict], bool]:
        # The common `where(resolve() is Patient)` gets a direct test, no collection building.
        if (
            isinstance(cond, TypeOp)
            and cond.op == "is"
            and isinstance(cond.operand, Call)
            and cond.operand.name == "resolve"
            and cond.operand.base is None
            and not cond.operand.args
        ):
            target = cond.type_name
            return lambda item, root: reference_type(item) == target
        # `where(system='email')`, `where(type='composed-of')`: one dict lookup per item.
        if (
            isinstance(cond, Binary)
            and cond.op == "="
            and isinstance(cond.left, Ident)
            and cond.left.name[:1].islower()
            and cond.left.name not in CHOICE_ROOTS
            and isinstance(cond.right, Literal)
        ):
            key, lit = cond.left.name, cond.right.value
            lit_cls = lit.__class__
            return lambda item, root: (
                item.__class__ is dict
                and (v := item.get(key)).__class__ is lit_cls
                and v == lit
            )
        fn = self.compile(cond, at_root=False)
        if fn is None:
            return lambda item, root: False
        f = fn
        return lambda item, root: _single_bool(f([item], root)) is True

    def _where(self, base: _Fn, cond: Any) -> _Fn:
        pred = self._predicate(cond)
        return lambda items, root: [i for i in base(items, root) if pred(i, root)]

    def _index(self, node: Index, at_root: bool) -> _Fn | None:
        if not isinstance(node.index, Literal) or node.index.value.__class__ is not int:
            raise FhirPathCompileError("only integer literal indexes are supported")
        base = self.compile(node.base, at_root)
        if base is None:
            return None
        i = node.index.value
        return lambda items, root: base(items, root)[i : i + 1]

    def _binary(self, node: Binary, at_root: bool) -> _Fn | None:
        op = node.op
        left = self.compile(node.left, at_root)
        right = self.compile(node.right, at_root)
        if op == "|":
            if left is None:
                return right
            if right is None:
                return left
            lf, rf = left, right
            return lambda items, root: lf(items, root) + rf(items, root)
        lf = left or _empty
        rf = right or _empty
        if op == "=":
            return lambda items, root: _eq(lf(items, root), rf(items, root))
        if op == "!=":

            def ne(items: list[Any], root: dict) -> list[Any]:
                r = _eq(lf(items, root), rf(items, root))
                return [not r[0]] if r else r

            return ne
        if op == "and":

            def and_(items: list[Any], root: dict) -> list[Any]:
                a, b = _single_bool(lf(items, root)), _single_bool(rf(items, root))
                if a is False or b is False:
                    return [False]
                return [True] if a is True and b is True else []

            return and_
        if op == "or":

            def or_(items: list[Any], root: dict) -> list[Any]:
                a, b = _single_bool(lf(items, root)), _single_bool(rf(items, root))
                if a is True or b is True:
                    return [True]
                return [False] if a is False and b is False else []

            return or_
        raise FhirPathCompileError(f"unsupported operator {op!r}")


# (name, arity) of the functions _call implements besides as()/ofType().
_FUNCTIONS = frozenset({
    ("where", 1), ("exists", 0), ("exists", 1), ("empty", 0), ("not", 0), ("hasValue", 0),
    ("first", 0), ("last", 0), ("extension", 1),
})


def _identity(items: list[Any], root: dict) -> list[Any]:
    return items


def _empty(items: list[Any], root: dict) -> list[Any]:
    return []


def _union(a: _Fn, b: _Fn) -> _Fn:
    return lambda items, root: a(items, root) + b(items, root)


def _const_empty_result(func: str) -> _Fn | None:
    # A function applied to a statically empty input: exists()/empty() still answer.
    if func == "exists":
        return lambda items, root: [False]
    if func == "empty":
        return lambda items, root: [True]
    return None


def _chain(base: _Fn, steps: tuple[tuple[str, bool], ...]) -> _Fn:
    if not steps:
        return base
    if base is _identity:
        return lambda items, root: _walk(items, steps)
    return lambda items, root: _walk(base(items, root), steps)


def compile_expression(expression: str, resource_type: str | None = None) -> Extractor:
    """Compile ``expression`` into ``f(resource) -> list`` (the FHIRPath result collection).

    With ``resource_type`` set, leading type names are decided at compile time: branches for
    other types are dropped, so ``Patient.name | Practitioner.name`` compiled for Patient walks
    only ``name``. Without it, leading type names test ``resourceType`` at run time and paths are
    relative to the value passed in (as for composite components). Raises
    :class:`FhirPathCompileError` for unsupported FHIRPath.
    """
    ast = parse(expression)
    fn = _Compiler(resource_type).compile(ast, at_root=True)
    if fn is None:
        return lambda resource: []
    steps = _root_path(ast, resource_type)
    if steps is not None:
        # Plain `Type.a.b` (the common case): walk directly, no closure layers.
        return lambda resource: _walk([resource], steps)
    f = fn
    return lambda resource: f([resource], resource)


def _root_path(node: Any, resource_type: str | None) -> tuple[tuple[str, bool], ...] | None:
    """The member steps of a plain path from the resource (``Type.a.b`` or ``a.b``), else None."""
    steps: list[tuple[str, bool]] = []
    while isinstance(node, Member):
        steps.append((node.name, node.name in CHOICE_ROOTS))
        node = node.base
    if not isinstance(node, Ident):
        return None
    if node.name[0].isupper():
        if resource_type is None or node.name not in (_ABSTRACT | {resource_type}):
            return None
    else:
        steps.append((node.name, node.name in CHOICE_ROOTS))
    if not steps:
        return None
    return tuple(reversed(steps))
