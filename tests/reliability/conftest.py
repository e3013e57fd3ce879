"""Fixtures the reliability tests share: one Spark session per module for the ingestion faults,
and a home with the synthetic ring's warehouse and an empty model registry for the promotion
and decision-record faults."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.registry_fixtures import registry_template, start_from_template  # noqa: F401 - a fixture
from tests.training.conftest import ring_rows, write_user_sequences

TINY_SASREC = {"d_model": 32, "n_heads": 2, "n_layers": 1, "dropout": 0.1}


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory):
    from ingest.spark import spark_session
    from core.settings import Settings

    # One home for every reliability module's session: the line parser's jar is built once.
    home = tmp_path_factory.getbasetemp() / "reliability-spark-home"
    session = spark_session(Settings(home=home, spark_master="local[2]", spark_driver_memory="1g"))
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def ring_warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ring") / "warehouse.duckdb"
    write_user_sequences(path, ring_rows())
    return path


@pytest.fixture
def ring(settings, ring_warehouse, registry_template):  # noqa: F811 - the imported fixture
    """A home with the synthetic ring's warehouse and an empty model registry."""
    settings = settings.replace(max_sequence_length=20, seed=7, min_eval_examples=20)
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ring_warehouse, settings.warehouse_path)
    return start_from_template(settings, registry_template)
