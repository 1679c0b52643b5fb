"""Tests for akson.fhir.text.normalize (string search folding)."""

from __future__ import annotations

import pytest

from akson.fhir.text import normalize


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Søreng", "soreng"),
        ("SØRENG", "soreng"),
        ("Ærlig", "aerlig"),
        ("ærlig", "aerlig"),
        ("Åse", "ase"),
        ("ÅSE", "ase"),
        ("Müller", "muller"),
        ("Straße", "strasse"),
        ("José", "jose"),
        ("Chalmers", "chalmers"),
        ("ﬁnn", "finn"),  # NFKD compatibility ligature
        ("", ""),
    ],
)
def test_folds(raw: str, folded: str) -> None:
    assert normalize(raw) == folded


def test_prefix_search_without_norwegian_letters() -> None:
    assert normalize("Søreng").startswith("sore")
    assert normalize("Bjørnstjerne Bjørnson").startswith(normalize("bjornstjerne"))


def test_idempotent() -> None:
    for s in ("Søreng", "Ærlig", "Straße", "Åse-Marie Ødegård"):
        assert normalize(normalize(s)) == normalize(s)
