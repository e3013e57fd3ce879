"""Spark job: one arrival day of raw logs into the lake, the quarantine and a reconciliation.

Every input line ends up in exactly one place: the events lake (valid, first copy of its
``event_id``), the quarantine (with a machine-readable reason) or the duplicate count. The
reconciliation record states the three counts and the job refuses to finish if they do not add
up to the number of input lines.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ingest.schema import (
    CORRUPT_RECORD_FIELD,
    EMPTY_LINE,
    EVENT_TYPES,
    FUTURE_TIMESTAMP,
    LAKE_EVENT_COLUMNS,
    LAKE_EVENT_SCHEMA,
    LAKE_PARTITION_COLUMNS,
    MAX_RAW_LINE_CHARS,
    QUARANTINE_SCHEMA,
    RAW_EVENT_FIELDS,
    RAW_EVENT_SCHEMA,
    REQUIRED_FIELDS,
    STRING_FIELDS,
    TOO_OLD_TIMESTAMP,
    UNKNOWN_EVENT_TYPE,
    UNPARSEABLE,
    bad_type,
    missing_field,
)
from ingest.spark import spark_session
from pipeline.settings import Settings

RAW_FILE_SUFFIXES = (".jsonl", ".jsonl.gz")

# Strict JSON: what the format promises, so a client that starts sending single quotes or NaN
# is noticed in the quarantine instead of being half-understood.
JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_RECORD_FIELD,
    "allowSingleQuotes": "false",
    "allowNonNumericNumbers": "false",
}
# ISO-8601 with a zone. Spark's timestamp cast alone would also accept "2026" or a time without
# zone (read in the session zone), which the format does not allow.
ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
# from_json stops after the first JSON value, so two events glued together by a lost newline
# would silently lose the second one. `}{"key":` cannot occur inside a valid single object
# (inside a string the quote after `{` would close it), so this only matches glued objects.
GLUED_OBJECTS_PATTERN = r"\}\s*\{\s*\"[^\"\\]*\"\s*:"
BLANK_PATTERN = r"^\s*$"


class MissingArrivalDay(FileNotFoundError):
    """The raw folder of an arrival day does not exist (the upstream export did not land)."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOENT, "raw folder of the arrival day not found", str(path))
        self.path = path


class ReconciliationError(RuntimeError):
    """Input lines and written + quarantined + duplicate rows disagree: rows were lost."""


def raw_files(folder: Path) -> list[Path]:
    """The day's log files, sorted; hidden and temporary files (``.x``, ``_x``) are skipped."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith((".", "_")) and path.name.endswith(RAW_FILE_SUFFIXES)
    )


def ingest_arrival_day(settings: Settings, arrival_date: date, spark: SparkSession | None = None) -> dict[str, Any]:
    """Ingest ``settings.raw_dir/<arrival_date>/`` and return its reconciliation record.

    Re-running a day replaces exactly what the previous run of that day wrote. Events whose
    ``event_id`` the lake already holds from an earlier arrival day count as duplicates, so
    arrival days must be ingested in date order for cross-day duplicates to be dropped.
    """
    folder = settings.raw_dir / arrival_date.isoformat()
    if not folder.is_dir():
        raise MissingArrivalDay(folder)
    files = raw_files(folder)
    reconciliation_path = settings.reconciliation_dir / f"{arrival_date.isoformat()}.json"
    # A previous run's record must not vouch for a lake this run is about to change: until this
    # run reconciles, the day has no record and the quality gate stops on it.
    reconciliation_path.unlink(missing_ok=True)
    spark = spark or spark_session(settings)

    lines = _read_lines(spark, files, arrival_date)
    classified = _classify(lines, settings, arrival_date).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        reason_counts = {row["reason"]: row["count"] for row in classified.groupBy("reason").count().collect()}
        input_rows = sum(reason_counts.values())
        valid_rows = reason_counts.pop(None, 0)
        quarantine_reasons = dict(sorted(reason_counts.items()))

        _write_quarantine(classified, settings, arrival_date)
        # Materialized and cut from its plan: the plan reads the lake (earlier days' ids), which
        # the write below must not depend on while it replaces files there.
        events = _new_events(spark, classified, settings, arrival_date).localCheckpoint(eager=True)
        new_event_rows = events.count()
        event_dates = sorted(row["event_date"] for row in events.select("event_date").distinct().collect())
        _write_events(events, settings, arrival_date, event_dates)
        events.unpersist()
    finally:
        classified.unpersist()

    # Counted back from the written files, so a lost write shows up as a mismatch.
    written_rows = _lake_rows(spark, settings, arrival_date)
    quarantined_rows = _quarantine_rows(spark, settings, arrival_date)
    reconciliation = {
        "arrival_date": arrival_date.isoformat(),
        "input_rows": input_rows,
        "written_rows": written_rows,
        "quarantined_rows": quarantined_rows,
        "duplicate_rows": valid_rows - new_event_rows,
        "quarantine_reasons": quarantine_reasons,
        "event_dates": [d.isoformat() for d in event_dates],
    }
    accounted = written_rows + quarantined_rows + reconciliation["duplicate_rows"]
    if (
        input_rows != accounted
        or written_rows != new_event_rows
        or quarantined_rows != sum(quarantine_reasons.values())
    ):
        raise ReconciliationError(
            f"arrival day {arrival_date}: {input_rows} input lines but {written_rows} written "
            f"(expected {new_event_rows}) + {quarantined_rows} quarantined "
            f"(expected {sum(quarantine_reasons.values())}) + {reconciliation['duplicate_rows']} duplicates"
        )
    _write_json(reconciliation_path, reconciliation)
    return reconciliation


# ---- reading and classifying ----


def _read_lines(spark: SparkSession, files: list[Path], arrival_date: date) -> DataFrame:
    """One row per input line: ``raw_line`` (whole) and ``source_file`` (``<day>/<name>``)."""
    # Spark cannot decompress a zero-byte .gz (it has no gzip header); it holds no lines anyway.
    files = [path for path in files if path.stat().st_size > 0]
    if not files:
        return spark.createDataFrame([], "raw_line string, source_file string")
    return spark.read.text([str(path) for path in files]).select(
        F.col("value").alias("raw_line"),
        # Relative to the raw folder, so the quarantine does not depend on where RECSYS_HOME is.
        F.concat(F.lit(f"{arrival_date.isoformat()}/"), F.col("_metadata.file_name")).alias("source_file"),
    )


def _json_type(variant: Column, name: str) -> Column:
    """The JSON type of a top-level field: STRING, BIGINT, OBJECT<...>, VOID (null); null if absent."""
    return F.schema_of_variant(F.try_variant_get(variant, f"$.{name}", "variant"))


def _blank(column: Column) -> Column:
    return column.isNull() | column.rlike(BLANK_PATTERN)


def _classify(lines: DataFrame, settings: Settings, arrival_date: date) -> DataFrame:
    """Add ``reason`` (null for a valid event) and the parsed lake columns to every line."""
    line = F.col("raw_line")
    parsed = F.col("parsed")
    # A second, strict parse: it rejects duplicate keys and tells the JSON type of each field,
    # which from_json hides by turning numbers and objects into strings.
    variant = F.col("variant")
    event_time = F.col("event_time")

    day_start = datetime.combine(arrival_date, time.min, tzinfo=timezone.utc)
    latest = day_start + timedelta(days=1, minutes=settings.max_future_skew_minutes)
    earliest = day_start - timedelta(days=settings.max_event_age_days)

    unparseable = (
        parsed.isNull()
        | parsed[CORRUPT_RECORD_FIELD].isNotNull()
        | variant.isNull()
        | ~F.coalesce(F.schema_of_variant(variant).startswith("OBJECT"), F.lit(False))
        | ~line.rlike(r"\}\s*$")
        | line.rlike(GLUED_OBJECTS_PATTERN)
    )
    types = {name: F.col(f"type_{name}") for name in RAW_EVENT_FIELDS}
    wrong_type: dict[str, Column] = {
        name: types[name].isNotNull() & (types[name] != "VOID") & (types[name] != "STRING")
        for name in STRING_FIELDS
    }
    wrong_type["event_time"] = (
        wrong_type["event_time"] | ~parsed["event_time"].rlike(ISO_TIME_PATTERN) | event_time.isNull()
    )
    wrong_type["extra"] = (
        types["extra"].isNotNull() & (types["extra"] != "VOID") & ~types["extra"].startswith("OBJECT")
    )

    reason = F.when(line.rlike(BLANK_PATTERN), F.lit(EMPTY_LINE)).when(unparseable, F.lit(UNPARSEABLE))
    for name in REQUIRED_FIELDS:
        reason = reason.when(_blank(parsed[name]), F.lit(missing_field(name)))
    for name in RAW_EVENT_FIELDS:
        reason = reason.when(wrong_type[name], F.lit(bad_type(name)))
    reason = (
        reason.when(~parsed["event_type"].isin(*EVENT_TYPES), F.lit(UNKNOWN_EVENT_TYPE))
        .when(event_time > F.lit(latest), F.lit(FUTURE_TIMESTAMP))
        .when(event_time < F.lit(earliest), F.lit(TOO_OLD_TIMESTAMP))
    )

    with_parse = lines.select(
        "raw_line",
        "source_file",
        F.from_json(line, RAW_EVENT_SCHEMA, JSON_OPTIONS).alias("parsed"),
        F.try_parse_json(line).alias("variant"),
    )
    with_types = with_parse.select(
        "*",
        *(_json_type(variant, name).alias(f"type_{name}") for name in RAW_EVENT_FIELDS),
        F.try_to_timestamp(parsed["event_time"]).alias("event_time"),
    )
    return with_types.select(
        "raw_line",
        "source_file",
        reason.alias("reason"),
        parsed["event_id"].alias("event_id"),
        event_time,
        parsed["user_id"].alias("user_id"),
        # A blank session id is no session id: sessionization falls back to the inactivity gap.
        F.when(~_blank(parsed["session_id"]), parsed["session_id"]).alias("session_id"),
        parsed["item_id"].alias("item_id"),
        parsed["event_type"].alias("event_type"),
        parsed["extra"].alias("extra"),
        # From epoch seconds rather than to_date(), which would use the session time zone.
        F.date_from_unix_date(F.floor(F.unix_seconds(event_time) / 86400).cast("int")).alias("event_date"),
        F.lit(arrival_date).alias("arrival_date"),
    )


def _new_events(spark: SparkSession, classified: DataFrame, settings: Settings, arrival_date: date) -> DataFrame:
    """Valid events, one per ``event_id``, minus those the lake has from earlier arrival days."""
    valid = classified.where(F.col("reason").isNull())
    # Deterministic choice among copies of one event_id: re-runs keep the same row.
    first_copy = Window.partitionBy("event_id").orderBy("raw_line", "source_file")
    unique = valid.withColumn("copy", F.row_number().over(first_copy)).where(F.col("copy") == 1)
    events = unique.select(*LAKE_EVENT_COLUMNS, *LAKE_PARTITION_COLUMNS)
    if settings.events_dir.is_dir():
        earlier_ids = (
            spark.read.schema(LAKE_EVENT_SCHEMA)
            .parquet(str(settings.events_dir))
            .where(F.col("arrival_date") < F.lit(arrival_date))
            .select("event_id")
        )
        events = events.join(earlier_ids, on="event_id", how="left_anti")
    return events.select(*LAKE_EVENT_COLUMNS, *LAKE_PARTITION_COLUMNS)


# ---- writing ----


def _write_events(events: DataFrame, settings: Settings, arrival_date: date, event_dates: list[date]) -> None:
    if event_dates:
        (
            # One file per sub-partition, rows in time order: fewer, better-compressed files.
            events.repartition("event_date")
            .sortWithinPartitions("event_time", "event_id")
            .write.mode("overwrite")
            # Set on the write itself: a caller's session in static mode would otherwise
            # replace the whole lake with this one day.
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy(*LAKE_PARTITION_COLUMNS)
            .parquet(str(settings.events_dir))
        )
    # Dynamic overwrite only replaces the partitions it writes; sub-partitions of this arrival
    # day that the new run no longer has (its input changed) must go too.
    keep = {f"event_date={d.isoformat()}" for d in event_dates}
    for stale in settings.events_dir.glob(f"event_date=*/arrival_date={arrival_date.isoformat()}"):
        if stale.parent.name not in keep:
            shutil.rmtree(stale)
            try:
                stale.parent.rmdir()
            except OSError:
                pass  # other arrival days still have events on that date


def _write_quarantine(classified: DataFrame, settings: Settings, arrival_date: date) -> None:
    rejected = classified.where(F.col("reason").isNotNull()).select(
        F.substring("raw_line", 1, MAX_RAW_LINE_CHARS).alias("raw_line"), "reason", "source_file"
    )
    (
        rejected.coalesce(1)
        .sortWithinPartitions("source_file", "reason", "raw_line")
        .write.mode("overwrite")
        .parquet(str(_quarantine_path(settings, arrival_date)))
    )


def _quarantine_path(settings: Settings, arrival_date: date) -> Path:
    return settings.quarantine_dir / f"arrival_date={arrival_date.isoformat()}"


def _lake_rows(spark: SparkSession, settings: Settings, arrival_date: date) -> int:
    if not settings.events_dir.is_dir():
        return 0
    lake = spark.read.schema(LAKE_EVENT_SCHEMA).parquet(str(settings.events_dir))
    return lake.where(F.col("arrival_date") == F.lit(arrival_date)).count()


def _quarantine_rows(spark: SparkSession, settings: Settings, arrival_date: date) -> int:
    return spark.read.schema(QUARANTINE_SCHEMA).parquet(str(_quarantine_path(settings, arrival_date))).count()


def _write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: the quality gate may read it at any time.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ingest arrival days of raw logs into the lake.")
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="first arrival day")
    parser.add_argument("--to", type=date.fromisoformat, default=None, help="last arrival day (inclusive)")
    args = parser.parse_args(argv)
    last = args.to or args.date
    if last < args.date:
        parser.error("--to must not be before --date")
    settings = Settings.from_env()
    # A session that already runs in this process (a caller embedding main) is left running.
    started_here = SparkSession.getActiveSession() is None
    spark = spark_session(settings)
    try:
        day = args.date
        while day <= last:
            print(json.dumps(ingest_arrival_day(settings, day, spark=spark), sort_keys=True), flush=True)
            day += timedelta(days=1)
    finally:
        if started_here:
            spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
