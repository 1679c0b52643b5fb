"""Decode delivered XML bytes (whatever the declaration claims) and parse them safely.

Real deliveries are ISO-8859-1 or UTF-8, with or without a byte order mark, sometimes UTF-16, and
the `<?xml ... encoding=...?>` declaration may disagree with the bytes. The bytes decide:

1. A BOM wins (UTF-8, UTF-16 LE/BE); UTF-16 without BOM is recognised by its `<` (`3C 00`/`00 3C`).
2. Otherwise bytes that are valid UTF-8 are UTF-8, even when the declaration says ISO-8859-1;
   bytes that are not fall back to windows-1252 (a superset of ISO-8859-1's printable range),
   or ISO-8859-1 for the five bytes windows-1252 leaves undefined.
3. A declaration that disagrees with what was used adds a warning (never an error).

The text is parsed by the stdlib ElementTree with the declaration removed. DTDs and entity
declarations are refused outright (XXE, "billion laughs"): a result message never needs one.
Spec: https://www.w3.org/TR/xml/#sec-guessing (autodetection of character encodings).
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from akson.results.model import Rejected

_DECLARATION = re.compile(r"\A\s*<\?xml\b[^>]*\?>")
_DECLARED_ENCODING = re.compile(r"""\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_UTF8 = frozenset({"utf-8", "utf8"})
_LATIN1_FAMILY = frozenset({"iso-8859-1", "latin-1", "windows-1252", "iso-8859-15", "us-ascii"})


@dataclass(frozen=True)
class ParsedXml:
    """The parsed document, the encoding the bytes were read in, and what was odd about them."""

    root: ET.Element
    encoding: str  # "utf-8", "utf-16-le", "utf-16-be", "windows-1252" or "iso-8859-1"
    warnings: tuple[str, ...]


def decode(data: bytes) -> tuple[str, str, list[str]]:
    """Decode `data` to text as described in the module docstring.

    Returns (text without BOM, encoding used, warnings). Raises `Rejected("empty")` for a body
    with nothing but whitespace and `Rejected("encoding")` when UTF-16 bytes do not decode.
    """
    if not data or not data.strip(b" \t\r\n\x00"):
        raise Rejected("empty", "the message body is empty")
    encoding, body = _sniff(data)
    warnings: list[str] = []
    if encoding.startswith("utf-16"):
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError:
            raise Rejected("encoding", f"the bytes are not valid {encoding.upper()}") from None
    else:
        try:
            text = body.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            if data.startswith(codecs.BOM_UTF8):
                warnings.append("the bytes start with a UTF-8 byte order mark but are not UTF-8")
            try:
                text, encoding = body.decode("windows-1252"), "windows-1252"
            except UnicodeDecodeError:
                text, encoding = body.decode("iso-8859-1"), "iso-8859-1"
    declared = _declared(text)
    if declared is not None and _disagrees(declared, encoding, text):
        warnings.append(
            f"the XML declaration says {declared} but the bytes are {encoding}; read as {encoding}"
        )
    return text, encoding, warnings


def parse(data: bytes) -> ParsedXml:
    """Decode and parse `data`; raise `Rejected` for anything that is not safe, well-formed XML.

    `empty` for an empty body, `unreadable` for a DTD / entity declaration or XML that is not
    well-formed (the text names line and column, never the content).
    """
    text, encoding, warnings = decode(data)
    if _FORBIDDEN.search(text):
        raise Rejected("unreadable", "DTDs and entity declarations are not accepted")
    # Replace (not cut) the declaration so line and column numbers in errors still match.
    text = _DECLARATION.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, count=1)
    try:
        # Safe here: any DTD / entity declaration was refused above, and expat without a DTD
        # expands no entity beyond the five predefined ones (S314's attacks need a DTD).
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as e:
        line, column = e.position
        raise Rejected(
            "unreadable", f"the message is not well-formed XML at line {line} column {column + 1}"
        ) from None
    return ParsedXml(root, encoding, tuple(warnings))


def _sniff(data: bytes) -> tuple[str, bytes]:
    """The encoding a BOM or the UTF-16 shape of `<` names, and the bytes after any BOM."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8", data[3:]
    if data.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", data[2:]
    if data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", data[2:]
    if data[:2] == b"<\x00":
        return "utf-16-le", data
    if data[:2] == b"\x00<":
        return "utf-16-be", data
    return "8bit", data


def _declared(text: str) -> str | None:
    match = _DECLARATION.match(text.lstrip("\ufeff"))
    if match is None:
        return None
    enc = _DECLARED_ENCODING.search(match.group(0))
    return enc.group(1).lower() if enc else None


def _disagrees(declared: str, used: str, text: str) -> bool:
    """Whether reading the bytes as `declared` would have given a different text than `used`."""
    declared = declared.replace("_", "-")
    if declared in ("utf-16", "utf16") and used.startswith("utf-16"):
        return False
    if declared == used or (declared in _UTF8 and used == "utf-8"):
        return False
    if declared in _LATIN1_FAMILY and used in ("windows-1252", "iso-8859-1"):
        return False
    # Pure ASCII reads the same in every 8-bit encoding: nothing to warn about.
    return not (text.isascii() and not used.startswith("utf-16"))
