"""Expand R4 ValueSets against stored CodeSystems and ValueSets, without I/O (valueset.html#compose).

`expand` evaluates a ValueSet — its `expansion.contains` when it carries one, otherwise its
`compose` — into the codes it holds: explicit `concept` lists, whole code systems, `filter`s on a
CodeSystem's hierarchy and properties (https://hl7.org/fhir/R4/valueset.html#compose,
codesystem-filter-operator.html), imported value sets (`include.valueSet`, intersected with the
include's system), `exclude` and `inactive`. Resources come from a `resolve(type, url, version)`
callback; `load` gathers them through an async fetch callback the caller supplies, so this module
does no I/O itself.

A code system that is included whole but is not stored here (all of LOINC, say) stays "every code
of that system": a `Concept` with `code` None, which `:in` turns into `system = …`. A filter on such
a system cannot be evaluated and is a 400 naming the ValueSet and the code system, as are import
cycles and expansions beyond `limit` codes (search.html#token: `:in`, `:not-in`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from akson.fhir.outcome import FhirError

#: Largest expansion `$expand` lists.
MAX_CODES = 100_000
#: Most codes the `:in` / `:not-in` expansions of one search may hold together: each code is a
#: statement parameter (two, with an OR per code), and PostgreSQL takes at most 65,535.
SEARCH_CODES = 30_000
#: Most distinct canonical URLs (CodeSystems and ValueSets) one expansion may load.
MAX_RESOURCES = 200
#: Deepest chain of `include.valueSet` imports (keeps recursion far from Python's limit).
MAX_DEPTH = 32
#: Stored versions of one canonical URL looked at (newest first) when picking a version.
MAX_VERSIONS = 20
#: Longest `regex` filter value accepted.
MAX_REGEX = 200

#: Standard concept properties (https://hl7.org/fhir/R4/codesystem-concept-properties.html).
_CP = "http://hl7.org/fhir/concept-properties#"
#: Filter operators on the concept hierarchy (codesystem-filter-operator.html).
_HIERARCHY_OPS = frozenset({"is-a", "descendent-of", "is-not-a", "generalizes"})

Pair = tuple[str, str | None]
#: (resourceType, canonical url without version, version or None) → the resource, or None.
Resolve = Callable[[str, str, str | None], dict | None]
#: (resourceType, canonical url) → the stored resources with that url, newest first.
Fetch = Callable[[str, str], Awaitable[list[dict]]]


@dataclass(frozen=True)
class Concept:
    """One code of an expansion; `code` None is every code of a system not stored here."""

    system: str
    code: str | None
    display: str | None = None
    version: str | None = None
    inactive: bool = False


def expand(valueset: dict, resolve: Resolve, *, limit: int = MAX_CODES, label: str | None = None,
           purpose: str = "") -> list[Concept]:
    """The codes of `valueset`, in the order its definition gives them.

    `label` names the ValueSet in errors (default: its url or `ValueSet/id`); `purpose` is
    appended to the "too large to expand" message (e.g. " for search"). Raises FhirError 400
    (never anything else) when the ValueSet cannot be expanded here.
    """
    label = label or _label(valueset)
    codes = _Expander(resolve, limit, purpose).valueset(valueset, label)
    return codes.concepts()


def expand_valueset(valueset: dict, resolve: Resolve, *, limit: int = MAX_CODES,
                    label: str | None = None) -> list[Pair]:
    """(system, code) pairs of `valueset` for search's `:in` / `:not-in`; code None stands
    for a whole code system (search.html#token)."""
    return [(c.system, c.code) for c in expand(valueset, resolve, limit=limit, label=label,
                                                purpose=" for search")]


def references(valueset: dict) -> set[tuple[str, str]]:
    """The (resourceType, canonical url) a ValueSet's definition uses directly: the CodeSystem
    of every include/exclude `system` and every imported `valueSet` (versions dropped)."""
    out: set[tuple[str, str]] = set()
    compose = valueset.get("compose")
    if _uses_expansion(valueset) or not isinstance(compose, dict):
        return out
    for part in _parts(compose, "include") + _parts(compose, "exclude"):
        system = part.get("system")
        if isinstance(system, str):
            out.add(("CodeSystem", system))
        for canonical in part.get("valueSet") or ():
            if isinstance(canonical, str):
                out.add(("ValueSet", canonical.split("|", 1)[0]))
    return out


class Library:
    """CodeSystems and ValueSets loaded for one expansion, by canonical URL (newest first)."""

    def __init__(self, max_resources: int = MAX_RESOURCES) -> None:
        self._found: dict[tuple[str, str], list[dict]] = {}
        self._max = max_resources

    def add(self, res_type: str, url: str, resources: Iterable[dict]) -> None:
        """Record what is stored under `url` (possibly nothing: then it is known to be absent)."""
        self._found[(res_type, url)] = [r for r in resources if isinstance(r, dict)]

    def missing(self, root: dict) -> list[tuple[str, str]]:
        """What `root` and the ValueSets it imports (transitively) use that is not loaded yet;
        400 when that would be more than `max_resources` canonical URLs."""
        need: set[tuple[str, str]] = set()
        seen: set[int] = set()
        todo = [root]
        while todo:
            vs = todo.pop()
            if id(vs) in seen:
                continue
            seen.add(id(vs))
            for key in references(vs):
                if key not in self._found:
                    need.add(key)
                elif key[0] == "ValueSet":
                    todo.extend(self._found[key])
        if len(self._found) + len(need) > self._max:
            raise FhirError(400, f"ValueSet '{_label(root)}' uses more than {self._max} code "
                            "systems and value sets", "too-costly")
        return sorted(need)

    def resolve(self, res_type: str, url: str, version: str | None) -> dict | None:
        """The newest loaded resource with `url` (and `version`, when given); a `Resolve`."""
        for resource in self._found.get((res_type, url), ()):
            if version is None or resource.get("version") == version:
                return resource
        return None


async def load(root: dict, fetch: Fetch, library: Library | None = None) -> Library:
    """Load, through `fetch`, everything `root` needs to be expanded (imports transitively)."""
    library = library or Library()
    while need := library.missing(root):
        for res_type, url in need:
            library.add(res_type, url, await fetch(res_type, url))
    return library


# ------------------------------------------------------------------------------ internals


def _label(valueset: dict) -> str:
    url, vid = valueset.get("url"), valueset.get("id")
    if isinstance(url, str) and url:
        return url[:200]
    return f"ValueSet/{vid}"[:200] if isinstance(vid, str) else "the ValueSet"


def _uses_expansion(valueset: dict) -> bool:
    """A ValueSet carrying `expansion.contains` is taken as expanded by its publisher."""
    expansion = valueset.get("expansion")
    return isinstance(expansion, dict) and bool(expansion.get("contains"))


def _parts(compose: dict, key: str) -> list[dict]:
    return [p for p in compose.get(key) or () if isinstance(p, dict)]


class _CodeSet:
    """Codes by system, in insertion order; a system mapped to None holds every code."""

    __slots__ = ("systems",)

    def __init__(self) -> None:
        self.systems: dict[str, dict[str, Concept] | None] = {}

    def size(self) -> int:
        return sum(1 if codes is None else len(codes) for codes in self.systems.values())

    def add(self, concept: Concept) -> None:
        if concept.code is None:
            self.systems[concept.system] = None
            return
        codes = self.systems.setdefault(concept.system, {})
        if codes is not None:
            codes.setdefault(concept.code, concept)

    def update(self, other: _CodeSet) -> None:
        for system, codes in other.systems.items():
            if codes is None:
                self.systems[system] = None
            else:
                for concept in codes.values():
                    self.add(concept)

    def intersect(self, other: _CodeSet) -> _CodeSet:
        out = _CodeSet()
        for system, mine in self.systems.items():
            if system not in other.systems:
                continue
            theirs = other.systems[system]
            if mine is None:
                out.systems[system] = None if theirs is None else dict(theirs)
            elif theirs is None:
                out.systems[system] = dict(mine)
            else:  # keep whichever side knows the display
                out.systems[system] = {code: c if c.display else theirs[code]
                                       for code, c in mine.items() if code in theirs}
        return out

    def minus(self, other: _CodeSet, label: str) -> _CodeSet:
        out = _CodeSet()
        for system, mine in self.systems.items():
            theirs = other.systems.get(system, {})
            if theirs is None:
                continue  # the whole system is excluded
            if mine is None:
                if theirs:
                    raise FhirError(400, f"ValueSet '{label}' excludes codes from code system "
                                    f"'{system[:200]}', which is not stored on this server, so "
                                    "what remains cannot be listed", "not-supported")
                out.systems[system] = None
            else:
                out.systems[system] = {k: c for k, c in mine.items() if k not in theirs}
        return out

    def active(self) -> _CodeSet:
        out = _CodeSet()
        for system, codes in self.systems.items():
            out.systems[system] = None if codes is None else \
                {k: c for k, c in codes.items() if not c.inactive}
        return out

    def concepts(self) -> list[Concept]:
        out: list[Concept] = []
        for system, codes in self.systems.items():
            if codes is None:
                out.append(Concept(system, None))
            else:
                out.extend(codes.values())
        return out


class _CodeSystemIndex:
    """A stored CodeSystem's concepts with their hierarchy and property values.

    The hierarchy joins nested `concept`s and the `parent` / `child` properties
    (codesystem.html#hierarchy, codesystem-concept-properties.html), possibly with several
    parents per code.
    """

    def __init__(self, cs: dict, system: str) -> None:
        version = cs.get("version") if isinstance(cs.get("version"), str) else None
        declared: dict[str, object] = {p["code"]: p.get("uri") for p in cs.get("property") or ()
                                       if isinstance(p, dict) and isinstance(p.get("code"), str)}

        def named(name: str) -> frozenset[str]:
            return frozenset({name} | {c for c, uri in declared.items() if uri == _CP + name})

        self.parent_props, self.child_props = named("parent"), named("child")
        inactive_props, status_props = named("inactive"), named("status")
        self.concepts: dict[str, Concept] = {}
        self.props: dict[str, dict[str, list[str]]] = {}
        self.parents: dict[str, set[str]] = {}
        self.children: dict[str, set[str]] = {}
        stack: list[tuple[object, str | None]] = [(c, None) for c in
                                                  reversed(cs.get("concept") or ())]
        while stack:  # depth-first in document order, without recursion
            item, parent = stack.pop()
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                continue
            code = item["code"]
            props: dict[str, list[str]] = {}
            for prop in item.get("property") or ():
                if isinstance(prop, dict) and isinstance(prop.get("code"), str):
                    value = _property_value(prop)
                    if value is not None:
                        props.setdefault(prop["code"], []).append(value)
            if parent is not None:
                self._edge(parent, code)
            for name, values in props.items():
                for value in values:
                    if name in self.parent_props:
                        self._edge(value, code)
                    elif name in self.child_props:
                        self._edge(code, value)
            if code not in self.concepts:
                inactive = any(v == "true" for p in inactive_props for v in props.get(p, ())) \
                    or any(v in ("retired", "inactive") for p in status_props
                           for v in props.get(p, ()))
                display = item.get("display")
                self.concepts[code] = Concept(system, code, display if isinstance(display, str)
                                              else None, version, inactive)
                self.props[code] = props
            stack.extend((child, code) for child in reversed(item.get("concept") or ()))

    def _edge(self, parent: str, child: str) -> None:
        self.children.setdefault(parent, set()).add(child)
        self.parents.setdefault(child, set()).add(parent)

    def closure(self, code: str, links: dict[str, set[str]]) -> set[str]:
        """`code`'s descendants (links = children) or ancestors (links = parents), not itself
        unless the hierarchy has a cycle through it."""
        out: set[str] = set()
        todo = list(links.get(code, ()))
        while todo:
            nxt = todo.pop()
            if nxt not in out:
                out.add(nxt)
                todo.extend(links.get(nxt, ()))
        return out

    def values(self, code: str, prop: str) -> list[str]:
        """The values of property `prop` for `code` (`concept` / `code` is the code itself)."""
        if prop in ("concept", "code"):
            return [code]
        if prop == "display":
            display = self.concepts[code].display
            return [display] if display else []
        if prop in self.parent_props:
            return sorted(self.parents.get(code, ()))
        if prop in self.child_props:
            return sorted(self.children.get(code, ()))
        return self.props[code].get(prop, [])


def _property_value(prop: dict) -> str | None:
    """A concept property's value[x] as text (a Coding by its code)."""
    for key, value in prop.items():
        if not key.startswith("value"):
            continue
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            code = value.get("code")
            return code if isinstance(code, str) else None
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return getattr(value, "text", None) or str(value)
    return None


class _Expander:
    """One expansion: memoised imports and CodeSystem indexes, the import stack for cycles."""

    def __init__(self, resolve: Resolve, limit: int, purpose: str) -> None:
        self.resolve = resolve
        self.limit = limit
        self.purpose = purpose
        self.memo: dict[str, _CodeSet] = {}
        self.indexes: dict[int, _CodeSystemIndex] = {}
        self.stack: list[str] = []

    def valueset(self, vs: dict, key: str) -> _CodeSet:
        if key in self.stack:
            raise FhirError(400, f"ValueSet '{self.stack[0]}' cannot be expanded: ValueSet "
                            f"'{key[:200]}' imports itself (directly or through others)",
                            "processing")
        if len(self.stack) >= MAX_DEPTH:
            raise FhirError(400, f"ValueSet '{self.stack[0]}' imports value sets more than "
                            f"{MAX_DEPTH} deep", "too-costly")
        if key in self.memo:
            return self.memo[key]
        self.stack.append(key)
        try:
            result = self._definition(vs, key)
        finally:
            self.stack.pop()
        self.memo[key] = result
        return result

    def _definition(self, vs: dict, label: str) -> _CodeSet:
        if _uses_expansion(vs):
            return self._contains(vs["expansion"]["contains"], label)
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            raise FhirError(400, f"ValueSet '{label}' has neither a compose nor an expansion",
                            "not-supported")
        result = _CodeSet()
        for include in _parts(compose, "include"):
            result.update(self._part(include, label))
            self._check(result, label)
        for exclude in _parts(compose, "exclude"):
            result = result.minus(self._part(exclude, label), label)
        if compose.get("inactive") is False:
            result = result.active()
        return result

    def _contains(self, contains: list, label: str) -> _CodeSet:
        out = _CodeSet()
        stack = list(reversed(contains))
        while stack:
            item = stack.pop()
            if not isinstance(item, dict):
                continue
            system, code = item.get("system"), item.get("code")
            if isinstance(system, str) and isinstance(code, str):
                display, version = item.get("display"), item.get("version")
                out.add(Concept(system, code, display if isinstance(display, str) else None,
                                version if isinstance(version, str) else None,
                                item.get("inactive") is True))
            stack.extend(reversed(item.get("contains") or ()))
        self._check(out, label)
        return out

    def _part(self, part: dict, label: str) -> _CodeSet:
        """One include or exclude: its system's codes intersected with every imported set."""
        pieces: list[_CodeSet] = []
        system = part.get("system")
        if isinstance(system, str):
            pieces.append(self._system(part, system, label))
        elif part.get("concept") or part.get("filter"):
            raise FhirError(400, f"ValueSet '{label}' lists concepts or filters without a "
                            "system (valueset.html#compose, vsd-2)", "invalid")
        for canonical in part.get("valueSet") or ():
            if not isinstance(canonical, str):
                continue
            url, _, version = canonical.partition("|")
            imported = self.resolve("ValueSet", url, version or None)
            if imported is None:
                raise FhirError(400, f"ValueSet '{label}' imports ValueSet '{canonical[:200]}', "
                                "which is not stored on this server", "not-found")
            pieces.append(self.valueset(imported, canonical))
        if not pieces:
            raise FhirError(400, f"ValueSet '{label}' has an include or exclude with neither a "
                            "system nor a valueSet (vsd-1)", "invalid")
        out = pieces[0]
        for piece in pieces[1:]:
            out = out.intersect(piece)
        return out

    def _system(self, part: dict, system: str, label: str) -> _CodeSet:
        version = part.get("version") if isinstance(part.get("version"), str) else None
        cs = self.resolve("CodeSystem", system, version)
        index = None
        if cs is not None and cs.get("content") != "not-present":
            index = self.indexes.get(id(cs))
            if index is None:
                index = self.indexes[id(cs)] = _CodeSystemIndex(cs, system)
        concepts, filters = part.get("concept"), part.get("filter")
        out = _CodeSet()
        if concepts and filters:
            raise FhirError(400, f"ValueSet '{label}' has an include with both concepts and "
                            "filters (vsd-3)", "invalid")
        if concepts:
            for item in concepts:
                if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                    continue
                known = index.concepts.get(item["code"]) if index else None
                display = item.get("display")
                concept = known or Concept(system, item["code"], None, version)
                if isinstance(display, str):
                    concept = replace(concept, display=display)
                out.add(concept)
        elif filters:
            if index is None:
                named = f"'{system[:200]}'" + (f" version '{version[:40]}'" if version else "")
                raise FhirError(400, f"ValueSet '{label}' filters on code system {named}, which "
                                "is not stored on this server", "not-supported")
            codes: Iterable[str] = index.concepts
            for f in filters:
                matched = self._filter(index, f, label)
                codes = [c for c in codes if c in matched]
            for code in codes:
                out.add(index.concepts[code])
        elif index is None or cs is None or cs.get("content", "complete") != "complete":
            out.add(Concept(system, None, version=version))  # every code, listed or not
        else:
            for concept in index.concepts.values():
                out.add(concept)
        self._check(out, label)
        return out

    def _filter(self, index: _CodeSystemIndex, f: object, label: str) -> set[str]:
        """The codes of `index` one filter selects (codesystem-filter-operator.html)."""
        if not isinstance(f, dict) or not all(isinstance(f.get(k), str)
                                              for k in ("property", "op", "value")):
            raise FhirError(400, f"ValueSet '{label}' has a filter without property, op and "
                            "value", "invalid")
        prop, op, value = f["property"], f["op"], f["value"]
        everything = index.concepts.keys()
        if op in _HIERARCHY_OPS:
            if prop not in ("concept", "code"):
                raise FhirError(400, f"ValueSet '{label}' filters '{op}' on property "
                                f"'{prop[:64]}'; only 'concept' is supported", "not-supported")
            if value not in index.concepts:
                return set(everything) if op == "is-not-a" else set()
            if op == "generalizes":
                return index.closure(value, index.parents) | {value}
            below = index.closure(value, index.children)
            if op == "descendent-of":
                return below - {value}
            if op == "is-a":
                return below | {value}
            return set(everything) - below - {value}  # is-not-a
        if op == "=":
            return {c for c in everything if value in index.values(c, prop)}
        if op in ("in", "not-in"):
            wanted = {v.strip() for v in value.split(",") if v.strip()}
            hit = {c for c in everything if wanted.intersection(index.values(c, prop))}
            return hit if op == "in" else set(everything) - hit
        if op == "exists":
            if value not in ("true", "false"):
                raise FhirError(400, f"ValueSet '{label}' has an 'exists' filter whose value is "
                                "not true or false", "invalid")
            return {c for c in everything if bool(index.values(c, prop)) == (value == "true")}
        if op == "regex":
            pattern = _regex(value, label)
            return {c for c in everything
                    if any(pattern.fullmatch(v) for v in index.values(c, prop))}
        raise FhirError(400, f"ValueSet '{label}' uses the filter operator '{op[:40]}', which "
                        "is not supported", "not-supported")

    def _check(self, codes: _CodeSet, label: str) -> None:
        if codes.size() > self.limit:
            raise FhirError(400, f"ValueSet '{self.stack[0] if self.stack else label}' is too "
                            f"large to expand{self.purpose} (more than {self.limit} codes)",
                            "too-costly")


def _regex(value: str, label: str) -> re.Pattern[str]:
    """A filter's regex, refused when long or shaped for catastrophic backtracking."""
    if len(value) > MAX_REGEX or _nests_quantifiers(value):
        raise FhirError(400, f"ValueSet '{label}' has a regex filter that is too long or nests "
                        "quantifiers", "too-costly")
    try:
        return re.compile(value)
    except re.error as exc:
        raise FhirError(400, f"ValueSet '{label}' has a regex filter that is not a valid "
                        f"regular expression ({exc.msg})", "invalid") from None


def _nests_quantifiers(pattern: str) -> bool:
    """True for a repeated group that itself repeats, like `(a+)+` or `(\\w*x)*`: the shape of
    catastrophic backtracking, which Python's `re` cannot time out."""
    groups: list[bool] = []  # per open group: does it hold a repetition?
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":  # a character class: its `*`, `+` and `(` are literals
            i += 2 if pattern[i + 1:i + 2] == "]" else 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif ch == "(":
            groups.append(False)
        elif ch == ")" and groups:
            inner = groups.pop()
            if inner and pattern[i + 1:i + 2] in ("*", "+", "{"):
                return True
            if groups and inner:
                groups[-1] = True
        elif ch in "*+{" and groups:
            groups[-1] = True
        i += 1
    return False
