"""Migration 0021 (ADR 0018): a database holding Observations gets a reindex job that builds
their paired rows; an empty one gets none (its writes build them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from akson.store.database import sqlalchemy_url
from akson.store.migrate import downgrade, upgrade
from tests.conftest import fresh_database


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("holding", [True, False])
def test_a_database_with_observations_queues_their_pairs(backend: str, holding: bool,
                                                         tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "akson_mig21") as url:
        upgrade(url, "0020")
        engine = sa.create_engine(sqlalchemy_url(url))
        try:
            if holding:
                with engine.begin() as conn:
                    conn.execute(sa.text(
                        "INSERT INTO resource (res_type, res_id, version, last_updated, deleted, "
                        "content) VALUES ('Observation', 'o1', 1, 1, false, :c)"), {"c": b"{}"})
            upgrade(url)
            with engine.connect() as conn:
                jobs = conn.execute(sa.text(
                    "SELECT action, param_url, param_code, status FROM reindex_job")).all()
                indexes = {i["name"] for i in sa.inspect(conn).get_indexes("sp_composite")}
            assert {"ix_sp_composite_pair", "ix_sp_composite_pair_long"} <= indexes
            expected = [("index", "http://hl7.org/fhir/SearchParameter/clinical-code", "code",
                         "queued")] if holding else []
            assert [tuple(j) for j in jobs] == expected
            downgrade(url, "0020")
            with engine.connect() as conn:
                indexes = {i["name"] for i in sa.inspect(conn).get_indexes("sp_composite")}
            assert "ix_sp_composite_pair" not in indexes
        finally:
            engine.dispose()
