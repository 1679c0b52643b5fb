"""`akson results` on SQLite and PostgreSQL: files and folders through `ingest` (progress,
summary, exit code), HL7 v2 over a real MLLP listener answering ACK and NAK, and the operators'
`queue` / `match` / `discard`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from akson.config import Settings
from akson.fhir.identifiers import make_fnr
from akson.fhir.naming import FNR_SYSTEM
from akson.results import mllp
from akson.results_cli import local_ingestor, local_principal, mllp_handler, results
from akson.store.repository import ResourceStore
from tests.conftest import fresh_database

FNR = next(n for i in range(400) if (n := make_fnr(date(1990, 4, 4), i, synthetic="tenor")))


def oru(message_id: str, pid3: str, value: str = "5.5") -> bytes:
    return "\r".join([
        f"MSH|^~\\&|LIS|Unilab^987654321^L|AKSON|NHN|20261120101500||ORU^R01^ORU_R01|{message_id}"
        "|P|2.5.1",
        f"PID|1||{pid3}||Dahl^Eva||19900404|F",
        f"OBR|1|PL-{message_id}|FL-{message_id}|NOR05863^FT4^NLK|||20261119080000"
        "|||||||||||||||20261120101500|||F",
        f"OBX|1|NM|NOR05863^FT4^NLK||{value}|pmol/L^pmol/L^UCUM|12-22||||F|||20261119080000",
    ]).encode()


@pytest.fixture
def settings(backend: str, tmp_path: Path) -> Iterator[Settings]:
    with fresh_database(backend, tmp_path, "akson_rcli", migrate=True) as url:
        settings = Settings(database_url=url)

        async def patient() -> None:
            async with local_ingestor(settings) as ing, \
                    ing.gate.session(local_principal("test"), write=True) as g:
                await g.update("Patient", "eva", {
                    "resourceType": "Patient", "identifier": [
                        {"system": FNR_SYSTEM, "value": FNR}]})

        asyncio.run(patient())
        yield settings


def test_ingest_reads_files_and_folders_and_reports_what_happened(settings, tmp_path):
    folder = tmp_path / "inn"
    folder.mkdir()
    (folder / "a.hl7").write_bytes(oru("F-1", f"{FNR}^^^^FNR"))
    (folder / "b.hl7").write_bytes(oru("F-2", "12345^^^^MR"))  # no national id: queue
    (folder / "c.xml").write_bytes(b"<?xml version='1.0'?><Message><broken>")
    runner = CliRunner(env={"AKSON_DATABASE_URL": settings.database_url})
    out = runner.invoke(results, ["ingest", "--no-progress", str(folder)])
    assert out.exit_code == 1, out.output  # one file was rejected
    assert "3 files: 1 rejected, 1 stored, 1 unmatched" in out.output
    assert "c.xml: rejected (T01 unreadable)" in out.output
    again = runner.invoke(results, ["ingest", "--no-progress", str(folder / "a.hl7")])
    assert again.exit_code == 0 and "1 stored" in again.output  # the same bytes: unchanged
    queue = runner.invoke(results, ["queue"])
    assert "1 unmatched" in queue.output and FNR not in queue.output
    delivery = queue.output.split("\t", 1)[0]
    assert runner.invoke(results, ["match", delivery, "Patient/missing"]).exit_code == 1
    matched = runner.invoke(results, ["match", delivery, "Patient/eva"])
    assert matched.exit_code == 0 and "resolved" in matched.output, matched.output
    rejected = runner.invoke(results, ["queue", "--state", "rejected"])
    bad = rejected.output.split("\t", 1)[0]
    closed = runner.invoke(results, ["discard", bad, "--reason", "sender will resend"])
    assert closed.exit_code == 0 and "discarded" in closed.output
    assert "0 rejected" in runner.invoke(results, ["queue", "--state", "rejected"]).output


def test_mllp_listener_acks_stored_messages_and_naks_unreadable_ones(settings):
    async def run() -> tuple[bytes, bytes, bytes, int]:
        async with local_ingestor(settings) as ing:
            server = await mllp.serve(mllp_handler(ing, local_principal("akson-results-mllp")),
                                      "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            async with server:
                ok = await mllp.send("127.0.0.1", port, oru("L-1", f"{FNR}^^^^FNR"), timeout=30)
                bad = await mllp.send("127.0.0.1", port, b"MSH|^~\\&|X\rZZZ", timeout=30)
                wrong = await mllp.send("127.0.0.1", port, b"not hl7 at all", timeout=30)
            async with ing.gate.store.session(write=False) as s:
                found = await _observations(ing.gate.store, s)
            return ok, bad, wrong, found

    ok, bad, wrong, found = asyncio.run(run())
    assert b"MSA|AA|L-1" in ok
    assert b"MSA|AR" in bad or b"MSA|AE" in bad
    assert b"MSA|AR" in wrong or b"MSA|AE" in wrong
    assert found == 1


async def _observations(store: ResourceStore, s: object) -> int:
    row = await s.tx.fetchone(  # type: ignore[attr-defined]
        "SELECT COUNT(*) FROM resource WHERE res_type = 'Observation' AND NOT deleted")
    return int(row[0])


def _obr(order: str, requester: str) -> str:
    fields = [""] * 26
    fields[0], fields[1], fields[2], fields[3] = "OBR", "1", f"PL-{order}", f"FL-{order}"
    fields[4], fields[7] = "NOR05863^FT4^NLK", "20261119080000"
    fields[16], fields[22], fields[25] = requester, "20261120101500", "F"
    return "|".join(fields)


def test_concurrent_deliveries_sharing_a_requester_or_repeating_a_message_lose_nothing(
        settings):
    """Deliveries at once: the same message twice creates the same resources at the same moment
    (on PostgreSQL one meets the other's unique key and runs again) and is stored once; no
    delivery fails. HL7 v2 roles are per report (akson.results.hl7v2_resources)."""
    requester = "565501872^Lege^Test^^^^^^HPR&2.16.578.1.12.4.1.4.4&ISO"

    def message(order: str) -> bytes:
        return "\r".join([
            f"MSH|^~\\&|LIS|Unilab^987654321^L|AKSON|NHN|20261120101500||ORU^R01|{order}|P|2.5.1",
            f"PID|1||{FNR}^^^^FNR||Dahl^Eva||19900404|F", _obr(order, requester),
            "OBX|1|NM|NOR05863^FT4^NLK||15|pmol/L^pmol/L^UCUM|12-22||||F"]).encode()

    async def run() -> tuple[list[str], int, int]:
        async with local_ingestor(settings) as ing:
            lab = local_principal("lab")
            first, second, twice = message("C-1"), message("C-2"), message("C-3")
            done = await asyncio.gather(*(ing.ingest(lab, m, "hl7v2")
                                          for m in (first, second, twice, twice)))
            async with ing.gate.store.session(write=False) as s:
                roles = await s.tx.fetchone("SELECT COUNT(*) FROM resource "
                                            "WHERE res_type = 'PractitionerRole'")
                reports = await s.tx.fetchone("SELECT COUNT(*) FROM resource "
                                              "WHERE res_type = 'DiagnosticReport'")
                rows = await s.tx.fetchone("SELECT COUNT(*) FROM results_message")
            assert roles is not None and reports is not None and rows is not None
            assert done[2].receipt.receipt_id == done[3].receipt.receipt_id
            assert int(rows[0]) == 3  # the repeated message is one delivery
            return [d.state for d in done], int(roles[0]), int(reports[0])

    states, roles, reports = asyncio.run(run())
    assert states == ["stored"] * 4
    assert roles == 3 and reports == 3


def test_an_older_correction_racing_a_newer_one_never_wins(settings):
    def version(issued: str, value: str, status: str) -> bytes:
        fields = _obr("RACE", "").split("|")
        fields[22], fields[25] = issued, status
        return "\r".join([
            f"MSH|^~\\&|LIS|Unilab^987654321^L|AKSON|NHN|{issued}||ORU^R01|R-{issued}|P|2.5.1",
            f"PID|1||{FNR}^^^^FNR||Dahl^Eva||19900404|F", "|".join(fields),
            f"OBX|1|NM|NOR05863^FT4^NLK||{value}|pmol/L^pmol/L^UCUM|12-22||||{status}"]).encode()

    async def run() -> list[float]:
        values = []
        async with local_ingestor(settings) as ing:
            lab = local_principal("lab")
            await ing.ingest(lab, version("20261120100000", "1", "F"), "hl7v2")
            for n in range(4):
                newer = version(f"2026112{2 + n}100000", str(10 + n), "C")
                older = version(f"2026112{1}1{n}0000", "0", "C")
                await asyncio.gather(ing.ingest(lab, older, "hl7v2"),
                                     ing.ingest(lab, newer, "hl7v2"))
                async with ing.gate.store.session(write=False) as s:
                    page = await s.tx.fetchall(
                        "SELECT content FROM resource WHERE res_type = 'Observation'")
                values.append(orjson.loads(bytes(page[0][0]))["valueQuantity"]["value"])
        return values

    assert asyncio.run(run()) == [10, 11, 12, 13]
