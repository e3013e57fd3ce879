"""Publication of an arrival day is atomic for readers: a run killed mid-way leaves the previous
run's day whole, and the re-run leaves the lake an uninterrupted run leaves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import duckdb
import pytest
from pyspark.sql import SparkSession

from ingest.ingest_day import ingest_arrival_day
from ingest.schema import LAKE_PARTITION_COLUMNS
from core.settings import REPO_ROOT, Settings
from tests.ingest.conftest import make_settings
from tests.ingest.test_ingest_day import event, write_day

pytestmark = pytest.mark.slow

DAY = date(2026, 11, 5)
EARLIER = DAY - timedelta(days=1)
# Enough lines that the job spends seconds writing; small enough for a 2-core CI machine.
BIG_DAY_LINES = 150_000
EARLIER_LINES = [event("p1", "2026-11-04T10:00:00Z"), event("p2", "2026-11-01T10:00:00Z")]


def visible(settings: Settings) -> list[tuple]:
    """Every row a reader of ``events/*/*/*.parquet`` (dbt's glob) sees, sorted."""
    if not settings.events_dir.exists():
        return []
    return sorted(duckdb.sql(
        f"select event_id, event_time, user_id, session_id, item_id, event_type, extra, "
        f"event_date, arrival_date from read_parquet('{settings.events_dir}/*/*/*.parquet', "
        f"hive_partitioning = true)"
    ).fetchall())


def of_day(rows: list[tuple], day: date) -> list[tuple]:
    return [row for row in rows if row[-1] == day]


def big_day_lines() -> list[str]:
    # Five event dates, a malformed line and a re-send every thousand lines.
    lines = []
    for n in range(BIG_DAY_LINES):
        when = f"2026-11-0{1 + n % 5}T{n % 24:02d}:{n % 60:02d}:{(n // 60) % 60:02d}Z"
        lines.append(event(f"n{n:07d}", when, user_id=f"u{n % 997}", item_id=f"i{n % 211}"))
        if n % 1000 == 0:
            lines += ['{"event_id": "broken', lines[-1]]
    return lines


def start_job(settings: Settings, day: date) -> subprocess.Popen:
    env = dict(os.environ, RECSYS_HOME=str(settings.home), RECSYS_SPARK_MASTER="local[2]",
               RECSYS_SPARK_DRIVER_MEMORY="1g")
    # Its own process group: the kill takes the JVM down with the Python driver, as an OOM
    # killer or a lost node would.
    return subprocess.Popen([sys.executable, "-m", "ingest.ingest_day", "--date", day.isoformat()],
                            cwd=REPO_ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_while_writing(job: subprocess.Popen, settings: Settings, day: date) -> None:
    """SIGKILL the job as soon as Spark is writing the day's events (its _temporary folder exists)."""
    pattern = f"_staging/arrival_date={day.isoformat()}/*/events/_temporary"
    deadline = time.monotonic() + 600
    while not any(settings.lake_dir.glob(pattern)):
        if job.poll() is not None:
            pytest.fail(f"the job ended (exit {job.returncode}) before it wrote events; give it more lines")
        if time.monotonic() > deadline:
            os.killpg(job.pid, signal.SIGKILL)
            pytest.fail("the job did not start writing within 10 minutes")
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)


def test_a_killed_run_leaves_the_previous_day_whole_and_the_rerun_matches(
    spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    write_day(settings, EARLIER, {"e.jsonl": EARLIER_LINES})
    write_day(settings, DAY, {"e.jsonl": [event(f"o{n}", f"2026-11-0{1 + n % 5}T10:00:00Z") for n in range(50)]})
    ingest_arrival_day(settings, EARLIER, spark)
    ingest_arrival_day(settings, DAY, spark)
    before = visible(settings)
    assert len(of_day(before, DAY)) == 50

    # A new delivery of the day, big enough to kill the job while it writes.
    big = big_day_lines()
    (settings.raw_dir / DAY.isoformat() / "e.jsonl").unlink()
    write_day(settings, DAY, {"big.jsonl": big})
    job = start_job(settings, DAY)
    kill_while_writing(job, settings, DAY)
    assert job.returncode == -signal.SIGKILL

    # Readers see the previous run of the day, whole; the other day is untouched.
    assert visible(settings) == before
    assert not (settings.reconciliation_dir / f"{DAY}.json").exists()  # no record vouches for it

    # The re-run (in this process) gives the lake of a run that was never interrupted.
    result = ingest_arrival_day(settings, DAY, spark)
    reference = make_settings(tmp_path_factory.mktemp("uninterrupted"))
    write_day(reference, EARLIER, {"e.jsonl": EARLIER_LINES})
    write_day(reference, DAY, {"big.jsonl": big})
    ingest_arrival_day(reference, EARLIER, spark)
    assert ingest_arrival_day(reference, DAY, spark) == result | {
        "affected_event_dates": result["event_dates"]}  # a first run: every date it wrote changed
    after = visible(settings)
    assert after == visible(reference)
    assert len(of_day(after, DAY)) == result["written_rows"] == BIG_DAY_LINES
    assert result["quarantined_rows"] == result["duplicate_rows"] == BIG_DAY_LINES // 1000
    # The killed run's staging is gone; only the published version and the one before remain.
    assert not (settings.lake_dir / "_staging").exists() or not any((settings.lake_dir / "_staging").iterdir())
    assert len([p for p in (settings.lake_dir / "_versions" / f"arrival_date={DAY}").iterdir()
                if p.is_dir() and not p.is_symlink()]) <= 2


def test_every_file_readers_see_is_published_and_counted(spark: SparkSession, settings: Settings) -> None:
    write_day(settings, DAY, {"e.jsonl": [event("a1"), event("a2", "2026-11-03T10:00:00Z"), "{oops"]})
    result = ingest_arrival_day(settings, DAY, spark)
    # Only the lake's files match the glob: nothing staged, versioned or hidden is picked up.
    assert len(visible(settings)) == result["written_rows"] == 2
    quarantine = duckdb.sql(
        f"select count(*) from read_parquet('{settings.quarantine_dir}/*/*.parquet', hive_partitioning = true)"
    ).fetchall()[0][0]
    assert quarantine == result["quarantined_rows"] == 1
    # And Spark's partition discovery agrees (the job itself reads the lake this way).
    assert spark.read.parquet(str(settings.events_dir)).count() == 2


def test_a_lake_written_before_versioned_publication_is_taken_over(spark: SparkSession, settings: Settings) -> None:
    # The layout the job used to write: real folders, Spark's dynamic partition overwrite.
    legacy = spark.createDataFrame(
        [("x1", "u1", "i1", "view", date(2026, 11, 2), DAY), ("x2", "u1", "i1", "view", date(2026, 11, 5), DAY)],
        "event_id string, user_id string, item_id string, event_type string, event_date date, arrival_date date",
    ).selectExpr("event_id", "timestamp'2026-11-02 10:00:00' as event_time", "user_id",
                 "cast(null as string) as session_id", "item_id", "event_type", "cast(null as string) as extra",
                 *LAKE_PARTITION_COLUMNS)
    legacy.write.partitionBy(*LAKE_PARTITION_COLUMNS).parquet(str(settings.events_dir))
    spark.createDataFrame([("{", "unparseable", "x")], "raw_line string, reason string, source_file string") \
        .write.parquet(str(settings.quarantine_dir / f"arrival_date={DAY}"))

    write_day(settings, DAY, {"e.jsonl": [event("a1"), event("a2", "2026-11-04T10:00:00Z")]})
    result = ingest_arrival_day(settings, DAY, spark)

    # Without a manifest to compare with, every date the day showed or shows counts as changed.
    assert result["affected_event_dates"] == ["2026-11-02", "2026-11-04", "2026-11-05"]
    assert [row[0] for row in visible(settings)] == ["a1", "a2"]
    assert (settings.events_dir / "event_date=2026-11-05" / f"arrival_date={DAY}").is_symlink()
    assert (settings.quarantine_dir / f"arrival_date={DAY}").is_symlink()
    assert not (settings.events_dir / "event_date=2026-11-02").exists()
    assert json.loads((settings.reconciliation_dir / f"{DAY}.json").read_text())["quarantined_rows"] == 0
