"""Shared fixtures of the ingestion tests: one small local Spark session per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


def make_settings(home: Path) -> Settings:
    """Settings for a test: everything under ``home``, Spark kept to two local cores."""
    return Settings(home=home, spark_master="local[2]", spark_driver_memory="1g")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory):
    from ingest.spark import spark_session

    session = spark_session(make_settings(tmp_path_factory.mktemp("spark-home")))
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
