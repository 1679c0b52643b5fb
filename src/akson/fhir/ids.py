"""FHIR id and reference syntax (https://hl7.org/fhir/R4/datatypes.html#id)."""

from __future__ import annotations

import re

#: R4 `id`: 1–64 characters of letters, digits, '-' and '.'.
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
