"""HL7 v2 ER7 syntax: bytes to segments, delimiters, escape sequences and date/time values.

Spec: HL7 v2.5.1 chapter 2 (2.5 "Message construction rules", 2.7 "Use of escape sequences in
text fields") and v2.7 chapter 2A (DTM, the truncation character). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from akson.results.model import Rejected

__all__ = [
    "Delimiters",
    "Message",
    "Segment",
    "decode",
    "dtm_to_fhir",
    "escape",
    "split_message",
    "unescape",
]

_OSLO = ZoneInfo("Europe/Oslo")
_BOM = b"\xef\xbb\xbf"

#: MSH-18 character set names (HL7 table 0211) → Python codecs.
_CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "iso-8859-1",
    "8859/2": "iso-8859-2",
    "8859/4": "iso-8859-4",
    "8859/5": "iso-8859-5",
    "8859/7": "iso-8859-7",
    "8859/9": "iso-8859-9",
    "8859/15": "iso-8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}


@dataclass(frozen=True)
class Delimiters:
    """The separators of one message (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # v2.7+: the fifth encoding character, `#`


DEFAULT = Delimiters()

#: A parsed field: repetitions → components → subcomponents, each leaf unescaped.
Field = list[list[list[str]]]


class Segment:
    """One segment. `field(n)` follows the standard's numbering, also for MSH (MSH-1 is the field
    separator, MSH-2 the encoding characters)."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: list[Field]) -> None:
        self.name = name
        self.fields = fields  # fields[0] is the segment name

    def field(self, n: int) -> Field:
        return self.fields[n] if n < len(self.fields) else []

    def reps(self, n: int) -> list[list[list[str]]]:
        """The non-empty repetitions of field n."""
        return [rep for rep in self.field(n) if any(any(sub) for sub in rep)]

    def comp(self, n: int, c: int = 1, s: int = 1, rep: int = 0) -> str:
        """Field n, component c, subcomponent s of repetition rep ('' when absent)."""
        f = self.field(n)
        if rep >= len(f) or c > len(f[rep]) or s > len(f[rep][c - 1]):
            return ""
        return f[rep][c - 1][s - 1]

    def first(self, n: int) -> list[list[str]]:
        """The first repetition of field n (a list of components; [] when empty)."""
        f = self.field(n)
        return f[0] if f else []


@dataclass(frozen=True)
class Message:
    """A decoded message: its delimiters, segments and the codec its text was decoded with."""

    delimiters: Delimiters
    segments: tuple[Segment, ...]
    charset: str
    warnings: tuple[str, ...]


def decode(data: bytes) -> tuple[str, str, list[str]]:
    """Decode message bytes: (text, codec, warnings).

    A UTF-8 BOM is dropped. The character set is MSH-18 when given; else UTF-8, falling back to
    ISO-8859-1 (with a warning) when the bytes are not valid UTF-8. A declared set the bytes do
    not fit also falls back, with a warning, since a result is better read than refused."""
    warnings: list[str] = []
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    declared = _declared_charset(data)
    codec = "utf-8"
    if declared:
        known = _CHARSETS.get(declared.upper())
        if known is None:
            warnings.append("MSH-18 names an unknown character set; read as UTF-8")
        else:
            codec = known
    try:
        return data.decode(codec), codec, warnings
    except UnicodeDecodeError:
        pass
    for fallback in ("utf-8", "iso-8859-1"):
        if fallback == codec:
            continue
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        warnings.append(f"the bytes are not valid {codec}; read as {fallback}")
        return text, fallback, warnings
    raise Rejected("encoding", "the bytes cannot be decoded")  # pragma: no cover - latin-1 reads all


def _declared_charset(data: bytes) -> str:
    """MSH-18 read from the raw bytes (the header is ASCII in every character set HL7 allows)."""
    head = data.lstrip()[:4096]
    if not head.startswith(b"MSH") or len(head) < 4:
        return ""
    end = min((i for i in (head.find(b"\r"), head.find(b"\n")) if i >= 0), default=len(head))
    sep = head[3:4]
    parts = head[:end].split(sep)
    # parts[0] = "MSH", parts[1] = MSH-2, so MSH-n is parts[n - 1].
    if len(parts) < 18:
        return ""
    return parts[17].split(b"~")[0].decode("ascii", "replace").strip()


_SEGMENT_BREAK = re.compile(r"\r\n|\r|\n")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")


def split_message(data: bytes) -> Message:
    """Bytes to a `Message`. Raises `Rejected("unreadable")` when there is no MSH with a usable
    field separator and 4 or 5 encoding characters."""
    text, codec, warnings = decode(data)
    text = text.strip("\x00 \t\r\n\x0b\x1c")
    if not text.startswith("MSH") or len(text) < 8:
        raise Rejected("unreadable", "the message does not start with an MSH segment")
    fsep = text[3]
    if fsep.isalnum() or fsep.isspace():
        raise Rejected("unreadable", "MSH-1 is not a usable field separator")
    encoding = text[4:].split(fsep, 1)[0]
    if len(encoding) not in (4, 5) or len(set(encoding + fsep)) != len(encoding) + 1:
        raise Rejected("unreadable", "MSH-2 must hold 4 or 5 distinct encoding characters")
    if any(ch.isalnum() or ch.isspace() for ch in encoding):
        raise Rejected("unreadable", "MSH-2 holds letters, digits or spaces")
    delims = Delimiters(fsep, encoding[0], encoding[1], encoding[2], encoding[3],
                        encoding[4] if len(encoding) == 5 else "")
    segments: list[Segment] = []
    for line in _SEGMENT_BREAK.split(text):
        line = line.strip("\x00")
        if not line.strip():
            continue
        name = line[:3]
        if not _SEGMENT_NAME.fullmatch(name) or (len(line) > 3 and line[3] != fsep):
            raise Rejected("unreadable", "a segment does not start with a segment name")
        segments.append(_segment(line, delims, codec))
    return Message(delims, tuple(segments), codec, tuple(warnings))


def _segment(line: str, d: Delimiters, codec: str) -> Segment:
    raw = line.split(d.field)
    name = raw[0]
    fields: list[Field] = [[[[name]]]]
    start = 1
    if name == "MSH":
        # MSH-1 is the separator itself and MSH-2 the encoding characters: neither is split.
        fields.append([[[d.field]]])
        fields.append([[[raw[1] if len(raw) > 1 else ""]]])
        start = 2
    for value in raw[start:]:
        fields.append([
            [[unescape(sub, d, codec) for sub in comp.split(d.subcomponent)]
             for comp in rep.split(d.component)]
            for rep in value.split(d.repetition)
        ])
    return Segment(name, fields)


def unescape(value: str, d: Delimiters = DEFAULT, codec: str = "utf-8") -> str:
    """Resolve escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\, \\.br\\ (and \\.sp\\) as a line
    break, \\Xhh..\\ as bytes in the message's character set. Highlighting (\\H\\ \\N\\) and other
    formatting commands are dropped; an unknown or unterminated sequence is kept as written."""
    e = d.escape
    if not e or e not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != e:
            out.append(ch)
            i += 1
            continue
        end = value.find(e, i + 1)
        if end < 0:
            out.append(value[i:])
            break
        out.append(_escape_text(value[i + 1:end], d, codec, value[i:end + 1]))
        i = end + 1
    return "".join(out)


def _escape_text(seq: str, d: Delimiters, codec: str, written: str) -> str:
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition,
              "E": d.escape, "P": d.truncation or "#"}
    if seq in simple:
        return simple[seq]
    if seq in ("H", "N"):
        return ""
    if seq == ".br" or seq.startswith(".sp"):
        return "\n"
    if seq.startswith((".fi", ".nf", ".in", ".ti", ".sk", ".ce")):
        return ""
    if seq.startswith("X") and len(seq) > 1 and len(seq) % 2 == 1:
        try:
            return bytes.fromhex(seq[1:]).decode(codec, "replace")
        except ValueError:
            return written
    return written


def escape(value: str, d: Delimiters = DEFAULT) -> str:
    """Escape text for a field value: the delimiters as \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ (\\P\\), line
    breaks as \\.br\\."""
    table = {d.escape: "E", d.field: "F", d.component: "S", d.subcomponent: "T",
             d.repetition: "R"}
    if d.truncation:
        table[d.truncation] = "P"
    out: list[str] = []
    for ch in value.replace("\r\n", "\n").replace("\r", "\n"):
        if ch == "\n":
            out.append(f"{d.escape}.br{d.escape}")
        elif ch in table:
            out.append(f"{d.escape}{table[ch]}{d.escape}")
        else:
            out.append(ch)
    return "".join(out)


_DTM = re.compile(
    r"(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})"
    r"(?:(?P<s>\d{2})(?:\.(?P<f>\d{1,4}))?)?)?)?)?)?(?P<tz>[+-]\d{4})?"
)


def dtm_to_fhir(value: str, *, date_only: bool = False) -> str | None:
    """An HL7 DTM/TS/DT value (YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]) as a FHIR date or
    dateTime; None when empty. Raises ValueError when it is not a valid date/time.

    Precision is kept: YYYY → `2024`, YYYYMM → `2024-03`, YYYYMMDD → `2024-03-01`; a time keeps
    its fraction and gets `:00` seconds (HHMM) or minutes (HH), which FHIR requires. A time
    without an offset is local time in Norway (Europe/Oslo) and is written with that offset.
    `date_only` cuts the value to its date (birth dates, DT fields)."""
    value = value.strip()
    if not value:
        return None
    m = _DTM.fullmatch(value)
    if not m:
        raise ValueError("not an HL7 date/time")
    y, mo, d = m["y"], m["mo"], m["d"]
    try:
        datetime(int(y), int(mo or 1), int(d or 1))
    except ValueError:
        raise ValueError("not a valid date") from None
    if int(y) == 0:
        raise ValueError("not a valid date")
    date_part = y + (f"-{mo}" if mo else "") + (f"-{d}" if d else "")
    if date_only or not m["h"]:
        return date_part
    h, mi, s = int(m["h"]), int(m["mi"] or 0), int(m["s"] or 0)
    if h > 23 or mi > 59 or s > 59:
        raise ValueError("not a valid time")
    frac = f".{m['f']}" if m["f"] else ""
    if m["tz"]:
        tz = m["tz"]
        if int(tz[1:3]) > 14 or int(tz[3:]) > 59:
            raise ValueError("not a valid UTC offset")
        offset = f"{tz[:3]}:{tz[3:]}"
    else:
        local = datetime(int(y), int(mo), int(d), h, mi, s, tzinfo=_OSLO)
        delta = local.utcoffset()
        minutes = int(delta.total_seconds() // 60) if delta is not None else 0
        sign = "+" if minutes >= 0 else "-"
        offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{date_part}T{h:02d}:{mi:02d}:{s:02d}{frac}{offset}"
