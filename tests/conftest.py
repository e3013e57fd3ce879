"""Shared fixtures. Airflow reads its configuration at first import, so the embedded Airflow
environment (a throwaway AIRFLOW_HOME with SQLite metadata) is set before any test runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from pipeline.airflow_env import airflow_env
from core.settings import REPO_ROOT, Settings

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # Tests never write into the repo's .recsys: a session-wide scratch home is the default.
    scratch = Path(tempfile.mkdtemp(prefix="recsys-tests-"))
    os.environ.update(airflow_env(Settings(home=scratch), base=dict(os.environ)))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "recsys", spark_master="local[2]")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public data sets not present at {SHARED_DATA}")
    return SHARED_DATA


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Stop the JVM while pytest's streams are open; py4j's connection objects are collected at
    # interpreter exit and log an INFO goodbye into streams that are closed by then.
    import logging
    import sys

    if "pyspark" in sys.modules:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
        logging.getLogger("py4j").setLevel(logging.WARNING)
