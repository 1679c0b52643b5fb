"""HL7 v2 ORU^R01 (lab and imaging results) to `ParsedMessage`, and the ACK/NAK reply.

Spec: HL7 v2.5.1 chapter 7 (ORU^R01 message structure, OBR/OBX/SPM), chapter 2 (MSH, MSA, ERR,
acknowledgment modes), mapped per the HL7 v2-to-FHIR IG
(https://build.fhir.org/ig/HL7/v2-to-fhir/ "ORU_R01 to Bundle"). Reads versions 2.3, 2.3.1, 2.4,
2.5 and 2.5.1, and 2.6–2.8 leniently. Syntax is in `hl7v2_syntax`, data types in `hl7v2_types`,
OBX values in `hl7v2_values`, the resources of one order in `hl7v2_resources`. Pure: bytes in,
`ParsedMessage` or `Rejected`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from akson.results import hl7v2_types as t
from akson.results.hl7v2_resources import ObservationGroup, OrderGroup, build_report
from akson.results.hl7v2_syntax import (
    DEFAULT,
    Message,
    Segment,
    dtm_to_fhir,
    escape,
    split_message,
)
from akson.results.model import REASONS, ParsedMessage, ParsedReport, PatientKey, Rejected

__all__ = ["ACCEPTED_VERSIONS", "LENIENT_VERSIONS", "ack", "parse_oru"]

ACCEPTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
#: Later versions are read with the 2.5.1 rules: ORU^R01 changed little after it.
LENIENT_VERSIONS = frozenset({"2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"})

_SEX = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}


def parse_oru(data: bytes) -> ParsedMessage:
    """Parse an ORU^R01 message into one `ParsedReport` per ORDER_OBSERVATION group.

    Raises `Rejected` with code `unreadable` (no MSH / not HL7 v2), `schema` (not ORU^R01),
    `version` (MSH-12 not read here), `no-message-id` (no MSH-10), `no-patient` (no PID),
    or `no-results` (no OBR). Unreadable dates are left out and non-numeric NM values kept as
    text, each with a warning. Rejection texts name fields, never their values.
    """
    if not data or not data.strip():
        raise Rejected("empty", "the message is empty")
    msg = split_message(data)
    msh = msg.segments[0]
    version = msh.comp(12)
    if (msh.comp(9, 1).upper(), msh.comp(9, 2).upper()) != ("ORU", "R01"):
        raise Rejected("schema", "MSH-9 is not ORU^R01")
    if version not in ACCEPTED_VERSIONS and version not in LENIENT_VERSIONS:
        raise Rejected("version", "MSH-12 names an HL7 version this service does not read")
    message_id = msh.comp(10).strip()
    if not message_id:
        raise Rejected("no-message-id", "MSH-10 (message control id) is empty")
    warnings = list(msg.warnings)
    if version in LENIENT_VERSIONS:
        warnings.append(f"HL7 version {version} read with the 2.5.1 rules")
    groups = _groups(msg, warnings)
    if not any(s.name == "PID" for s in msg.segments):
        raise Rejected("no-patient", "the message has no PID segment")
    if not groups:
        raise Rejected("no-results", "the message has no OBR segment")
    facility = msh.comp(4, 1) or msh.comp(4, 2) or msh.comp(3, 1) or msh.comp(3, 2)
    sender = facility or "unknown"
    reports: list[ParsedReport] = []
    keys: dict[str, int] = {}
    for n, (pid, group) in enumerate(groups, 1):
        order = _order_number(group)
        if order:
            key = f"hl7v2:{sender}:{order}"
        else:
            # Not stable across re-deliveries: a correction cannot find this report again.
            warnings.append(f"order group {n} has no placer or filler order number")
            key = f"hl7v2:{sender}:{message_id}:{group.obr.comp(1) or n}"
        keys[key] = keys.get(key, 0) + 1
        if keys[key] > 1:
            warnings.append(f"order group {n} repeats an order number of this message")
            key = f"{key}#{keys[key]}"
        built = build_report(key, group)
        warnings.extend(built.warnings)
        reports.append(ParsedReport(
            report_key=key,
            status=built.status,
            category=built.category,
            patient=_patient(pid, warnings),
            resources=tuple(built.resources),
            issued=built.issued,
        ))
    return ParsedMessage(
        format=f"hl7v2-{version}",
        message_id=message_id,
        sender=sender,
        reports=tuple(reports),
        sender_id=msh.comp(4, 2) or None,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _groups(msg: Message, warnings: list[str]) -> list[tuple[Segment, OrderGroup]]:
    """Segments to (PID, ORDER_OBSERVATION group) pairs. An ORC belongs to the next OBR; NTE
    to the OBX or OBR before it; an OBX after an SPM to that specimen (v2.5 SPECIMEN group)."""
    out: list[tuple[Segment, OrderGroup]] = []
    pid: Segment | None = None
    orc: Segment | None = None
    group: OrderGroup | None = None
    last: str = ""
    for seg in msg.segments[1:]:
        name = seg.name
        if name == "PID":
            pid, group, orc = seg, None, None
        elif name == "ORC":
            orc = seg
        elif name == "OBR":
            if pid is None:
                raise Rejected("no-patient", "an OBR segment comes before any PID segment")
            group = OrderGroup(obr=seg, orc=orc)
            orc = None
            out.append((pid, group))
        elif name == "OBX":
            if group is None:
                warnings.append("an OBX segment outside an order group was ignored")
            else:
                spec = len(group.specimens) - 1 if group.specimens else None
                group.observations.append(ObservationGroup(seg, specimen=spec))
        elif name == "SPM" and group is not None:
            group.specimens.append(seg)
        elif name == "NTE" and group is not None:
            note = "\n".join(t.text(rep, 1) for rep in seg.reps(3))
            if note and last == "OBX" and group.observations:
                group.observations[-1].notes.append(note)
            elif note and last in ("OBR", "NTE-OBR"):
                group.notes.append(note)
                name = "NTE-OBR"
            else:
                name = last  # a note after PID, SPM, ...: not mapped, keeps the context
        last = "NTE-OBR" if name == "NTE-OBR" else (last if name == "NTE" else name)
    return out


def _order_number(group: OrderGroup) -> str:
    """Filler order number (OBR-3, else ORC-3), else placer (OBR-2, else ORC-2)."""
    orc = group.orc
    for n in (3, 2):
        value = group.obr.comp(n) or (orc.comp(n) if orc else "")
        if value.strip():
            return value.strip()
    return ""


def _patient(pid: Segment, warnings: list[str]) -> PatientKey:
    """PID-3 (and v2.3's PID-2) national id, PID-5 name, PID-7 birth date, PID-8 sex."""
    system = value = None
    for rep in pid.reps(3) + pid.reps(2):
        found = t.person_id(rep)
        if found:
            system, value = found
            break
    names = pid.reps(5)
    legal = [n for n in names if t.sub(n, 7).upper() == "L"]
    name = (legal or names or [[]])[0]
    family = t.sub(name, 1, 1) or None
    given = " ".join(p for p in (t.sub(name, 2), t.sub(name, 3)) if p) or None
    birth = None
    raw_birth = pid.comp(7)
    if raw_birth:
        try:
            birth = dtm_to_fhir(raw_birth, date_only=True)
        except ValueError:
            warnings.append("PID-7 is not a valid birth date; ignored")
        if birth and len(birth) != 10:
            birth = None  # PatientKey wants a full date; a year alone cannot match a person
    return PatientKey(system=system, value=value, family=family, given=given,
                      birth_date=birth, gender=_SEX.get(pid.comp(8).upper()))


_ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
#: Rejection reasons that say the message itself cannot be taken (MSA-1 AR); the others are
#: application errors (AE).
_REJECT_REASONS = frozenset({"unreadable", "encoding", "empty", "schema", "version"})
_APPREC_ERRORS = "2.16.578.1.12.4.1.1.8221"  # Volven 8221, the AppRec error codes


def ack(data: bytes | None, *, accepted: bool, error: str | None = None,
        code: str | None = None) -> bytes:
    """The acknowledgment of a received message (HL7 v2.5.1 §2.9, original mode).

    `code` is either an HL7 acknowledgment code (MSA-1: AA, AE, AR, CA, CE, CR), a rejection
    reason (`model.REASONS` key: unreadable/encoding/empty/schema/version → AR, others → AE) or
    an AppRec error code (`T01` → AR, others such as `T02` → AE); reasons and AppRec codes also
    go to ERR-5. Without a code MSA-1 is `AA` when accepted and `AE` when not; MSA-2 echoes
    MSH-10. The header swaps sending and receiving application/facility and keeps the version
    (2.5.1 when the input has none). An error carries its text (escaped) in MSA-3 and an ERR
    segment. Input without a readable MSH gets a NAK: `AR` with an empty MSA-2. The result is
    `\\r`-separated UTF-8 (MSH-18 says so when the text is not ASCII)."""
    app_code = ""
    if code and code.upper() in _ACK_CODES:
        ack_code = code.upper()
    elif accepted:
        ack_code = "AA"
    else:
        ack_code = "AR" if code in _REJECT_REASONS or code == "T01" else "AE"
        app_code = REASONS.get(code, code) if code else ""
    msh: Segment | None = None
    if data:
        try:
            msh = split_message(data).segments[0]
        except Rejected:
            msh = None
    if msh is None:
        ack_code = "AR"
        error = error or "the message has no readable MSH segment"
    version = (msh.comp(12) if msh else "") or "2.5.1"
    d = DEFAULT

    def hd(n: int) -> str:
        if msh is None:
            return ""
        return d.component.join(escape(msh.comp(n, c), d) for c in (1, 2, 3)).rstrip(
            d.component)

    now = datetime.now(ZoneInfo("Europe/Oslo")).strftime("%Y%m%d%H%M%S%z")
    control_id = uuid.uuid4().hex[:20]
    processing = escape(msh.comp(11), d) if msh and msh.comp(11) else "P"
    trigger = escape(msh.comp(9, 2), d) if msh and msh.comp(9, 2) else "R01"
    text = escape(error or "", d) if error else ""
    fields = ["MSH", f"{d.component}{d.repetition}{d.escape}{d.subcomponent}", hd(5), hd(6),
              hd(3), hd(4), now, "", f"ACK{d.component}{trigger}{d.component}ACK", control_id,
              processing, escape(version, d)]
    if text and not text.isascii():
        fields += ["", "", "", "", "", "UNICODE UTF-8"]
    message_id = escape(msh.comp(10), d) if msh else ""
    msa = ["MSA", ack_code, message_id] + ([text] if text else [])
    segments = [d.field.join(fields), d.field.join(msa)]
    if ack_code not in ("AA", "CA"):
        # HL7 table 0357: 207 application internal error, 200 unsupported / rejected message.
        hl7_code = "207" if ack_code in ("AE", "CE") else "200"
        label = "Application internal error" if hl7_code == "207" else "Message rejected"
        cwe = d.component.join((hl7_code, label, "HL70357"))
        if version.startswith(("2.3", "2.4")):
            # ERR-1 (ELD): segment^sequence^field^code&text&system
            eld = d.component * 3 + d.subcomponent.join((hl7_code, label, "HL70357"))
            segments.append(d.field.join(["ERR", eld]))
        else:
            app = (d.component.join((escape(app_code, d), "", _APPREC_ERRORS))
                   if app_code else "")
            segments.append(d.field.join(["ERR", "", "", cwe, "E", app, "", "", text]).rstrip(
                d.field))
    return ("\r".join(segments) + "\r").encode("utf-8")
