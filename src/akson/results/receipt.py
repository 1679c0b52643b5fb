"""The application receipt every delivered message gets, modelled on KITH AppRec 1.1.

Status as AppRec (Volven 8258): `OK` (1), `Rejected` (2, Avvist), `OkErrorInMessagePart` (3).
Errors carry an AppRec error code (Volven 8221, see `model.REASONS`) and a text an operator can
act on. The receipt is answered as JSON, or as AppRec XML to KITH senders (`to_apprec_xml`).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from xml.etree import ElementTree as ET

import orjson

from akson.results.model import REASONS

OK: Final = "OK"
REJECTED: Final = "Rejected"
PARTLY: Final = "OkErrorInMessagePart"
_STATUS_CODE = {OK: "1", REJECTED: "2", PARTLY: "3"}
_STATUS_TEXT = {OK: "OK", REJECTED: "Avvist", PARTLY: "OK, feil i delmelding"}
APPREC_NS: Final = "http://www.kith.no/xmlstds/apprec/2012-02-15"
_ERROR_SYSTEM = "2.16.578.1.12.4.1.1.8221"
_STATUS_SYSTEM = "2.16.578.1.12.4.1.1.8258"

#: What happened to one report.
STORED: Final = "stored"  # written (new versions)
UNCHANGED: Final = "unchanged"  # a re-delivery: nothing to write
STALE: Final = "stale"  # older than what is stored: ignored
UNMATCHED: Final = "unmatched"  # patient not identified: waits in the manual matching queue
RESERVED: Final = "reserved"  # the patient reserved against storage: not stored


@dataclass(frozen=True)
class ReportOutcome:
    report_key: str
    outcome: str
    status: str  # the report's lifecycle (model.LIFECYCLE)
    resources: tuple[str, ...] = ()  # "Type/id" written or kept
    detail: str | None = None
    patient: str | None = None  # the matched Patient's id


@dataclass(frozen=True)
class Error:
    reason: str  # model.REASONS key
    text: str

    @property
    def code(self) -> str:
        return REASONS.get(self.reason, "X99")


@dataclass(frozen=True)
class Receipt:
    status: str
    message_id: str | None
    format: str
    reports: tuple[ReportOutcome, ...] = ()
    errors: tuple[Error, ...] = ()
    notes: tuple[str, ...] = ()
    receipt_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    issued: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    #: The inbox key of the delivery (operators look it up by it); set once stored.
    delivery: int | None = None
    #: True when these exact bytes had been delivered before: the first receipt, unchanged.
    duplicate: bool = False

    @property
    def status_code(self) -> str:
        return _STATUS_CODE[self.status]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["statusCode"] = self.status_code
        out["errors"] = [{"reason": e.reason, "code": e.code, "text": e.text}
                         for e in self.errors]
        return out

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def loads(cls, data: bytes) -> Receipt:
        doc = orjson.loads(data)
        return cls(status=doc["status"], message_id=doc.get("message_id"), format=doc["format"],
                   reports=tuple(ReportOutcome(**{**r, "resources": tuple(r["resources"])})
                                 for r in doc.get("reports") or []),
                   errors=tuple(Error(e["reason"], e["text"]) for e in doc.get("errors") or []),
                   notes=tuple(doc.get("notes") or ()), receipt_id=doc["receipt_id"],
                   issued=doc["issued"], delivery=doc.get("delivery"),
                   duplicate=bool(doc.get("duplicate")))

    def again(self) -> Receipt:
        """This receipt, answered to a re-delivery of the same bytes."""
        return replace(self, duplicate=True)

    def to_apprec_xml(self) -> bytes:
        """The receipt as a KITH AppRec 1.1 document (namespace APPREC_NS)."""
        ET.register_namespace("", APPREC_NS)

        def el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
            node = ET.SubElement(parent, f"{{{APPREC_NS}}}{tag}", attrs)
            if text is not None:
                node.text = text
            return node

        root = ET.Element(f"{{{APPREC_NS}}}AppRec")
        el(root, "MsgType", V="APPREC", DN="Applikasjonskvittering")
        el(root, "MIGversion", "v1.1 2012-02-15")
        el(root, "GenDate", self.issued)
        el(root, "Id", self.receipt_id)
        sender = el(el(root, "Sender"), "HCP")
        el(el(sender, "Inst"), "Name", "Akson prøvesvar")
        el(root, "Status", V=self.status_code, DN=_STATUS_TEXT[self.status], S=_STATUS_SYSTEM)
        for e in self.errors:
            el(root, "Error", V=e.code, S=_ERROR_SYSTEM, DN=e.reason, OT=e.text[:500])
        original = el(root, "OriginalMsgId")
        el(original, "MsgType", V="SVAR_LAB", DN="Svarrapport")
        el(original, "IssueDate", self.issued)
        el(original, "Id", self.message_id or "")
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)
