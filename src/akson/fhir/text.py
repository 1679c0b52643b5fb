"""Case- and accent-insensitive normal form of strings for FHIR string search."""

from __future__ import annotations

import unicodedata

# Norwegian letters that Unicode does not decompose (æ, ø) are folded explicitly, so a user typing
# on a keyboard without them ("Soreng", "Aerlig") still finds the person. å decomposes to a + ring
# under NFKD anyway; it is listed so the intent is visible in one place.
_FOLDS = str.maketrans({"æ": "ae", "Æ": "ae", "ø": "o", "Ø": "o", "å": "a", "Å": "a"})


def normalize(s: str) -> str:
    """Return the form string search compares: accents and case removed.

    Steps: fold æ→ae, ø→o, å→a (either case); ``casefold`` (so ß→ss); NFKD; drop combining marks.
    So ``normalize("Søreng") == "soreng"``, ``normalize("Ærlig") == "aerlig"``,
    ``normalize("Müller") == "muller"``. The default string search is a case- and
    accent-insensitive prefix match on this form (https://hl7.org/fhir/R4/search.html#string);
    ``:exact`` compares the original text instead. Folding ø to o (not oe) is a deliberate choice:
    it is what Norwegians type without the letter and what ASCII transliteration of names uses.
    """
    if s.isascii():
        return s.lower()
    folded = unicodedata.normalize("NFKD", s.translate(_FOLDS).casefold())
    return "".join(c for c in folded if not unicodedata.combining(c))
