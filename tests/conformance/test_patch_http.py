"""Official FHIRPath Patch cases applied through HTTP PATCH on the running server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

CASES = json.loads(
    (Path(__file__).parents[1] / "data" / "patch" / "fhirpatch-cases.json").read_text(encoding="utf-8")
)
CHOSEN = ["Replace Primitive", "Add Complex", "Insert in list #1", "Delete from List #2",
          "Consecutive operations"]
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _without_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


@pytest.mark.parametrize("name", CHOSEN)
def test_fhirpath_patch_case_over_http(name: str, client: httpx.Client) -> None:
    case = next(c for c in CASES if c["name"] == name)
    rid = "patchcase-" + name.lower().replace(" ", "-").replace("#", "")
    start = {**case["input"], "id": rid}
    put = client.put(f"/Patient/{rid}", json=start, headers=FHIR_JSON)
    assert put.status_code in (200, 201), put.text
    version = put.json()["meta"]["versionId"]

    resp = client.patch(f"/Patient/{rid}", json=case["patch"], headers=FHIR_JSON)

    assert resp.status_code == 200, resp.text
    stored = client.get(f"/Patient/{rid}").json()
    assert _without_meta(stored) == _without_meta(case["output"])
    assert stored["meta"]["versionId"] != version
    assert _without_meta(resp.json()) == _without_meta(case["output"])
