"""KITH Svarrapport XML (v1.3 and v1.4, bare or in a MsgHead envelope) → ParsedMessage.

Entry point `parse_svarrapport(data)`. Schemas: KITH svar-v13.xsd (namespace
`http://www.kith.no/xmlstds/labsvar/2008-12-01`, several ServReports) and svar-v1.4.xsd
(`.../labsvar/2012-02-15`, one ServReport); MsgHead 2006-05-24 carries the Svarrapport in
`Document/RefDoc/Content`. Mapping: NHN's "Mapping fra XML til FHIR (R4)" for Pasientens
prøvesvar (ex-NILAR); see `kith_report` and `kith_observations`. Pure: bytes in, no I/O.
"""

from __future__ import annotations

import re
from typing import Final
from xml.etree.ElementTree import Element

from akson.results import kith_values as kv
from akson.results import xmlbytes
from akson.results.kith_parties import ids_of
from akson.results.kith_report import build_report, report_key
from akson.results.model import ParsedMessage, ParsedReport, Rejected

NS_V13: Final = "http://www.kith.no/xmlstds/labsvar/2008-12-01"
NS_V14: Final = "http://www.kith.no/xmlstds/labsvar/2012-02-15"
NS_MSGHEAD: Final = "http://www.kith.no/xmlstds/msghead/2006-05-24"
FORMATS: Final = {NS_V13: "kith-svarrapport-1.3", NS_V14: "kith-svarrapport-1.4"}
#: Message/Type codes accepted: SVAR_LAB and SVAR_RTG ("Svarrapport-Radiologi", two of NHN's
#: examples); `S` ("Svar"/"Svarrapport") is the older code several producers still send (three of
#: NHN's example messages), accepted with a warning.
MESSAGE_TYPES: Final = frozenset({"SVAR_LAB", "SVAR_RTG"})
LEGACY_TYPES: Final = frozenset({"S"})
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def parse_svarrapport(data: bytes) -> ParsedMessage:
    """Parse one delivered Svarrapport; raise `Rejected(code, text)` for what cannot be used.

    Codes: `empty`, `encoding`, `unreadable` (not well-formed, DTD/entities), `schema` (not a
    Svarrapport: root, namespace or message type), `no-message-id`, `no-results` (no
    ServReport), `no-patient`, `invalid-value` (GenDate or IssueDate unreadable).
    """
    parsed = xmlbytes.parse(data)
    warnings = list(parsed.warnings)
    message, namespace = _find_message(parsed.root)
    _strip_namespace(message, namespace)
    _check_type(message, warnings)
    message_id = (message.findtext("MsgId") or "").strip()
    if not message_id:
        raise Rejected("no-message-id", "the message has no MsgId")
    gen_date = kv.instant(kv.attr(message.find("GenDate")))
    if gen_date is None:
        raise Rejected("invalid-value", "Message/GenDate is missing or not a readable date")
    reports = message.findall("ServReport")
    if not reports:
        raise Rejected("no-results", "the message holds no ServReport")
    sender, sender_id = _sender(reports[0])
    parsed_reports: list[ParsedReport] = []
    for index, report in enumerate(reports, 1):
        key = report_key(sender_id or sender, report, message_id, index, warnings)
        parsed_reports.append(build_report(report, key=key, message_id=message_id,
                                           gen_date=gen_date, warnings=warnings))
    return ParsedMessage(format=FORMATS[namespace], message_id=message_id, sender=sender,
                         reports=tuple(parsed_reports), sender_id=sender_id,
                         warnings=tuple(dict.fromkeys(warnings)))


def _find_message(root: Element) -> tuple[Element, str]:
    """The Svarrapport `Message` element and its namespace, bare or inside MsgHead."""
    for ns in FORMATS:
        if root.tag == f"{{{ns}}}Message":
            return root, ns
    if root.tag == f"{{{NS_MSGHEAD}}}MsgHead":
        for content in root.iterfind(f"{{{NS_MSGHEAD}}}Document/{{{NS_MSGHEAD}}}RefDoc/"
                                     f"{{{NS_MSGHEAD}}}Content"):
            for child in content:
                for ns in FORMATS:
                    if child.tag == f"{{{ns}}}Message":
                        return child, ns
        raise Rejected("schema", "the MsgHead envelope carries no KITH Svarrapport")
    raise Rejected("schema", "the root element is not a KITH Svarrapport Message (labsvar "
                             "2008-12-01 or 2012-02-15) nor a MsgHead envelope")


def _strip_namespace(message: Element, namespace: str) -> None:
    """Drop the labsvar namespace from element names so paths read like the XSD; elements of
    other namespaces (XHTML in results, base64 containers) keep theirs."""
    prefix = f"{{{namespace}}}"
    for el in message.iter():
        if isinstance(el.tag, str) and el.tag.startswith(prefix):
            el.tag = el.tag[len(prefix):]


def _check_type(message: Element, warnings: list[str]) -> None:
    kind = kv.attr(message.find("Type"))
    if kind in MESSAGE_TYPES:
        return
    if kind in LEGACY_TYPES:
        warnings.append(f"message type {kind} read as SVAR_LAB")
        return
    shown = kind if kind and _SAFE_CODE.fullmatch(kind) else "(missing or unreadable)"
    raise Rejected("schema", f"message type {shown} is not a Svarrapport (SVAR_LAB, SVAR_RTG)")


def _sender(report: Element) -> tuple[str, str | None]:
    """The service provider organisation: its name, and its orgnr (else HER-id) when given."""
    inst = report.find("ServProvider/HCP/Inst")
    if inst is None:
        prof = report.find("ServProvider/HCP/HCProf")
        name = (prof.findtext("Name") or "").strip() if prof is not None else ""
        return name or "unknown sender", None
    name = (inst.findtext("Name") or "").strip() or "unknown sender"
    ids = ids_of(inst)
    for wanted in ("ENH", "HER"):
        for kind, value in ids:
            if kind == wanted:
                return name, value
    return name, None
