"""Registry of search parameters: the R4 set plus SearchParameter resources added at run time.

Each parameter's FHIRPath ``expression`` is compiled once per base resource type into an
extractor (see :mod:`akson.fhir.fhirpath_compile`), so indexing a write never interprets
FHIRPath. https://hl7.org/fhir/R4/searchparameter.html, https://hl7.org/fhir/R4/search.html
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

import orjson

from akson.fhir.fhirpath_compile import Extractor, FhirPathCompileError, compile_expression
from akson.fhir.outcome import FhirError

#: Search-parameter types of R4 (https://hl7.org/fhir/R4/valueset-search-param-type.html).
PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
# Bases whose parameters apply to every resource type.
_COMMON_BASES = ("Resource", "DomainResource")


@dataclass(frozen=True)
class SearchParam:
    """One search parameter (the parts of a SearchParameter resource the server uses).

    ``extractors`` maps each base resource type to its compiled expression; it is empty when the
    expression could not be compiled (the parameter is known, but not indexed).
    https://hl7.org/fhir/R4/searchparameter.html
    """

    code: str
    type: str
    base: tuple[str, ...]
    expression: str
    url: str
    target: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()
    extractors: Mapping[str, Extractor] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def extractor(self, resource_type: str) -> Extractor | None:
        """The compiled expression for ``resource_type`` (common params: any type), or None."""
        fn = self.extractors.get(resource_type)
        if fn is None:
            for common in _COMMON_BASES:
                fn = self.extractors.get(common)
                if fn is not None:
                    break
        return fn


def _invalid(where: str, diagnostics: str) -> FhirError:
    return FhirError(400, diagnostics, "invalid", (where,))


def compile_param(resource: Mapping[str, Any]) -> tuple[SearchParam, str | None]:
    """Build a :class:`SearchParam` from a SearchParameter resource.

    Returns the parameter and, when its expression could not be compiled, the reason (the
    parameter then has no extractors). Raises :class:`FhirError` (400) when the resource lacks
    what a search parameter needs (code, base, a known type).
    """
    if resource.get("resourceType") != "SearchParameter":
        raise _invalid("resourceType", "Expected a SearchParameter resource")
    code = resource.get("code")
    if not isinstance(code, str) or not code:
        raise _invalid("SearchParameter.code", "SearchParameter.code is required")
    if "+" in code:  # the index rows of akson.fhir.pairs are named `token+other`
        raise _invalid("SearchParameter.code", "SearchParameter.code may not contain '+' "
                       "(Akson names its paired index rows with it)")
    ptype = resource.get("type")
    if not isinstance(ptype, str) or ptype not in PARAM_TYPES:
        raise _invalid("SearchParameter.type", "SearchParameter.type must be an R4 search type")
    base = resource.get("base")
    if not isinstance(base, list) or not base or not all(isinstance(b, str) for b in base):
        raise _invalid("SearchParameter.base", "SearchParameter.base is required")
    expression = resource.get("expression") or ""
    if not isinstance(expression, str):
        raise _invalid("SearchParameter.expression", "SearchParameter.expression must be a string")
    url = resource.get("url") or ""
    components = tuple(
        (str(c.get("definition", "")), str(c.get("expression", "")))
        for c in resource.get("component") or ()
        if isinstance(c, dict)
    )
    extractors: dict[str, Extractor] = {}
    problem: str | None = None
    if not expression:
        problem = "no expression"
    else:
        try:
            for b in base:
                extractors[b] = compile_expression(expression, b)
        except FhirPathCompileError as exc:
            extractors = {}
            problem = str(exc)
    param = SearchParam(
        code=code,
        type=ptype,
        base=tuple(base),
        expression=expression,
        url=str(url),
        target=tuple(t for t in resource.get("target") or () if isinstance(t, str)),
        components=components,
        extractors=MappingProxyType(extractors),
    )
    return param, problem


class SearchParamRegistry:
    """Search parameters by resource type and code, including the common ``Resource`` ones.

    Parameters without an expression (``_text``, ``_content``, ``_query``) are not registered.
    Parameters whose expression did not compile are registered (so a search names them as known)
    but have no extractor; :attr:`uncompiled` lists them with the reason.
    """

    def __init__(self, params: Iterable[SearchParam] = ()) -> None:
        self._by_base: dict[str, dict[str, SearchParam]] = {}
        self._views: dict[str, Mapping[str, SearchParam]] = {}
        self._by_url: dict[str, SearchParam] = {}
        self._lock = threading.Lock()
        #: Changes on every change, so caches built from the registry know when to rebuild.
        #: Drawn from one process-wide counter: (id(registry), version) never repeats, even when
        #: a registry's id is reused after it is collected.
        self.version = next(_VERSIONS)
        #: Urls of parameters whose index rows are still being built (a reindex job is queued
        #: or running): searches on them may miss resources written before they were added.
        self.pending: set[str] = set()
        #: (url or code, reason) for parameters registered without an extractor.
        self.uncompiled: list[tuple[str, str]] = []
        for p in params:
            self._register(p)

    # construction

    @classmethod
    def default(cls) -> SearchParamRegistry:
        """The R4 search parameters (loaded once per process; treat as shared)."""
        global _DEFAULT
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                data = resources.files("akson.fhir.data") / "search-parameters.json"
                reg = cls.from_bundle(orjson.loads(data.read_bytes()))
                # Akson's Norwegian parameters (no-basis extensions), ours, not HL7's file.
                ours = resources.files("akson.fhir.data") / "no-search-parameters.json"
                for entry in orjson.loads(ours.read_bytes())["entry"]:
                    reg._add(entry["resource"])
                _DEFAULT = reg
            return _DEFAULT

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any]) -> SearchParamRegistry:
        """Build a registry from a Bundle of SearchParameter resources (like the R4 file)."""
        reg = cls()
        for entry in bundle.get("entry") or ():
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and res.get("expression"):
                reg._add(res)
        return reg

    def copy(self) -> SearchParamRegistry:
        """An independent registry with the same parameters (to add to without side effects)."""
        new = SearchParamRegistry()
        new._by_base = {b: dict(ps) for b, ps in self._by_base.items()}
        new._by_url = dict(self._by_url)
        new.uncompiled = list(self.uncompiled)
        new.pending = set(self.pending)
        return new

    def add(self, param_resource: Mapping[str, Any]) -> SearchParam:
        """Register a SearchParameter resource at run time; replaces a same-code parameter and
        the parameter with the same url (whose code or bases may have changed).

        Unlike the bulk R4 load, an expression that cannot be compiled is refused with a 400,
        because indexing silently nothing would make searches on it wrong.
        """
        param, problem = compile_param(param_resource)
        if problem is not None:
            raise FhirError(
                400, f"SearchParameter.expression is not supported: {problem}", "not-supported",
                ("SearchParameter.expression",),
            )
        with self._lock:
            if param.url:
                self._unregister(param.url)
            self._register(param)
        return param

    def remove(self, url: str) -> SearchParam | None:
        """Unregister the parameter with this url (from every base); the removed one, or None."""
        with self._lock:
            return self._unregister(url)

    def by_url(self, url: str) -> SearchParam | None:
        """The registered parameter with this canonical url, or None."""
        return self._by_url.get(url)

    def _unregister(self, url: str) -> SearchParam | None:
        old = self._by_url.pop(url, None)
        if old is None:
            return None
        for b in old.base:
            ps = self._by_base.get(b)
            if ps is not None and ps.get(old.code) is old:
                del ps[old.code]
        self._views = {}
        self.version = next(_VERSIONS)
        return old

    def _add(self, resource: Mapping[str, Any]) -> None:
        param, problem = compile_param(resource)
        if problem is not None:
            self.uncompiled.append((param.url or param.code, problem))
        self._register(param)

    def _register(self, param: SearchParam) -> None:
        for b in param.base:
            self._by_base.setdefault(b, {})[param.code] = param
        if param.url:
            self._by_url[param.url] = param
        self._views = {}
        self.version = next(_VERSIONS)

    # lookup

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        """The parameter ``code`` for ``resource_type`` (its own, else a common one), or None."""
        own = self._by_base.get(resource_type)
        if own is not None:
            p = own.get(code)
            if p is not None:
                return p
        for common in _COMMON_BASES:
            p = self._by_base.get(common, {}).get(code)
            if p is not None:
                return p
        return None

    def for_type(self, resource_type: str) -> Mapping[str, SearchParam]:
        """All parameters that apply to ``resource_type``, by code (read-only view, cached)."""
        view = self._views.get(resource_type)
        if view is None:
            merged: dict[str, SearchParam] = {}
            for common in reversed(_COMMON_BASES):
                merged.update(self._by_base.get(common, {}))
            merged.update(self._by_base.get(resource_type, {}))
            view = MappingProxyType(merged)
            self._views[resource_type] = view
        return view

    @property
    def resource_types(self) -> frozenset[str]:
        """Resource types that have parameters of their own (all R4 types for the default set)."""
        return frozenset(b for b in self._by_base if b not in _COMMON_BASES)

    def __iter__(self) -> Iterator[SearchParam]:
        """Each registered parameter once."""
        seen: set[int] = set()
        for ps in self._by_base.values():
            for p in ps.values():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p


_DEFAULT: SearchParamRegistry | None = None
_DEFAULT_LOCK = threading.Lock()
_VERSIONS = itertools.count(1)
