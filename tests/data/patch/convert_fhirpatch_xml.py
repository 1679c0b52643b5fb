"""One-off converter: FHIR/fhir-test-cases r4/patch/fhir-patch-tests.xml -> fhirpatch-cases.json.

Run once from the repository root (kept for provenance; not used by the tests):
    .venv/bin/python tests/data/patch/convert_fhirpatch_xml.py \
        /work/shared/corpora/conformance-testscripts/fhir-patch-tests/fhir-patch-tests.xml
It is a minimal FHIR XML -> JSON translation (https://hl7.org/fhir/R4/xml.html, json.html) that
uses the R4 JSON schema for cardinalities and primitive JSON types.
"""

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

FHIR = "{http://hl7.org/fhir}"
XHTML = "{http://www.w3.org/1999/xhtml}"
# Cardinalities and JSON types come from the R4 JSON schema bundled with akson.
SCHEMA = Path(__file__).parents[3] / "src/akson/fhir/data/fhir.schema.json"
DEFS = json.loads(SCHEMA.read_text(encoding="utf-8"))["definitions"]


def prop(type_name: str | None, name: str) -> tuple[bool, str | None, str]:
    """(repeats, element type, JSON primitive kind) of `name` in `type_name`, per the schema."""
    p = DEFS.get(type_name or "", {}).get("properties", {}).get(name)
    if p is None:
        raise SystemExit(f"unknown element {type_name}.{name}")
    many = p.get("type") == "array"
    target = p.get("items", {}) if many else p
    ref = target.get("$ref", "").rsplit("/", 1)[-1] or None
    kind = target.get("type") or DEFS.get(ref or "", {}).get("type", "string")
    return many, ref, kind


def local(tag: str) -> str:
    return tag.split("}", 1)[1] if "}" in tag else tag


def xhtml(el: ET.Element, top: bool = True) -> str:
    """Serialize an XHTML element the way FHIR JSON carries Narrative.div (default namespace)."""

    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    name = local(el.tag)
    attrs = ' xmlns="http://www.w3.org/1999/xhtml"' if top else ""
    attrs += "".join(f' {k}="{esc(v)}"' for k, v in el.attrib.items())
    inner = esc(el.text or "") + "".join(xhtml(c, False) + esc(c.tail or "") for c in el)
    return f"<{name}{attrs}>{inner}</{name}>"


def primitive(kind: str, raw: str):
    if kind == "boolean":
        return raw == "true"
    if kind == "number":
        return float(raw) if "." in raw else int(raw)
    return raw


def element(el: ET.Element, type_name: str) -> dict:
    """Children of a complex element / resource as a JSON object."""
    out: dict = {}
    for attr in ("id", "url"):
        if attr in el.attrib:
            out[attr] = el.attrib[attr]
    for child in el:
        if not isinstance(child.tag, str):
            continue  # comments
        name = local(child.tag)
        if child.tag.startswith(XHTML):
            out[name] = xhtml(child)
            continue
        many, child_type, kind = prop(type_name, name)
        if name == "resource":
            res = next(c for c in child if isinstance(c.tag, str))
            value = {"resourceType": local(res.tag), **element(res, local(res.tag))}
            shadow = None
        elif "value" in child.attrib:
            value = primitive(kind, child.attrib["value"])
            rest = element(child, "Element")
            shadow = rest or None
        else:
            value, shadow = element(child, child_type or ""), None
        if many:
            out.setdefault(name, []).append(value)
            if shadow:
                out.setdefault("_" + name, []).append(shadow)
        else:
            out[name] = value
            if shadow:
                out["_" + name] = shadow
    return out


def resource(holder: ET.Element | None):
    if holder is None:
        return None
    res = next(c for c in holder if isinstance(c.tag, str))
    return {"resourceType": local(res.tag), **element(res, local(res.tag))}


def main(src: str) -> None:
    root = ET.parse(src, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=False)))
    cases = []
    for case in root.getroot().iter("case"):
        item = {
            "name": case.get("name"),
            "mode": case.get("mode"),
            "input": resource(case.find("input")),
            "patch": resource(case.find("diff")),
        }
        error = case.find("error")
        if error is not None:
            item["error"] = error.get("msg")
        else:
            item["output"] = resource(case.find("output"))
        cases.append(item)
    dest = Path(__file__).with_name("fhirpatch-cases.json")
    dest.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {dest}")


if __name__ == "__main__":
    main(sys.argv[1])
