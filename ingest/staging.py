"""One arrival day written into its run's staging folder and reconciled there, before publication.

The day's raw files are read (``ingest.raw_files``, salvaging what Spark cannot read whole) and
classified (``ingest.classify``); the valid events, one copy per ``event_id``, go to
``<run>/events/event_date=<d>/`` and the rejected lines to ``<run>/quarantine/``. The written
files are counted back from their footers, and every input line must be a written, quarantined
or duplicate row: otherwise :class:`ReconciliationError` stops the run before anything is
published (``ingest.publish``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Collection

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from core.settings import Settings
from ingest.classify import classify_lines, new_events
from ingest.line_parser import register
from ingest.raw_files import (
    Salvage,
    fully_read,
    plain_file_fully_read,
    read_lines,
    salvage_file,
    source_name,
)
from ingest.raw_inventory import is_gzip
from ingest.schema import LAKE_EVENT_COLUMNS, MAX_RAW_LINE_CHARS

# Lake columns written without a Parquet dictionary. Ids and millisecond times (almost) never
# repeat within a day; a day's users and sessions repeat a few times each but are too many for
# the dictionary's page, which fills within the first rows and falls back to plain encoding after
# costing the write its hashing (user_id and session_id come out somewhat bigger without it,
# which the write's time is worth).
PLAIN_EVENT_COLUMNS = ("event_id", "event_time", "user_id", "session_id")


class ReconciliationError(RuntimeError):
    """Input lines and written + quarantined + duplicate rows disagree: rows were lost."""


@dataclass
class Staged:
    input_rows: int
    written_rows: int
    quarantined_rows: int
    duplicate_rows: int
    quarantine_reasons: dict[str, int]
    # ISO event date -> {"rows": n, "fingerprint": order-independent hash of its rows}
    event_dates: dict[str, dict[str, Any]]


def stage_arrival_day(
    spark: SparkSession, settings: Settings, arrival_date: date, files: list[Path], run_dir: Path,
    max_line_bytes: int, excluded_arrival_dates: Collection[str] = (),
) -> Staged:
    """Write the day's events and quarantine under ``run_dir`` and reconcile them there."""
    classified, reason_counts, valid_dates = read_and_classify(
        spark, settings, arrival_date, files, run_dir, max_line_bytes)
    try:
        input_rows = sum(reason_counts.values())
        valid_rows = reason_counts.pop(None, 0)
        quarantine_reasons = dict(sorted(reason_counts.items()))
        write_quarantine(classified, run_dir / "quarantine")
        # Counted, and fingerprinted per event date, on their way into the writer, in the same
        # pass: the dedup window is neither computed twice nor cached, nor the files read back.
        # The rows per date come from the written files' footers instead: each figure kept per
        # date costs the observation a CASE and an update on every row.
        if valid_rows:
            observation = Observation("new_events")
            events = new_events(spark, classified, settings, arrival_date,
                                excluded_arrival_dates).withColumn(
                "_fingerprint", _row_fingerprint())
            # XOR of the rows' hashes: order-independent, and no row cancels itself out, for a
            # date holds one row per event_id. (A sum would need decimals against overflow,
            # which cost more CPU.)
            per_date = [
                F.bit_xor(F.when(F.col("event_date") == F.lit(day), F.col("_fingerprint"))).alias(_date_metric(day))
                for day in valid_dates
            ]
            observed = events.observe(observation, F.count(F.lit(1)).alias("rows"), *per_date)
            write_events(observed.drop("_fingerprint"), run_dir / "events")
            metrics = observation.get
        else:
            (run_dir / "events").mkdir(parents=True)
            metrics = {"rows": 0}
    finally:
        classified.unpersist()
    # A date the observation saw no row of has a null fingerprint.
    fingerprints = {day.isoformat(): metrics[_date_metric(day)] for day in valid_dates
                    if metrics.get(_date_metric(day)) is not None}

    # Counted back from the written files' footers (no data read), so a lost write shows up as
    # a mismatch with the observed rows before anything is published.
    written = {day: _parquet_rows(run_dir / "events" / f"event_date={day}") for day in fingerprints}
    event_dates = {day: {"rows": written[day], "fingerprint": str(fingerprint)}
                   for day, fingerprint in fingerprints.items()}
    folders = {path.name for path in (run_dir / "events").glob("event_date=*")}
    stray = sorted(folders - {f"event_date={day}" for day in event_dates})
    quarantined_rows = _parquet_rows(run_dir / "quarantine")
    new_event_rows = metrics["rows"]
    written_rows = sum(written.values())
    duplicate_rows = valid_rows - new_event_rows
    if (
        stray
        or written_rows != new_event_rows
        or not all(written.values())
        or quarantined_rows != sum(quarantine_reasons.values())
        or input_rows != written_rows + quarantined_rows + duplicate_rows
    ):
        raise ReconciliationError(
            f"arrival day {arrival_date}: {input_rows} input lines but {written_rows} written "
            f"(expected {new_event_rows}; by event date {written}, unexpected {stray}) + "
            f"{quarantined_rows} quarantined (expected {sum(quarantine_reasons.values())}) + "
            f"{duplicate_rows} duplicates; nothing was published"
        )
    return Staged(input_rows, written_rows, quarantined_rows, duplicate_rows, quarantine_reasons, event_dates)


def _date_metric(day: date) -> str:
    """The name of an event date's fingerprint in the write's observation."""
    return f"fingerprint_{day:%Y%m%d}"


def _row_fingerprint() -> Column:
    # Spark's hash skips nulls, so (null, "x") and ("x", null) would hash alike: the null flags
    # of the nullable columns go in too.
    return F.xxhash64(
        *(F.col(name) for name in LAKE_EVENT_COLUMNS),
        F.col("session_id").isNull(),
        F.col("extra").isNull(),
    )


def _parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path in folder.glob("*.parquet"))


def read_and_classify(
    spark: SparkSession, settings: Settings, arrival_date: date, files: list[Path], run_dir: Path,
    max_line_bytes: int,
) -> tuple[DataFrame, Counter, list[date]]:
    """Classified lines (cached), the number of lines per reason (None: valid) and the event
    dates of the valid lines.

    Spark reads the files first. A file Spark cannot read to its end (a truncated gzip fails the
    read) or whose lines do not add up to its size (Hadoop skipped over-long lines without a
    trace) is salvaged: streamed once in Python into a plain copy of its readable lines plus
    quarantine rows for the rest, and the day is read again with the copy in its place. The
    usual day has no such file and costs one read.
    """
    salvage_dir = run_dir / "raw"
    # Hadoop picks its codec by a case-sensitive suffix: a gzip file named ``.GZ`` would be
    # read as plain bytes. Such (rare) files are decompressed by the salvage from the start.
    salvaged: dict[Path, Salvage] = {
        path: salvage_file(path, salvage_dir, max_line_bytes)
        for path in files
        if is_gzip(path) and not path.name.endswith(".gz") and path.stat().st_size > 0
    }
    parser = register(spark, settings)
    while True:
        lines = read_lines(spark, files, salvaged, arrival_date, max_line_bytes)
        # Cached by the count per reason below: the quarantine and the dedup read it back
        # instead of parsing the day again.
        classified = _cached(classify_lines(lines, settings, arrival_date, max_line_bytes, parser))
        try:
            stats = classified.groupBy("source_file", "reason", "event_date").agg(
                F.count(F.lit(1)).alias("rows"),
                F.count("line_bytes").alias("lines"),
                F.sum("line_bytes").alias("bytes"),
            ).collect()
        except Exception:
            classified.unpersist()
            # Spark names the file in its error, but not always in a form worth parsing; the
            # compressed files are checked directly instead, and the error stands if none is damaged.
            damaged = {}
            for path in files:
                if path in salvaged or not is_gzip(path) or path.stat().st_size == 0:
                    continue
                salvage = salvage_file(path, salvage_dir, max_line_bytes)
                if salvage.damage:
                    damaged[path] = salvage
                else:
                    salvage.copy.unlink()
            if not damaged:
                raise
            salvaged.update(damaged)
            continue

        read: dict[str, tuple[int, int]] = {}
        reasons: Counter = Counter()
        valid_dates: set[date] = set()
        for row in stats:
            lines_read, bytes_read = read.get(row["source_file"], (0, 0))
            read[row["source_file"]] = (lines_read + row["lines"], bytes_read + (row["bytes"] or 0))
            reasons[row["reason"]] += row["rows"]
            if row["reason"] is None:
                valid_dates.add(row["event_date"])
        incomplete = []
        for path in files:
            lines_read, bytes_read = read.get(source_name(arrival_date, path.name), (0, 0))
            if path in salvaged:
                if not plain_file_fully_read(salvaged[path].copy, lines_read, bytes_read):
                    raise ReconciliationError(f"the salvaged copy of {path} was not read whole")
            elif path.stat().st_size > 0 and not fully_read(path, lines_read, bytes_read):
                incomplete.append(path)
        if not incomplete:
            return classified, reasons, sorted(valid_dates)
        classified.unpersist()
        for path in incomplete:
            salvaged[path] = salvage_file(path, salvage_dir, max_line_bytes)


def _cached(frame: DataFrame) -> DataFrame:
    """``frame``, marked to be cached on local disk by the first action that computes it.

    On disk, so a big day needs no more memory than a small one, and uncompressed (see
    ``ingest.spark``): Spark's column compression costs more CPU than reading the cache saves.
    """
    return frame.persist(StorageLevel.DISK_ONLY)


def write_events(events: DataFrame, folder: Path) -> None:
    (
        # Written from the partitions the dedup left (one file per partition and event date)
        # rather than shuffled once more into a file per date; rows in time order in each file.
        events.drop("arrival_date")
        .sortWithinPartitions("event_date", "event_time", "event_id")
        .write.mode("errorifexists")
        .options(**{f"parquet.enable.dictionary#{name}": "false" for name in PLAIN_EVENT_COLUMNS})
        # arrival_date is not a folder here: the published link names it (ingest.publish).
        .partitionBy("event_date")
        .parquet(str(folder))
    )


def write_quarantine(classified: DataFrame, folder: Path) -> None:
    rejected = classified.where(F.col("reason").isNotNull()).select(
        # Valid UTF-8 in the quarantine: bad_encoding evidence would otherwise make Parquet
        # readers fail on the whole file.
        F.substring(F.make_valid_utf8("raw_line"), 1, MAX_RAW_LINE_CHARS).alias("raw_line"),
        "reason",
        "source_file",
    )
    (
        rejected.coalesce(1)
        .sortWithinPartitions("source_file", "reason", "raw_line")
        .write.mode("errorifexists")
        .parquet(str(folder))
    )
