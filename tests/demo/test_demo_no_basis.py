"""Everything the demo generates conforms to HL7 Norway's no-basis rules, not only to R4."""

from __future__ import annotations

from collections import Counter

from akson.demo import build_demo
from akson.fhir.profiles import no_basis


def test_every_generated_resource_passes_no_basis_checks():
    demo = build_demo(municipalities=2, persons=120, seed=7)
    items = list(demo.register_items())
    for chunk in demo.chunks(60):
        items += chunk.items
    types = Counter(res_type for res_type, _, _ in items)
    assert types["Patient"] >= 120 and types["Practitioner"] and types["Organization"]
    problems = [
        (res_type, res_id, issue.expression, issue.diagnostics)
        for res_type, res_id, resource in items
        for issue in no_basis.check(resource)
        if issue.severity == "error"
    ]
    assert problems == []
