"""SMART on FHIR scopes, v1 (`patient/*.read`) and v2 (`user/Observation.rs?code=…`).

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html — v1 `read`/`write`/`*`
are mapped onto v2 letters (c create, r read, u update, d delete, s search), so the policy checks
one form. Scopes that are not resource scopes (`openid`, `launch/patient`, `offline_access`,
HelseID scopes) are returned by `parse_scopes` as `None` entries and ignored by `allows`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(\?.*)?$")
_V2_LETTERS = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope: context (patient/user/system), type (or `*`), permitted interactions."""

    context: str
    resource_type: str
    interactions: frozenset[str]
    query: str = ""  # v2 `?param=value` restriction, kept verbatim

    def permits(self, resource_type: str, interaction: str) -> bool:
        """True when this scope covers `interaction` (one of c r u d s) on `resource_type`."""
        return (self.resource_type in ("*", resource_type)) and interaction in self.interactions


def parse_scope(text: str) -> Scope | None:
    """One scope string → a `Scope`, or None when it is not a resource scope or is malformed."""
    m = _RESOURCE_SCOPE.match(text)
    if not m:
        return None
    context, res_type, perm, query = m.group(1), m.group(2), m.group(3), m.group(4) or ""
    if perm in _V1:
        letters = _V1[perm]
    elif _V2_LETTERS.match(perm) and perm:
        letters = perm
    else:
        return None
    return Scope(context, res_type, frozenset(letters), query.lstrip("?"))


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """A space-separated `scope` claim → its resource scopes (others dropped)."""
    out = (parse_scope(s) for s in text.split())
    return tuple(s for s in out if s is not None)


def allows(scopes: tuple[Scope, ...], resource_type: str, interaction: str,
           context: str | None = None) -> bool:
    """True when some scope (of `context`, if given) permits `interaction` on `resource_type`."""
    return any(s.permits(resource_type, interaction) and (context is None or s.context == context)
               for s in scopes)


def scope_text(scope: Scope) -> str:
    """A scope as a v2 string (`system/Observation.rs?…`): `parse_scope` reads it back."""
    letters = "".join(c for c in "cruds" if c in scope.interactions)
    return f"{scope.context}/{scope.resource_type}.{letters}" + (f"?{scope.query}"
                                                                 if scope.query else "")
