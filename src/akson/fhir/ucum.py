"""Parse UCUM unit expressions and convert a quantity to canonical form (pure, no I/O).

FHIR search compares UCUM quantities in canonical form (https://hl7.org/fhir/R4/search.html#quantity):
`1 g` finds `1000 mg`. This module implements the UCUM grammar (https://ucum.org/ucum, §2–§7,
case-sensitive symbols): products `.`, quotients `/` (left-associative, `/min` is `1/min`),
integer exponents (`m2`, `s-1`), parentheses, `{annotations}` (which mean nothing: `{beats}/min`
is `/min`), integer factors (`10*9`, `10^3`, `12`), and metric prefixes Y Z E P T G M k h da d c m
u n p f a z y on the atoms marked metric.

Supported atoms (anything else makes the whole expression unknown, and `parse` returns None):

- base: m, s, g, rad, K, C, cd, mol; dimensionless 10* 10^ % [ppth] [ppm] [ppb] [pptr] [pi];
- mass: g, t, [gr], [lb_av], [oz_av]; length: m, [in_i], [ft_i], [yd_i], [mi_i];
- volume: l, L (so mL, dL, uL, fL); time: min, h, d, wk, mo (= mo_j), mo_j, mo_g, a (= a_j),
  a_j, a_t, a_g;
- amount and activity: mol, eq, osm, kat, U (µmol/min); arbitrary units [IU] (= [iU]), [arb'U],
  [USP'U], [CFU] — each its own dimension, convertible only to itself (m[IU]/mL ↔ [IU]/L);
- SI derived: sr, Hz, N, Pa, J, W, A, V, Ohm, S, F, Wb, T, H, lm, lx, Bq, Gy, Sv; energy cal,
  cal_th, [Cal]; pressure bar, atm, m[Hg] (mm[Hg]), m[H2O] (cm[H2O]), [psi]; [g], [lbf_av];
  angle deg; [degR]; [drp];
- temperature Cel and [degF]: affine, converted to K, and only when the whole expression is that
  one symbol (`Cel`, `[degF]`); `Cel/h` or `mCel` are unknown, since an offset has no meaning
  inside a product.

Two deliberate choices: `mol` is a base dimension of its own (UCUM defines it as the number
6.0221367e23), so `mmol/L` never compares equal to a count per litre such as `10*9/L`; and
annotations are ignored as UCUM says, so `{score}` compares with `1` and `%`.

The canonical form is a factor times a product of base units: `code` lists them sorted, joined
by `.`, with exponents (`g.m-3`, `mol.m-3`, `s-1`, `1` when dimensionless), and it parses back
to itself with factor 1. Arithmetic is Decimal (34 digits), so `3 dL` is exactly `0.3 L`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, DecimalException
from functools import lru_cache

from akson.fhir.jsonio import ExactDecimal

SYSTEM = "http://unitsofmeasure.org"

# Exponents beyond ±999 overflow (trapped → unknown unit) instead of building huge numbers.
_CTX = Context(prec=34, Emax=999, Emin=-999)
_MAX_LENGTH = 128
_MAX_DEPTH = 16

_Dims = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class UcumUnit:
    """A parsed unit: `canonical = (value + offset) * factor`, in units `code`.

    `offset` is zero except for Cel and [degF] (https://ucum.org/ucum §21, special units).
    """

    code: str
    factor: Decimal
    offset: Decimal = Decimal(0)

    def to_canonical(self, value: Decimal) -> Decimal:
        """`value` in this unit as a number of canonical units (monotonic increasing)."""
        if self.offset:
            value = _CTX.add(value, self.offset)
        return _CTX.multiply(value, self.factor)


@dataclass(frozen=True)
class _Term:
    factor: Decimal
    dims: _Dims = ()

    def times(self, other: _Term, sign: int = 1) -> _Term:
        exps = dict(self.dims)
        for sym, exp in other.dims:
            exps[sym] = exps.get(sym, 0) + sign * exp
        factor = (_CTX.multiply(self.factor, other.factor) if sign > 0
                  else _CTX.divide(self.factor, other.factor))
        return _Term(factor, tuple(sorted((s, e) for s, e in exps.items() if e)))

    def power(self, exp: int) -> _Term:
        return _Term(_CTX.power(self.factor, exp), tuple((s, e * exp) for s, e in self.dims))


_ONE = _Term(Decimal(1))

_PREFIXES = {
    "Y": 24, "Z": 21, "E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "h": 2, "da": 1,
    "d": -1, "c": -2, "m": -3, "u": -6, "n": -9, "p": -12, "f": -15, "a": -18, "z": -21,
    "y": -24,
}

#: Base dimensions (metric). Arbitrary units are dimensions of their own (§4.3 of UCUM).
_BASE = {"m": True, "s": True, "g": True, "rad": True, "K": True, "C": True, "cd": True,
         "mol": True, "[IU]": True, "[arb'U]": False, "[USP'U]": False, "[CFU]": True}

#: symbol, metric, number, definition — each defined in terms of the atoms above it.
_DEFINED: tuple[tuple[str, bool, str, str], ...] = (
    ("10*", False, "10", "1"),
    ("10^", False, "10", "1"),
    ("[pi]", False, "3.141592653589793238462643383279503", "1"),
    ("%", False, "1", "10*-2"),
    ("[ppth]", False, "1", "10*-3"),
    ("[ppm]", False, "1", "10*-6"),
    ("[ppb]", False, "1", "10*-9"),
    ("[pptr]", False, "1", "10*-12"),
    ("sr", True, "1", "rad2"),
    ("deg", False, "2", "[pi].rad/360"),
    ("Hz", True, "1", "s-1"),
    ("N", True, "1", "kg.m/s2"),
    ("Pa", True, "1", "N/m2"),
    ("J", True, "1", "N.m"),
    ("W", True, "1", "J/s"),
    ("A", True, "1", "C/s"),
    ("V", True, "1", "J/C"),
    ("F", True, "1", "C/V"),
    ("Ohm", True, "1", "V/A"),
    ("S", True, "1", "Ohm-1"),
    ("Wb", True, "1", "V.s"),
    ("T", True, "1", "Wb/m2"),
    ("H", True, "1", "Wb/A"),
    ("lm", True, "1", "cd.sr"),
    ("lx", True, "1", "lm/m2"),
    ("Bq", True, "1", "s-1"),
    ("Gy", True, "1", "J/kg"),
    ("Sv", True, "1", "J/kg"),
    ("l", True, "1", "dm3"),
    ("L", True, "1", "l"),
    ("t", True, "1000", "kg"),
    ("min", False, "60", "s"),
    ("h", False, "60", "min"),
    ("d", False, "24", "h"),
    ("wk", False, "7", "d"),
    ("a_j", False, "365.25", "d"),
    ("a_t", False, "365.24219", "d"),
    ("a_g", False, "365.2425", "d"),
    ("a", False, "1", "a_j"),
    ("mo_j", False, "1", "a_j/12"),
    ("mo_g", False, "1", "a_g/12"),
    ("mo", False, "1", "mo_j"),
    ("eq", True, "1", "mol"),
    ("osm", True, "1", "mol"),
    ("kat", True, "1", "mol/s"),
    ("U", True, "1", "umol/min"),
    ("[iU]", True, "1", "[IU]"),
    ("bar", True, "100000", "Pa"),
    ("atm", False, "101325", "Pa"),
    ("m[Hg]", True, "133.3220", "kPa"),
    ("m[H2O]", True, "9.80665", "kPa"),
    ("[in_i]", False, "2.54", "cm"),
    ("[ft_i]", False, "12", "[in_i]"),
    ("[yd_i]", False, "3", "[ft_i]"),
    ("[mi_i]", False, "5280", "[ft_i]"),
    ("[gr]", False, "64.79891", "mg"),
    ("[lb_av]", False, "7000", "[gr]"),
    ("[oz_av]", False, "1", "[lb_av]/16"),
    ("[g]", False, "9.80665", "m/s2"),
    ("[lbf_av]", False, "1", "[lb_av].[g]"),
    ("[psi]", False, "1", "[lbf_av]/[in_i]2"),
    ("cal_th", True, "4.184", "J"),
    ("cal", True, "1", "cal_th"),
    ("[Cal]", False, "1", "kcal_th"),
    ("[degR]", False, "5", "K/9"),
    ("[drp]", False, "1", "ml/20"),
)

#: The affine units, accepted only as the whole expression: (offset, factor) to kelvin.
_SPECIAL = {
    "Cel": UcumUnit("K", Decimal(1), Decimal("273.15")),
    "[degF]": UcumUnit("K", _CTX.divide(Decimal(5), Decimal(9)), Decimal("459.67")),
}

# A simple unit with its exponent: the exponent is the trailing signed digits (`10*-3`, `m2`).
# Exponents have at most three digits: nothing real needs more, and it bounds the arithmetic.
_SIMPLE = re.compile(r"(?P<sym>.*?)(?P<exp>[+-]?[0-9]{1,3})?")


class _Invalid(Exception):
    """Not a UCUM expression this module understands."""


class _Parser:
    """Recursive descent over the UCUM grammar (https://ucum.org/ucum §7, "Grammar")."""

    def __init__(self, text: str, atoms: dict[str, tuple[bool, _Term]]) -> None:
        self.s = text
        self.i = 0
        self.atoms = atoms

    def main(self) -> _Term:
        if self.s.startswith("/"):
            self.i = 1
            result = _ONE.times(self.term(0), -1)
        else:
            result = self.term(0)
        if self.i != len(self.s):
            raise _Invalid
        return result

    def term(self, depth: int) -> _Term:
        if depth > _MAX_DEPTH:
            raise _Invalid
        acc = self.component(depth)
        while self.i < len(self.s) and self.s[self.i] in "./":
            op = self.s[self.i]
            self.i += 1
            acc = acc.times(self.component(depth), 1 if op == "." else -1)
        return acc

    def component(self, depth: int) -> _Term:
        s = self.s
        if self.i >= len(s):
            raise _Invalid
        if s[self.i] == "(":
            self.i += 1
            inner = self.term(depth + 1)
            if self.i >= len(s) or s[self.i] != ")":
                raise _Invalid
            self.i += 1
            return inner
        if s[self.i] == "{":
            self.annotation()
            return _ONE
        start = self.i
        while self.i < len(s) and s[self.i] not in "./(){}":
            if s[self.i] == "[":  # a bracketed symbol part is read whole
                end = s.find("]", self.i)
                if end < 0:
                    raise _Invalid
                self.i = end + 1
            else:
                self.i += 1
        term = self.simple(s[start:self.i])
        if self.i < len(s) and s[self.i] == "{":
            self.annotation()
        return term

    def annotation(self) -> None:
        end = self.s.find("}", self.i)
        body = self.s[self.i + 1:end] if end > 0 else None
        if body is None or "{" in body or any(not 32 <= ord(ch) <= 126 for ch in body):
            raise _Invalid
        self.i = end + 1

    def simple(self, text: str) -> _Term:
        if text.isascii() and text.isdigit():  # an integer factor such as `12` in `a_j/12`
            return _Term(Decimal(text))
        m = _SIMPLE.fullmatch(text)
        if m is None or not m.group("sym"):
            raise _Invalid
        sym, exp = m.group("sym"), m.group("exp")
        term = self.atom(sym)
        return term.power(int(exp)) if exp is not None else term

    def atom(self, sym: str) -> _Term:
        found = self.atoms.get(sym)
        if found is not None:
            return found[1]
        for prefix in ("da", sym[:1]):  # `da` first: `dam` is decametre
            rest = sym[len(prefix):]
            if not sym.startswith(prefix) or prefix not in _PREFIXES or not rest:
                continue
            metric, term = self.atoms.get(rest, (False, _ONE))
            if metric:  # only metric atoms take a prefix (UCUM §3.4)
                return _Term(_CTX.scaleb(term.factor, _PREFIXES[prefix]), term.dims)
        raise _Invalid


def _build_atoms() -> dict[str, tuple[bool, _Term]]:
    atoms: dict[str, tuple[bool, _Term]] = {
        sym: (metric, _Term(Decimal(1), ((sym, 1),))) for sym, metric in _BASE.items()}
    for sym, metric, number, definition in _DEFINED:
        term = _Parser(definition, atoms).main()
        atoms[sym] = (metric, _Term(_CTX.multiply(Decimal(number), term.factor), term.dims))
    return atoms


_ATOMS = _build_atoms()


def _code(dims: _Dims) -> str:
    return ".".join(sym if exp == 1 else f"{sym}{exp}" for sym, exp in dims) or "1"


@lru_cache(maxsize=4096)
def parse(expression: str) -> UcumUnit | None:
    """The canonical unit and factor of a UCUM expression; None when it is not one (or uses an
    atom outside the supported set in the module docstring)."""
    special = _SPECIAL.get(expression)
    if special is not None:
        return special
    if not expression or len(expression) > _MAX_LENGTH or not expression.isascii():
        return None
    try:
        term = _Parser(expression, _ATOMS).main()
    except (_Invalid, DecimalException, ValueError):
        return None
    if not term.factor.is_finite() or term.factor <= 0:
        return None
    return UcumUnit(_code(term.dims), term.factor)


def to_decimal(value: object) -> Decimal | None:
    """A JSON number (ExactDecimal keeps its digits, a float its shortest repr) or numeric text
    as a finite Decimal; None for anything else."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, ExactDecimal):
            number = Decimal(value.text)
        elif isinstance(value, (int, float)):
            number = Decimal(value if isinstance(value, int) else repr(value))
        elif isinstance(value, str) and "_" not in value:
            number = Decimal(value.strip())
        else:
            return None
    except DecimalException:
        return None
    return number if number.is_finite() else None


def canonical(value: object, unit: str) -> tuple[Decimal, str] | None:
    """`value unit` as (value, unit) in canonical form: `(1000, "mg")` → `(1.000, "g")`,
    `(37, "Cel")` → `(310.15, "K")`. None when the unit or the value is not understood."""
    parsed = parse(unit)
    number = to_decimal(value)
    if parsed is None or number is None:
        return None
    try:
        return parsed.to_canonical(number), parsed.code
    except DecimalException:
        return None
