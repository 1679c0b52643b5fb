"""Where the externally written corpora are: `../shared/corpora` beside the checkout (CI lays a
copy there), else /work/shared/corpora; `AKSON_CORPORA` overrides both. Tests that need them skip,
saying so, when none exists."""

from __future__ import annotations

import os
from pathlib import Path


def corpora_dir() -> Path:
    if os.environ.get("AKSON_CORPORA"):
        return Path(os.environ["AKSON_CORPORA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "corpora"
    return beside if beside.exists() else Path("/work/shared/corpora")


CORPORA = corpora_dir()
