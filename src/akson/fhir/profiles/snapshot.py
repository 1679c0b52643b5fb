"""A small generic checker of a resource against a StructureDefinition snapshot (for tests only).

It exists to cross-check the hand-written rules of `akson.fhir.profiles.no_basis` against the
published no-basis snapshots: what `no_basis.check` accepts should be accepted here too. It is not
a FHIR validator, and it is deliberately small.

What it checks, walking the instance along the snapshot's element tree (element ids):

- cardinality (`min` / `max`) of every element it reaches, including `max = 0`;
- `fixed[x]` (equality) and `pattern[x]` (the instance contains the pattern) on those elements;
- choice elements (`value[x]`, …): the JSON key's type is one the element allows;
- slicing with discriminators of type `value` or `pattern` on a plain path (`url`, `system`,
  `coding.system`, …): each repetition is matched to the first slice whose fixed/pattern value at
  that path it has — or, for extension slices, whose type profile is its `url` — then slice
  cardinality and the slice's own elements are checked; unmatched repetitions are errors under
  `rules = closed` and are checked against the unsliced element otherwise;
- type profiles (no-basis-Address, no-basis-HumanName, extension definitions, …) when the
  snapshot does not unfold the element and `resolve` returns the profile's StructureDefinition.

What it does not check: element types other than choice keys, unknown elements and primitive
formats (the R4 JSON schema does that: `akson.fhir.validation`), FHIRPath invariants
(`constraint`), terminology bindings, reference target profiles, discriminators of type `type`,
`profile` or `exists` or with FHIRPath functions in the path, re-slicing, slice ordering,
`contentReference` elements, `modifierExtension` semantics and base datatype definitions that are
not in the snapshot (an unfolded `ContactPoint` is not looked inside).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from akson.fhir.outcome import Issue

__all__ = ["Resolver", "check_snapshot"]

#: Finds a StructureDefinition (with snapshot) by canonical URL, or None if unknown.
Resolver = Callable[[str], Mapping[str, Any] | None]

_PREFIXES = ("fixed", "pattern")


@dataclass
class _Tree:
    """A snapshot indexed by element id: children and slices of each element."""

    elements: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    root: str = ""

    @classmethod
    def of(cls, sd: Mapping[str, Any]) -> _Tree:
        tree = cls()
        elements = (sd.get("snapshot") or {}).get("element") or []
        for element in elements:
            eid = element.get("id") or element.get("path")
            if not isinstance(eid, str):
                continue
            tree.elements[eid] = element
            parent, _, last = eid.rpartition(".")
            if not parent:
                tree.root = tree.root or eid
            elif ":" in last:
                # "a.b:slice" is a slice of "a.b"; re-slices ("a.b:s/t") are treated as slices.
                tree.slices.setdefault(f"{parent}.{last.split(':', 1)[0]}", []).append(element)
            else:
                tree.children.setdefault(parent, []).append(element)
        return tree


@dataclass
class _Item:
    """One repetition of an element: its JSON value, its `_x` companion, its FHIRPath."""

    value: Any
    companion: Any
    where: str
    key: str


def check_snapshot(
    sd: Mapping[str, Any], resource: Mapping[str, Any], resolve: Resolver | None = None
) -> list[Issue]:
    """Issues where `resource` breaks what this checker understands of the snapshot `sd`.

    `sd` must have a `snapshot`; `resolve` looks up type profiles (see the module docstring for
    what is and is not checked). Diagnostics name elements and rules, never instance values.
    """
    tree = _Tree.of(sd)
    if not tree.root:
        raise ValueError("the StructureDefinition has no snapshot")
    checker = _Checker(resolve)
    base = str(sd.get("type") or tree.root)
    if sd.get("kind") == "resource" and resource.get("resourceType") != base:
        return [Issue(f"The resource is not a {base}", "invalid", "error", ("resourceType",))]
    checker.children(tree, tree.root, dict(resource), base)
    return checker.issues


class _Checker:
    def __init__(self, resolve: Resolver | None) -> None:
        self.resolve = resolve
        self.issues: list[Issue] = []
        self.trees: dict[str, _Tree | None] = {}

    def error(self, where: str, problem: str, code: str = "structure") -> None:
        self.issues.append(Issue(f"{where} {problem}", code, "error", (where,)))

    def tree_for(self, url: str) -> _Tree | None:
        if url not in self.trees:
            sd = self.resolve(url.split("|", 1)[0]) if self.resolve else None
            self.trees[url] = _Tree.of(sd) if sd and (sd.get("snapshot") or {}).get("element") else None
        return self.trees[url]

    # ----------------------------------------------------------------------- elements

    def children(self, tree: _Tree, parent_id: str, node: Any, base: str) -> None:
        """Check the child elements of `parent_id` in the JSON object `node`."""
        if not isinstance(node, dict):
            return
        for element in tree.children.get(parent_id, []):
            items = list(_items(node, element, base))
            self.element(tree, element, items, base)

    def element(self, tree: _Tree, element: dict[str, Any], items: list[_Item], base: str) -> None:
        name = str(element.get("path", "")).rsplit(".", 1)[-1].removesuffix("[x]")
        self.cardinality(element, len(items), f"{base}.{name}")
        allowed = _choice_keys(element)
        for item in items:
            if allowed is not None and item.key not in allowed:
                self.error(item.where, "has a type this element does not allow")
        slices = tree.slices.get(element["id"], [])
        slicing = element.get("slicing")
        if not slices or not isinstance(slicing, dict):
            for item in items:
                self.item(tree, element, item)
            return
        matched: dict[str, list[_Item]] = {s["id"]: [] for s in slices}
        for item in items:
            chosen = next((s for s in slices if self.matches(tree, s, slicing, item)), None)
            if chosen is not None:
                matched[chosen["id"]].append(item)
            elif slicing.get("rules") == "closed":
                self.error(item.where, "matches none of the slices of this closed slicing")
            else:
                self.item(tree, element, item)
        for s in slices:
            self.cardinality(s, len(matched[s["id"]]), f"{base}.{name}", f" (slice {s.get('sliceName')})")
            for item in matched[s["id"]]:
                self.item(tree, s, item)

    def cardinality(self, element: dict[str, Any], count: int, where: str, label: str = "") -> None:
        low, high = element.get("min", 0), element.get("max", "*")
        if isinstance(low, int) and count < low:
            self.error(where, f"occurs {count} time(s){label}, at least {low} required", "required")
        if isinstance(high, str) and high.isascii() and high.isdigit() and count > int(high):
            self.error(where, f"occurs {count} time(s){label}, at most {high} allowed")

    def item(self, tree: _Tree, element: dict[str, Any], item: _Item) -> None:
        """Check one repetition: fixed/pattern values, then its children or its type profile."""
        for key, expected in element.items():
            if key.startswith(_PREFIXES) and not _conforms(item.value, expected, key.startswith("pattern")):
                self.error(item.where, f"does not have the value the profile fixes ({key})", "value")
        # A primitive's children (id, extension) live in its `_x` companion object.
        node = item.value if isinstance(item.value, dict) else item.companion
        if tree.children.get(element["id"]):
            self.children(tree, element["id"], node, item.where)
            return
        for profile in _type_profiles(element):
            sub = self.tree_for(profile)
            if sub is not None:
                self.children(sub, sub.root, node, item.where)
                return

    # ------------------------------------------------------------------------ slicing

    def matches(self, tree: _Tree, s: dict[str, Any], slicing: dict[str, Any], item: _Item) -> bool:
        discriminators = slicing.get("discriminator") or []
        if not discriminators:
            return False
        for d in discriminators:
            path = d.get("path")
            if d.get("type") not in ("value", "pattern") or not isinstance(path, str):
                return False
            wanted = _slice_value(tree, s, path)
            if wanted is None:
                return False
            pattern, expected = wanted
            values = list(_at_path(item.value, path)) if path != "$this" else [item.value]
            if not any(_conforms(v, expected, pattern) for v in values):
                return False
        return True


# ---------------------------------------------------------------------------- helpers


def _items(node: dict[str, Any], element: dict[str, Any], base: str) -> Iterator[_Item]:
    """The repetitions of `element` in `node` (choice elements: every `name<Type>` key)."""
    name = str(element.get("path", "")).rsplit(".", 1)[-1]
    if name.endswith("[x]"):
        prefix = name[:-3]
        keys = [k for k in node if k.startswith(prefix) and k[len(prefix) : len(prefix) + 1].isupper()]
        keys += [
            k[1:]
            for k in node
            if k.startswith(f"_{prefix}")
            and k[1 + len(prefix) : 2 + len(prefix)].isupper()
            and k[1:] not in node
        ]
    else:
        keys = [name] if name in node or f"_{name}" in node else []
    for key in keys:
        value, companion = node.get(key), node.get(f"_{key}")
        if isinstance(value, list) or isinstance(companion, list):
            values = value if isinstance(value, list) else []
            companions = companion if isinstance(companion, list) else []
            for i in range(max(len(values), len(companions))):
                v = values[i] if i < len(values) else None
                c = companions[i] if i < len(companions) else None
                yield _Item(v, c, f"{base}.{key}[{i}]", key)
        else:
            yield _Item(value, companion, f"{base}.{key}", key)


def _choice_keys(element: dict[str, Any]) -> set[str] | None:
    """JSON keys a choice element allows (`valueString`, …), or None if it is not a choice."""
    name = str(element.get("path", "")).rsplit(".", 1)[-1]
    if not name.endswith("[x]"):
        return None
    codes = [t.get("code") for t in element.get("type") or [] if isinstance(t.get("code"), str)]
    return {name[:-3] + c[0].upper() + c[1:] for c in codes if c}


def _type_profiles(element: dict[str, Any]) -> list[str]:
    return [p for t in element.get("type") or [] for p in t.get("profile") or [] if isinstance(p, str)]


def _slice_value(tree: _Tree, s: dict[str, Any], path: str) -> tuple[bool, Any] | None:
    """(is pattern, value) a slice requires at a discriminator path, or None if not fixed."""
    if path == "$this":
        holder: dict[str, Any] | None = s
    else:
        holder = tree.elements.get(f"{s['id']}.{path}")
    for key, value in (holder or {}).items():
        if key.startswith(_PREFIXES):
            return key.startswith("pattern"), value
    if path == "url":
        profiles = _type_profiles(s)
        if profiles:
            return False, profiles[0].split("|", 1)[0]
    return None


def _at_path(value: Any, path: str) -> Iterator[Any]:
    """All values at a dotted path under `value`, flattening arrays on the way."""
    current = [value]
    for part in path.split("."):
        nxt: list[Any] = []
        for v in current:
            if isinstance(v, dict) and part in v:
                child = v[part]
                nxt.extend(child if isinstance(child, list) else [child])
        current = nxt
    yield from current


def _conforms(value: Any, expected: Any, pattern: bool) -> bool:
    """fixed: exact equality; pattern: every element of `expected` is present in `value`."""
    if not pattern or not isinstance(expected, dict | list):
        return bool(value == expected)
    if isinstance(expected, dict):
        return isinstance(value, dict) and all(
            k in value and _conforms(value[k], v, True) for k, v in expected.items()
        )
    return isinstance(value, list) and all(any(_conforms(v, e, True) for v in value) for e in expected)
