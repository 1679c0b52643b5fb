"""Decoding delivered XML bytes: BOMs, lying declarations, UTF-16, and refusing DTDs."""

from __future__ import annotations

import codecs

import pytest

from akson.results import xmlbytes
from akson.results.model import Rejected

DOC = '<r a="1">Blåbær – æøå</r>'


def _comment(parsed: xmlbytes.ParsedXml) -> str:
    return parsed.root.text or ""


def test_utf8_bytes_declared_latin1_are_read_as_utf8_with_warning() -> None:
    data = ('<?xml version="1.0" encoding="ISO-8859-1"?>\n' + DOC).encode("utf-8")
    parsed = xmlbytes.parse(data)
    assert parsed.encoding == "utf-8"
    assert _comment(parsed) == "Blåbær – æøå"
    assert any("says iso-8859-1" in w for w in parsed.warnings)


def test_latin1_bytes_declared_utf8_fall_back_with_warning() -> None:
    data = ('<?xml version="1.0" encoding="UTF-8"?>\n<r>Blåbær æøå ÆØÅ</r>').encode("iso-8859-1")
    parsed = xmlbytes.parse(data)
    assert parsed.encoding in ("windows-1252", "iso-8859-1")
    assert _comment(parsed) == "Blåbær æøå ÆØÅ"
    assert parsed.warnings


def test_matching_declaration_gives_no_warning() -> None:
    latin = ('<?xml version="1.0" encoding="iso-8859-1"?><r>æøå</r>').encode("iso-8859-1")
    utf8 = ('<?xml version="1.0" encoding="UTF-8"?><r>æøå</r>').encode()
    assert xmlbytes.parse(latin).warnings == ()
    assert xmlbytes.parse(utf8).warnings == ()


def test_ascii_document_declared_latin1_is_not_a_disagreement() -> None:
    data = b'<?xml version="1.0" encoding="ISO-8859-1"?><r>abc</r>'
    assert xmlbytes.parse(data).warnings == ()


@pytest.mark.parametrize(
    ("bom", "codec", "expected"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
        (b"", "utf-16-le", "utf-16-le"),  # no BOM: recognised by the shape of "<"
        (b"", "utf-16-be", "utf-16-be"),
    ],
)
def test_bom_and_utf16_decide_the_encoding(bom: bytes, codec: str, expected: str) -> None:
    data = bom + ('<?xml version="1.0" encoding="ISO-8859-1"?>\n' + DOC).encode(codec)
    parsed = xmlbytes.parse(data)
    assert parsed.encoding == expected
    assert _comment(parsed) == "Blåbær – æøå"
    assert parsed.root.get("a") == "1"


def test_utf8_bom_with_latin1_bytes_still_decodes() -> None:
    data = codecs.BOM_UTF8 + "<r>æøå</r>".encode("iso-8859-1")
    parsed = xmlbytes.parse(data)
    assert _comment(parsed) == "æøå"
    assert any("byte order mark" in w for w in parsed.warnings)


@pytest.mark.parametrize("data", [b"", b"   \r\n\t "])
def test_empty_body_is_rejected(data: bytes) -> None:
    with pytest.raises(Rejected) as e:
        xmlbytes.parse(data)
    assert e.value.code == "empty"


def test_odd_length_utf16_is_an_encoding_error() -> None:
    with pytest.raises(Rejected) as e:
        xmlbytes.parse(codecs.BOM_UTF16_LE + "<r/>".encode("utf-16-le") + b"\x00")
    assert e.value.code == "encoding"


@pytest.mark.parametrize(
    "doc",
    [
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        '<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><r>&b;</r>',
        '<!doctype r SYSTEM "http://example.org/r.dtd"><r/>',
    ],
)
def test_dtds_and_entities_are_refused(doc: str) -> None:
    with pytest.raises(Rejected) as e:
        xmlbytes.parse(doc.encode())
    assert e.value.code == "unreadable"
    assert "passwd" not in e.value.text


def test_not_well_formed_names_line_and_column() -> None:
    data = b'<?xml version="1.0" encoding="UTF-8"?>\n<r>\n  <a></b>\n</r>'
    with pytest.raises(Rejected) as e:
        xmlbytes.parse(data)
    assert e.value.code == "unreadable"
    assert "line 3 column" in e.value.text


def test_undefined_entity_is_not_well_formed() -> None:
    with pytest.raises(Rejected) as e:
        xmlbytes.parse(b"<r>&nbsp;</r>")
    assert e.value.code == "unreadable"
