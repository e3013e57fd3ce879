"""A backfill of a range of arrival days (CLI and the Airflow DAG) leaves the lake day-by-day runs leave."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from pyspark.sql import SparkSession

from ingest.generator import generate_logs
from ingest.ingest_day import MissingArrivalDay, arrival_days, ingest_arrival_day, main
from core.settings import REPO_ROOT, Settings
from tests.ingest.conftest import make_settings

FIRST = date(2026, 11, 1)
DAYS = 3
LAST = FIRST + timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def raw_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three arrival days with late events, re-sends across days and malformed lines."""
    raw = tmp_path_factory.mktemp("logs") / "raw"
    generate_logs(raw, FIRST, days=DAYS, n_users=150, n_items=60, seed=11, defect_rate=0.05)
    return raw


@pytest.fixture(scope="module")
def day_by_day(tmp_path_factory: pytest.TempPathFactory, raw_logs: Path, spark: SparkSession) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("day-by-day"))
    shutil.copytree(raw_logs, settings.raw_dir)
    for offset in range(DAYS):
        ingest_arrival_day(settings, FIRST + timedelta(days=offset), spark)
    return settings


def home_with_logs(tmp_path: Path, raw_logs: Path) -> Settings:
    settings = make_settings(tmp_path)
    shutil.copytree(raw_logs, settings.raw_dir)
    return settings


def lake(settings: Settings) -> list[tuple]:
    """Every row a reader of the lake sees, sorted."""
    return sorted(duckdb.sql(
        f"select event_id, event_time, user_id, session_id, item_id, event_type, extra, "
        f"event_date, arrival_date from read_parquet('{settings.events_dir}/*/*/*.parquet', "
        f"hive_partitioning = true)"
    ).fetchall())


def records(settings: Settings) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(settings.reconciliation_dir.glob("*.json"))}


@pytest.mark.slow
def test_cli_backfill_equals_day_by_day(
    spark: SparkSession, day_by_day: Settings, raw_logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    settings = home_with_logs(tmp_path, raw_logs)
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    assert main(["--date", FIRST.isoformat(), "--to", LAST.isoformat()]) == 0

    expected = lake(day_by_day)
    assert len(expected) > 500
    # The generator's logs hold what makes a range harder than one day: late events, duplicates.
    assert any(event_date < arrival for *_, event_date, arrival in expected)
    assert all(r["duplicate_rows"] for r in records(day_by_day).values())
    assert lake(settings) == expected
    assert records(settings) == records(day_by_day)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["arrival_date"] for r in printed] == [d.isoformat() for d in arrival_days(settings, FIRST, LAST)]


def test_a_strict_range_with_a_missing_day_stops_before_ingesting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    for day in (FIRST, LAST):
        (settings.raw_dir / day.isoformat()).mkdir(parents=True)
    with pytest.raises(MissingArrivalDay, match=re.escape(f"under {settings.raw_dir}: {FIRST + timedelta(days=1)};")):
        arrival_days(settings, FIRST, LAST, strict=True)
    with pytest.raises(ValueError, match="ends"):
        arrival_days(settings, LAST, FIRST)
    assert not settings.lake_dir.exists()


@pytest.fixture(scope="module")
def backfill_dag():
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() records its run in the metadata database named by the test environment.
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   capture_output=True)
    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert dagbag.import_errors == {}
    return dagbag.dags["backfill_recsys"]


def test_backfill_dag_is_manual_and_validates_its_params(backfill_dag) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    assert type(backfill_dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual only
    assert backfill_dag.catchup is False and backfill_dag.doc_md
    params = copy.deepcopy(backfill_dag.params)
    params["start"], params["end"] = "2026-11-01", "2026-11-03"
    params.validate()
    for key, bad in (("start", "01-11-2026"), ("end", "2026-13-01"), ("start", None)):
        with pytest.raises(ParamValidationError):
            copy.deepcopy(params)[key] = bad
    order = ["plan_arrival_days", "ingest_arrival_days", "build_sessions"]
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in backfill_dag.get_task(upstream).downstream_task_ids


@pytest.mark.slow
def test_backfill_dag_equals_day_by_day(
    spark: SparkSession, backfill_dag, day_by_day: Settings, raw_logs: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = home_with_logs(tmp_path, raw_logs)
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    monkeypatch.setenv("RECSYS_SPARK_MASTER", settings.spark_master)

    # The range backwards: the first task refuses it and nothing is written.
    refused = backfill_dag.test(run_conf={"start": LAST.isoformat(), "end": FIRST.isoformat()})
    states = {ti.task_id: str(ti.state) for ti in refused.get_task_instances()}
    assert states["plan_arrival_days"] == "failed" and states["ingest_arrival_days"] == "upstream_failed"
    assert not settings.lake_dir.exists()

    run = backfill_dag.test(run_conf={"start": FIRST.isoformat(), "end": LAST.isoformat()})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"plan_arrival_days": "success", "ingest_arrival_days": "success", "build_sessions": "success"}
    assert lake(settings) == lake(day_by_day)
    assert records(settings) == records(day_by_day)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from fct_sessions").fetchone()[0] > 0
