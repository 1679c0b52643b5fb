"""The COPY text an import worker writes (akson.store.bulk) reads back exactly (PostgreSQL):
stored JSON goes in bytea's escape format, anything that format cannot carry in hex."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from akson.store.bulk import CopyChunk, CopyReady, bytea_field
from akson.store.repository import ResourceStore
from tests.conftest import fresh_database, run_on_store

CASES = [
    b'{"name":"S\xc3\xb8reng","note":"C:\\\\mappe \\"sitat\\" \\\\N \\\\x00 \\\\\\\\"}',
    b"\\x6869",  # what hex input looks like: these six bytes must stay six bytes
    b"",
    b"tab\there, line\nfeed, return\r",  # raw control characters: hex
    b"\x00\xff\xfe not UTF-8",  # hex
]


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "akson_copy") as url:
        yield url


def test_bytea_fields_read_back_as_written(db_url: str) -> None:
    async def work(store: ResourceStore) -> list[bytes]:
        async with store.session(write=True, bulk=True) as s:  # COPY: no pipeline
            await s.tx.execute("CREATE TABLE copied (n int, content bytea)")
            data = b"".join(b"%d\t%s\n" % (n, bytea_field(v)) for n, v in enumerate(CASES))
            await s.tx.copy_text("copied", ("n", "content"), data)
            rows = await s.tx.fetchall("SELECT content FROM copied ORDER BY n")
        return [bytes(r[0]) for r in rows]

    assert run_on_store(db_url, work) == CASES
    assert [bytea_field(v).startswith(b"\\\\x") for v in CASES] == [False, False, False, True, True]


@pytest.mark.parametrize("content", CASES)
def test_a_chunk_gives_back_each_resources_content(content: bytes) -> None:
    """What an id stored already becomes its next version from (`CopyChunk.content`)."""
    ready = [CopyReady("Basic", f"b{i}", content, {
        "resource": b"%d\tBasic\tb%d\t1\t0\tf\t\\N\t%s\n" % (i, i, bytea_field(content))})
        for i in range(3)]
    chunk = CopyChunk.of(ready)
    assert [chunk.content(i) for i in range(3)] == [content] * 3
    assert chunk.only([1])["resource"] == ready[1].blocks["resource"]
