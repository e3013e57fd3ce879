"""Spark job: one arrival day of raw logs into the lake, the quarantine and a reconciliation.

Every input line ends up in exactly one place: the events lake (valid, one copy per
``event_id``), the quarantine (with a machine-readable reason) or the duplicate count. Lines
that cannot be read whole (longer than the line limit, the cut-off rest of a truncated gzip
file) are quarantined too, never skipped. The reconciliation record states the three counts and
the job refuses to publish anything if they do not add up to the number of input lines. Every
file under the raw folder is read or named in the record as ignored, with its reason
(``ingest.raw_inventory``).

Publication is atomic for readers (docs/architecture.md, "Lake"): a run writes its arrival day
into ``lake/_staging/``, counts the written files back, moves the result under
``lake/_versions/arrival_date=<a>/<run>/`` and switches the day's ``current`` link to it with
one rename. ``events/event_date=<d>/arrival_date=<a>`` and ``quarantine/arrival_date=<a>`` are
links through ``current``, so a reader of ``events/*/*/*.parquet`` sees the whole previous run
of the day or the whole new one; a run killed at any point leaves the previous one in place.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import shutil
import struct
import sys
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Collection, Iterable, Iterator

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

from ingest.schema import (
    BAD_ENCODING,
    CORRUPT_FILE,
    EMPTY_LINE,
    EVENT_TYPES,
    FUTURE_TIMESTAMP,
    ID_FIELDS,
    LAKE_EVENT_COLUMNS,
    LAKE_EVENT_SCHEMA,
    LAKE_PARTITION_COLUMNS,
    LINE_TOO_LONG,
    MAX_ID_LENGTH,
    MAX_LINE_BYTES,
    MAX_RAW_LINE_CHARS,
    RAW_EVENT_FIELDS,
    REQUIRED_FIELDS,
    STRING_FIELDS,
    TOO_OLD_TIMESTAMP,
    TRUNCATED_FILE,
    UNKNOWN_EVENT_TYPE,
    UNPARSEABLE,
    bad_type,
    invalid_id,
    missing_field,
)
from ingest.ids import FORBIDDEN_ID_CHARACTERS
from ingest.line_parser import FUNCTION_NAME, register
from ingest.raw_inventory import is_gzip, take_inventory
from ingest.spark import spark_session
from core.errors import UserError
from core.settings import Settings

log = logging.getLogger(__name__)

# Every line is checked by Spark's variant parser (try_parse_json): strict JSON, which is what
# the format promises, so a client that starts sending single quotes, NaN, comments or unquoted
# keys is noticed in the quarantine instead of being half-understood; duplicate keys are
# rejected at every depth. The contract's fields are cast in one go to a struct of variants,
# whose JSON types decide (a field is null when absent and a variant null when it is JSON null;
# only a JSON object casts to the struct, an array, a scalar or null casts to null).
RAW_FIELDS_TYPE = "struct<" + ", ".join(f"`{name}`: variant" for name in RAW_EVENT_FIELDS) + ">"
# The fields' text is read by Spark's JSON reader (from_json) instead: taking a string out of a
# variant builds and evaluates a Cast expression per value, which cost more than a second parse
# of the line. For a line the variant parser accepted, both read the same strings; an object
# comes back as its text with the keys in the line's order (the variant sorts them and spells
# numbers its own way).
RAW_TEXTS_TYPE = "struct<" + ", ".join(f"`{name}`: string" for name in RAW_EVENT_FIELDS) + ">"
# ISO-8601 with a zone. Spark's timestamp cast alone would also accept "2026" or a time without
# zone (read in the session zone), which the format does not allow.
ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
BLANK_PATTERN = r"^\s*$"

# Hadoop's line reader skips a line once the bytes it consumed for it (line end included) reach
# this limit, and holds no more than that of any line. Spark passes read options into the
# Hadoop configuration, so this bounds the memory a 1 GB line can take.
HADOOP_MAX_LINE_KEY = "mapreduce.input.linerecordreader.line.maxlength"
# Room for the longest line end (CR LF) and the reader's ">=": a line within the limit is never
# skipped by Hadoop, so every skipped line is one the quarantine must hold.
HADOOP_LINE_SLACK = 3
# Hadoop reads the limit as a Java int.
MAX_LINE_LIMIT = 2**31 - 1 - HADOOP_LINE_SLACK

# Lake columns written without a Parquet dictionary. Ids and millisecond times (almost) never
# repeat within a day; a day's users and sessions repeat a few times each but are too many for
# the dictionary's page, which fills within the first rows and falls back to plain encoding after
# costing the write its hashing (2M events: user_id and session_id 16 % and 8 % bigger without it,
# the whole lake 4.5 %).
PLAIN_EVENT_COLUMNS = ("event_id", "event_time", "user_id", "session_id")

# Lake layout around publication (docs/architecture.md, "Lake"). Both folders are beside
# events/ and quarantine/, outside every reader's glob.
STAGING_FOLDER = "_staging"
VERSIONS_FOLDER = "_versions"
CURRENT_LINK = "current"
MANIFEST_FILE = "_manifest.json"
# The manifest of the version the latest reconciliation record vouched for: what "changed"
# is measured against, so a run killed between publishing and recording is not forgotten.
RECONCILED_FILE = "reconciled.json"
# Salvaged copies of damaged raw files get this suffix: no compression codec matches it.
SALVAGED_SUFFIX = ".readable"
SALVAGE_CHUNK_BYTES = 1 << 20
# Bytes of a rejected line kept to make MAX_RAW_LINE_CHARS characters of evidence (UTF-8: at
# most 4 bytes per character).
EVIDENCE_BYTES = 4 * MAX_RAW_LINE_CHARS
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MIN_BYTES = 18  # header (10) + trailer (8)


class MissingArrivalDay(UserError, FileNotFoundError):
    """The raw folder of an arrival day does not exist (the upstream export did not land).

    Raised for one day (``ingest_arrival_day``) or for a range (:func:`plan_arrival_days`: a
    range in which no day has a raw folder, or a gap under ``strict``). ``path`` is the first
    missing folder, ``missing`` every missing arrival day. ``str()`` is one line (a user error:
    the command line prints it without a traceback).
    """

    def __init__(self, path: Path, message: str | None = None, missing: list[date] | None = None) -> None:
        FileNotFoundError.__init__(self, errno.ENOENT, "raw folder of the arrival day not found", str(path))
        self.path = path
        self.missing = list(missing or [])
        self.message = message or f"raw folder of the arrival day not found: {path}"
        self.fix = None

    def __str__(self) -> str:
        return UserError.__str__(self)


class ReconciliationError(RuntimeError):
    """Input lines and written + quarantined + duplicate rows disagree: rows were lost."""


@dataclass(frozen=True)
class ArrivalPlan:
    """The arrival days of a range to ingest, in order, and those skipped for having no raw folder."""

    first: date
    last: date
    days: list[date]
    skipped: list[date]


def plan_arrival_days(settings: Settings, first: date, last: date, *, strict: bool = False) -> ArrivalPlan:
    """The arrival days ``first..last`` (inclusive) that have a raw folder, in order, and the skipped ones.

    Every raw folder is checked before anything is ingested. A day with **no raw folder** is
    skipped (one warning each, and listed in ``skipped``): nothing arrived that day, so there is
    nothing to ingest and the lake gets no hole; the other days are still ingested in date order
    and their cross-day duplicates dropped against every earlier day in the lake. The one risk is
    an export that lands late: ingesting the days after it first keeps cross-day duplicates that
    a later run of the missing day cannot drop (a run only compares with earlier arrival days).
    When a skipped day's folder turns up, ingest it and then re-run the days after it (a re-run
    replaces exactly that day's previous run); ``strict`` stops at any gap instead. A day whose
    folder exists but is empty arrived empty: it is ingested (zero rows), never skipped.

    ``strict``: refuse a range with any missing day instead, before ingesting anything (raises
    :class:`MissingArrivalDay` naming every missing day). A range in which no day has a raw
    folder is always refused: there is nothing to ingest, which is more likely a wrong range or
    ``RECSYS_HOME`` than a quiet week.
    """
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    present = [day for day in days if (settings.raw_dir / day.isoformat()).is_dir()]
    skipped = [day for day in days if day not in set(present)]
    span = f"{first}..{last}"
    if not present and first == last:
        raise MissingArrivalDay(settings.raw_dir / first.isoformat(), missing=skipped)
    if not present:
        raise MissingArrivalDay(
            settings.raw_dir / first.isoformat(),
            f"no arrival day of {span} has a raw folder under {settings.raw_dir} "
            f"(expected {settings.raw_dir}/<YYYY-MM-DD>/); check the dates and RECSYS_HOME",
            missing=skipped,
        )
    if skipped and strict:
        raise MissingArrivalDay(
            settings.raw_dir / skipped[0].isoformat(),
            f"{len(skipped)} of {len(days)} arrival days of {span} have no raw folder under "
            f"{settings.raw_dir}: {', '.join(d.isoformat() for d in skipped)}; strict mode ingests "
            f"nothing (without it these days are skipped)",
            missing=skipped,
        )
    for day in skipped:
        log.warning("arrival day %s skipped: no raw folder %s", day, settings.raw_dir / day.isoformat())
    return ArrivalPlan(first=first, last=last, days=present, skipped=skipped)


def arrival_days(settings: Settings, first: date, last: date, *, strict: bool = False) -> list[date]:
    """The days of :func:`plan_arrival_days` to ingest (those with a raw folder), in order."""
    return plan_arrival_days(settings, first, last, strict=strict).days


def skipped_days_line(plan: ArrivalPlan, ingested: int | None = None) -> str:
    """``ingested N days, skipped M days without raw folder: 2026-11-02, ...`` (the backfill's summary)."""
    n = len(plan.days) if ingested is None else ingested
    line = f"ingested {n} day{'s' * (n != 1)} ({plan.first}..{plan.last})"
    if plan.skipped:
        m = len(plan.skipped)
        line += (f", skipped {m} day{'s' * (m != 1)} without raw folder: "
                 + ", ".join(d.isoformat() for d in plan.skipped))
    return line


def affected_event_dates(settings: Settings, arrival_date: date) -> list[date]:
    """The event dates whose lake content the latest run of ``arrival_date`` changed.

    Read from the day's reconciliation record, so it is only known for a run that reconciled;
    downstream stages recompute these dates (late events of this arrival day sit there).
    """
    path = settings.reconciliation_dir / f"{arrival_date.isoformat()}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, "no reconciliation record: the arrival day has not been ingested (or its "
            "last run did not finish)", str(path)
        ) from None
    return [date.fromisoformat(day) for day in record["affected_event_dates"]]


def ingest_arrival_day(
    settings: Settings,
    arrival_date: date,
    spark: SparkSession | None = None,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    excluded_arrival_dates: Collection[str] = (),
) -> dict[str, Any]:
    """Ingest ``settings.raw_dir/<arrival_date>/`` and return its reconciliation record.

    Re-running a day replaces exactly what the previous run of that day published. Events whose
    ``event_id`` the lake already holds from an earlier arrival day count as duplicates, so
    arrival days must be ingested in date order for cross-day duplicates to be dropped; earlier
    days in ``excluded_arrival_dates`` (rejected by the quality gate, ISO dates) do not count,
    so a re-send of a rejected day's event is kept instead of lost with that day. Lines
    longer than ``max_line_bytes`` bytes are quarantined as ``line_too_long``. One run per
    arrival day at a time: a run clears the day's staging area, a concurrent run's included.
    """
    if not 1 <= max_line_bytes <= MAX_LINE_LIMIT:
        raise ValueError(f"max_line_bytes must be in 1..{MAX_LINE_LIMIT}, got {max_line_bytes}")
    folder = settings.raw_dir / arrival_date.isoformat()
    if not folder.is_dir():
        raise MissingArrivalDay(folder)
    inventory = take_inventory(folder)
    files = inventory.files
    reconciliation_path = settings.reconciliation_dir / f"{arrival_date.isoformat()}.json"
    # A previous run's record must not vouch for a lake this run is about to change: until this
    # run reconciles, the day has no record and the quality gate stops on it.
    reconciliation_path.unlink(missing_ok=True)
    spark = spark or spark_session(settings)

    staging = _staging_dir(settings, arrival_date)
    # What a killed run left: never visible to readers, and not worth resuming.
    shutil.rmtree(staging, ignore_errors=True)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]
    run_dir = staging / run_id
    run_dir.mkdir(parents=True)

    stage = _stage_arrival_day(spark, settings, arrival_date, files, run_dir, max_line_bytes,
                               excluded_arrival_dates)
    manifest = {
        "run_id": run_id,
        "arrival_date": arrival_date.isoformat(),
        "event_dates": stage.event_dates,
        "quarantined_rows": stage.quarantined_rows,
    }
    _write_json(run_dir / MANIFEST_FILE, manifest)
    # Measured against what the last record vouched for, before the swap changes what is visible.
    affected = _changed_event_dates(settings, arrival_date, stage.event_dates)
    _publish(settings, arrival_date, run_dir, run_id, sorted(stage.event_dates))

    reconciliation = {
        "arrival_date": arrival_date.isoformat(),
        "input_rows": stage.input_rows,
        "written_rows": stage.written_rows,
        "quarantined_rows": stage.quarantined_rows,
        "duplicate_rows": stage.duplicate_rows,
        "quarantine_reasons": stage.quarantine_reasons,
        "ingested_files": [_source_name(arrival_date, path.name) for path in files],
        # Files under the raw folder that were not read (the quality gate warns about them).
        "ignored_files": [item.to_dict() for item in inventory.ignored],
        "event_dates": sorted(stage.event_dates),
        "affected_event_dates": affected,
    }
    _write_json(reconciliation_path, reconciliation)
    # After the record: a run killed in between measures its changes against the older state
    # again, which reports more dates than needed rather than fewer.
    _write_json(_versions_dir(settings, arrival_date) / RECONCILED_FILE, manifest)
    _collect_garbage(settings, arrival_date)
    return reconciliation


# ---- staging: read, classify, write, count back ----


@dataclass
class _Staged:
    input_rows: int
    written_rows: int
    quarantined_rows: int
    duplicate_rows: int
    quarantine_reasons: dict[str, int]
    # ISO event date -> {"rows": n, "fingerprint": order-independent hash of its rows}
    event_dates: dict[str, dict[str, Any]]


def _stage_arrival_day(
    spark: SparkSession, settings: Settings, arrival_date: date, files: list[Path], run_dir: Path,
    max_line_bytes: int, excluded_arrival_dates: Collection[str] = (),
) -> _Staged:
    """Write the day's events and quarantine under ``run_dir`` and reconcile them there."""
    classified, reason_counts, valid_dates = _read_and_classify(
        spark, settings, arrival_date, files, run_dir, max_line_bytes)
    try:
        input_rows = sum(reason_counts.values())
        valid_rows = reason_counts.pop(None, 0)
        quarantine_reasons = dict(sorted(reason_counts.items()))
        _write_quarantine(classified, run_dir / "quarantine")
        # Counted, and fingerprinted per event date, on their way into the writer, in the same
        # pass: the dedup window is neither computed twice nor cached, nor the files read back.
        # The rows per date come from the written files' footers instead: each figure kept per
        # date costs the observation a CASE and an update on every row.
        if valid_rows:
            new_events = Observation("new_events")
            events = _new_events(spark, classified, settings, arrival_date,
                                 excluded_arrival_dates).withColumn(
                "_fingerprint", _row_fingerprint())
            # XOR of the rows' hashes: order-independent, and no row cancels itself out, for a
            # date holds one row per event_id. (A sum would need decimals against overflow,
            # which cost 3 s of CPU more at 10M events.)
            per_date = [
                F.bit_xor(F.when(F.col("event_date") == F.lit(day), F.col("_fingerprint"))).alias(_date_metric(day))
                for day in valid_dates
            ]
            observed = events.observe(new_events, F.count(F.lit(1)).alias("rows"), *per_date)
            _write_events(observed.drop("_fingerprint"), run_dir / "events")
            metrics = new_events.get
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
    return _Staged(input_rows, written_rows, quarantined_rows, duplicate_rows, quarantine_reasons, event_dates)


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


# ---- reading, with salvage of what Spark cannot read ----


@dataclass
class _Salvage:
    """A raw file re-read in Python: its readable lines in ``copy``, the rest as quarantine rows."""

    copy: Path
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (evidence, reason)
    damage: str | None = None  # TRUNCATED_FILE or CORRUPT_FILE when the file could not be read to its end


def _read_and_classify(
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
    salvaged: dict[Path, _Salvage] = {
        path: _salvage(path, salvage_dir, max_line_bytes)
        for path in files
        if is_gzip(path) and not path.name.endswith(".gz") and path.stat().st_size > 0
    }
    parser = register(spark, settings)
    while True:
        lines = _read_lines(spark, files, salvaged, arrival_date, max_line_bytes)
        # Cached by the count per reason below: the quarantine and the dedup read it back
        # instead of parsing the day again.
        classified = _cached(_classify(lines, settings, arrival_date, max_line_bytes, parser))
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
                salvage = _salvage(path, salvage_dir, max_line_bytes)
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
            lines_read, bytes_read = read.get(_source_name(arrival_date, path.name), (0, 0))
            if path in salvaged:
                if not _plain_file_fully_read(salvaged[path].copy, lines_read, bytes_read):
                    raise ReconciliationError(f"the salvaged copy of {path} was not read whole")
            elif path.stat().st_size > 0 and not _fully_read(path, lines_read, bytes_read):
                incomplete.append(path)
        if not incomplete:
            return classified, reasons, sorted(valid_dates)
        classified.unpersist()
        for path in incomplete:
            salvaged[path] = _salvage(path, salvage_dir, max_line_bytes)


def _cached(frame: DataFrame) -> DataFrame:
    """``frame``, marked to be cached on local disk by the first action that computes it.

    On disk, so a big day needs no more memory than a small one, and uncompressed (see
    ``ingest.spark``): Spark's column compression costs more CPU than reading the cache saves.
    """
    return frame.persist(StorageLevel.DISK_ONLY)


def _source_name(arrival_date: date, name: str) -> str:
    # Relative to the raw folder, so the quarantine does not depend on where RECSYS_HOME is.
    return f"{arrival_date.isoformat()}/{name}"


def _fully_read(path: Path, lines: int, line_bytes: int) -> bool:
    """Whether ``lines`` lines of ``line_bytes`` bytes (line ends excluded) are all of ``path``."""
    if not is_gzip(path):
        return _plain_file_fully_read(path, lines, line_bytes)
    size = path.stat().st_size
    if size < GZIP_MIN_BYTES:
        return False
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        # The gzip trailer's uncompressed size (modulo 2**32, of the last member only): a file
        # of several members or over 4 GiB is salvaged once too often, never too rarely.
        (isize,) = struct.unpack("<I", handle.read(4))
    consumed = line_bytes + lines
    return isize in {consumed % 2**32, (consumed - 1) % 2**32} if lines else isize == 0


def _plain_file_fully_read(path: Path, lines: int, line_bytes: int) -> bool:
    # One LF per line; the last line may lack it. Anything else (skipped lines, CR LF line ends,
    # a byte-order mark) sends the file through the salvage, which handles them all.
    size = path.stat().st_size
    consumed = line_bytes + lines
    return size == consumed or (lines > 0 and size == consumed - 1)


def _read_lines(
    spark: SparkSession, files: list[Path], salvaged: dict[Path, _Salvage], arrival_date: date,
    max_line_bytes: int,
) -> DataFrame:
    """One row per input line: ``raw_line``, ``source_file`` (``<day>/<name>``), ``line_bytes``
    (null for a row the salvage made) and ``preset_reason`` (the salvage's quarantine reason)."""
    schema = "raw_line string, source_file string, line_bytes int, preset_reason string"
    # Spark cannot decompress a zero-byte .gz (it has no gzip header); it holds no lines anyway.
    paths = [str(salvaged[path].copy) if path in salvaged else str(path)
             for path in files if path in salvaged or path.stat().st_size > 0]
    frame: DataFrame | None = None
    if paths:
        frame = (
            spark.read.option(HADOOP_MAX_LINE_KEY, str(max_line_bytes + HADOOP_LINE_SLACK))
            .text(paths)
            .select(
                F.col("value").alias("raw_line"),
                F.concat(
                    F.lit(f"{arrival_date.isoformat()}/"),
                    F.regexp_replace(F.col("_metadata.file_name"), re.escape(SALVAGED_SUFFIX) + "$", ""),
                ).alias("source_file"),
                # Bytes, not characters: the line limit and the size check are about bytes.
                F.octet_length("value").alias("line_bytes"),
                F.lit(None).cast("string").alias("preset_reason"),
            )
        )
        frame = _spread_over_cores(frame, files=len(paths))
    rejected = [
        (evidence, _source_name(arrival_date, path.name), None, reason)
        for path, salvage in salvaged.items()
        for evidence, reason in salvage.rejected
    ]
    # Made only when needed: a local DataFrame costs the usual day close to a second.
    if rejected or frame is None:
        salvage_rows = spark.createDataFrame(rejected, schema)
        frame = salvage_rows if frame is None else frame.unionByName(salvage_rows)
    return frame


def _spread_over_cores(lines: DataFrame, files: int) -> DataFrame:
    """The lines of ``files`` files, spread over all cores when there are fewer files than cores.

    Spark reads a gzip file in one task (gzip cannot be split), so a day of one big file would
    be parsed and classified on one core. Hash-partitioning by the raw line after the read
    (cheaper than round robin, which sorts first) hands the lines to every core; the columns
    taken from the file (``source_file``, ``line_bytes``) are computed before the shuffle. With
    a file per core or more, every core has reading of its own and the shuffle would cost more
    than it saves. (A plain file Spark could split itself is rare: uploads are gzip.)
    """
    cores = lines.sparkSession.sparkContext.defaultParallelism
    if files >= cores:
        return lines
    return lines.repartition(cores, "raw_line")


def _salvage(path: Path, folder: Path, max_line_bytes: int) -> _Salvage:
    """Stream ``path`` (gzip or plain) into ``folder/<name>.readable`` as Hadoop would split it.

    Lines within ``max_line_bytes`` are copied; longer ones become ``line_too_long`` rows with a
    prefix, holding no more than ``max_line_bytes`` of any line in memory. A compressed file
    that ends early or is damaged keeps its complete lines; the rest (the cut line, whatever
    could not be decompressed) becomes one row.
    """
    folder.mkdir(parents=True, exist_ok=True)
    salvage = _Salvage(copy=folder / (path.name + SALVAGED_SUFFIX))
    splitter = _LineSplitter(max_line_bytes)

    def take(lines: Iterable[tuple[bytes, int]], sink: IO[bytes]) -> None:
        for content, length in lines:
            if length > max_line_bytes:
                salvage.rejected.append((_evidence(content), LINE_TOO_LONG))
            else:
                sink.write(content + b"\n")

    with open(path, "rb") as source, open(salvage.copy, "wb") as sink:
        chunks = _gunzip_chunks(source) if is_gzip(path) else iter(
            lambda: source.read(SALVAGE_CHUNK_BYTES), b"")
        try:
            for chunk in chunks:
                take(splitter.feed(chunk), sink)
        except EOFError:
            salvage.damage = TRUNCATED_FILE
        except zlib.error:
            salvage.damage = CORRUPT_FILE
        if salvage.damage is None:
            take(splitter.finish(), sink)
        else:
            salvage.rejected.append((_evidence(splitter.remainder()), salvage.damage))
    return salvage


def _gunzip_chunks(source: IO[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream (members one after another), in bounded chunks.

    Raises EOFError where the data ends inside a member and zlib.error where it is not gzip or
    fails its checksum, after yielding everything before that point. (gzip.GzipFile's buffered
    read drops what it decompressed in the call that hits the end.)
    """
    decompressor = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer, CRC checked
    pending = b""
    while True:
        if not pending:
            pending = source.read(SALVAGE_CHUNK_BYTES)
            if not pending:
                if not decompressor.eof:
                    raise EOFError("compressed data ends before the end-of-stream marker")
                return
        if decompressor.eof:  # another member follows
            decompressor = zlib.decompressobj(wbits=31)
        # Bounded output: a megabyte of compressed "yyyy..." inflates to a gigabyte.
        output = decompressor.decompress(pending, SALVAGE_CHUNK_BYTES)
        pending = decompressor.unconsumed_tail or decompressor.unused_data
        if output:
            yield output


def _evidence(content: bytes) -> str:
    return content[:EVIDENCE_BYTES].decode("utf-8", errors="replace")[:MAX_RAW_LINE_CHARS]


class _LineSplitter:
    """Splits a byte stream into lines as Hadoop's LineReader does: LF, CR or CR LF ends a line,
    a UTF-8 byte-order mark at the start is dropped, a last line without line end counts.

    Yields ``(content, length)``; a line over ``limit`` bytes keeps only an evidence prefix.
    """

    _LINE_END = re.compile(rb"[\r\n]")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.line = bytearray()
        self.length = 0
        self.started = False
        self.after_cr = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        start, done = 0, []
        if not self.started:
            self.started = True
            # Chunks are full reads, so the first one holds the whole mark unless the file is shorter.
            if chunk.startswith(UTF8_BOM):
                start = len(UTF8_BOM)
        if self.after_cr:
            self.after_cr = False
            if chunk[start:start + 1] == b"\n":
                start += 1
        if b"\r" not in chunk:
            # The common case, in C: split on LF only.
            pieces = chunk[start:].split(b"\n")
            self._append(pieces[0])
            for piece in pieces[1:]:
                done.append(self._take())
                self._append(piece)
            return done
        while (found := self._LINE_END.search(chunk, start)) is not None:
            self._append(chunk[start:found.start()])
            done.append(self._take())
            start = found.end()
            if chunk[found.start()] == 0x0D:
                if start == len(chunk):
                    self.after_cr = True  # an LF opening the next chunk belongs to this line end
                elif chunk[start] == 0x0A:
                    start += 1
        self._append(chunk[start:])
        return done

    def finish(self) -> list[tuple[bytes, int]]:
        return [self._take()] if self.length else []

    def remainder(self) -> bytes:
        return bytes(self.line)

    def _append(self, piece: bytes) -> None:
        self.length += len(piece)
        if self.length <= self.limit:
            self.line += piece
        elif len(self.line) > EVIDENCE_BYTES:
            del self.line[EVIDENCE_BYTES:]
        else:
            self.line += piece[: EVIDENCE_BYTES - len(self.line)]

    def _take(self) -> tuple[bytes, int]:
        taken = (bytes(self.line), self.length)
        self.line.clear()
        self.length = 0
        return taken


# ---- classifying ----


def _blank(column: Column) -> Column:
    return column.isNull() | column.rlike(BLANK_PATTERN)


def _classify(
    lines: DataFrame, settings: Settings, arrival_date: date, max_line_bytes: int, parser: str = "sql",
) -> DataFrame:
    """Add ``reason`` (null for a valid event) and the parsed lake columns to every line.

    ``parser``: "jvm" parses each line once with the registered Java function
    (``ingest.line_parser``), "sql" with Spark's own expressions; both give the same columns.
    """
    types = {name: F.col(f"type_{name}") for name in RAW_EVENT_FIELDS}
    values = {name: F.col(f"value_{name}") for name in STRING_FIELDS}
    event_time = F.col("event_time")
    line = F.col("raw_line")

    typed = _parsed_by_jvm(lines) if parser == "jvm" else _parsed_by_sql(lines)

    with_values = typed.select(
        "*",
        # Only a JSON string is a value: a number or an object in a string field is a bad type.
        *(F.when(types[name] == "STRING", F.col("texts")[name]).alias(f"value_{name}") for name in STRING_FIELDS),
    )
    with_time = with_values.select("*", F.try_to_timestamp(values["event_time"]).alias("event_time"))
    reason = _reason(types, values, event_time, settings, arrival_date, max_line_bytes)
    with_reason = with_time.select("*", reason.alias("reason"))
    return with_reason.select(
        # Kept for the quarantine's evidence only: the cache of a day's lines and the dedup's
        # shuffle would otherwise carry every valid line's text, over half of their bytes.
        F.when(F.col("reason").isNotNull(), line).alias("raw_line"),
        "source_file",
        "line_bytes",
        "reason",
        values["event_id"].alias("event_id"),
        event_time,
        values["user_id"].alias("user_id"),
        # A blank session id is no session id: sessionization falls back to the inactivity gap.
        F.when(~_blank(values["session_id"]), values["session_id"]).alias("session_id"),
        values["item_id"].alias("item_id"),
        values["event_type"].alias("event_type"),
        F.when(F.col("reason").isNull() & types["extra"].startswith("OBJECT"), F.col("texts")["extra"]).alias("extra"),
        # From epoch seconds rather than to_date(), which would use the session time zone.
        F.date_from_unix_date(F.floor(F.unix_seconds(event_time) / 86400).cast("int")).alias("event_date"),
        F.lit(arrival_date).alias("arrival_date"),
    )


def _parsed_by_sql(lines: DataFrame) -> DataFrame:
    """``whole_object``, ``type_<field>`` and ``texts`` from Spark's parsers (three passes)."""
    line = F.col("raw_line")
    fields = F.col("fields")
    # One step per select: each derived column is computed once and the next step refers to it.
    # from_json has no whole-stage code generation: its step comes first, while a row is still
    # narrow, so that it is the only row materialized between the read and the rest of the
    # classification (after the variant parse, that row would carry a variant per field).
    with_texts = lines.select("raw_line", "source_file", "line_bytes", "preset_reason",
                              F.from_json(line, RAW_TEXTS_TYPE).alias("texts"))
    hashed = with_texts.select("*", F.xxhash64(line).alias("line_hash"))
    # The parser reads the first JSON value and ignores whatever follows it, which would let
    # `{...}}`, `{...},{...}` or two events glued by a lost newline through as one event (and
    # lose the rest). So a line is parsed as the first element of `[<line>,<its 64-bit hash>]`:
    # it is one JSON value and nothing more exactly when the hash comes back as the array's
    # second element. Text in the line that closed the array early and faked that ending would
    # have to hold the hash of the very line it is part of.
    wrapped = hashed.select(
        "*", F.try_parse_json(F.concat(F.lit("["), line, F.lit(","), F.col("line_hash"), F.lit("]"))).alias("wrapped"),
    )
    parsed = wrapped.select(
        "raw_line", "source_file", "line_bytes", "preset_reason",
        F.try_variant_get("wrapped", "$[0]", RAW_FIELDS_TYPE).alias("fields"),
        # As JSON text, not cast to a number: a variant cast builds an expression per value.
        (F.to_json(F.try_variant_get("wrapped", "$[1]", "variant")) == F.col("line_hash").cast("string"))
        .alias("whole_line"),
        "texts",
    )
    return parsed.select(
        "raw_line", "source_file", "line_bytes", "preset_reason",
        # Not JSON, not strict JSON, duplicate keys, not an object, or something after the object.
        (fields.isNotNull() & F.coalesce(F.col("whole_line"), F.lit(False))).alias("whole_object"),
        # The JSON type of each field: STRING, BIGINT, OBJECT<...>, VOID (null); null if absent.
        *(F.schema_of_variant(fields[name]).alias(f"type_{name}") for name in RAW_EVENT_FIELDS),
        "texts",
    )


def _parsed_by_jvm(lines: DataFrame) -> DataFrame:
    """The same columns as ``_parsed_by_sql`` from one pass of ``ParseEventLine`` per line."""
    parsed = lines.select("raw_line", "source_file", "line_bytes", "preset_reason",
                          F.call_function(FUNCTION_NAME, F.col("raw_line")).alias("parsed"))
    return parsed.select(
        "raw_line", "source_file", "line_bytes", "preset_reason",
        F.coalesce(F.col("parsed.whole_object"), F.lit(False)).alias("whole_object"),
        *(F.col(f"parsed.type_{name}").alias(f"type_{name}") for name in RAW_EVENT_FIELDS),
        F.struct(*(F.col(f"parsed.text_{name}").alias(name) for name in RAW_EVENT_FIELDS)).alias("texts"),
    )


def _reason(
    types: dict[str, Column], values: dict[str, Column], event_time: Column,
    settings: Settings, arrival_date: date, max_line_bytes: int,
) -> Column:
    """The first rule a line breaks, null if none, from ``_classify``'s parsed columns: each
    field's JSON type, its string value and the parsed event time."""
    line = F.col("raw_line")

    day_start = datetime.combine(arrival_date, time.min, tzinfo=timezone.utc)
    latest = day_start + timedelta(days=1, minutes=settings.max_future_skew_minutes)
    earliest = day_start - timedelta(days=settings.max_event_age_days)

    # Not JSON, not strict JSON, duplicate keys, not an object, or something after the object.
    unparseable = ~F.col("whole_object")
    present = {name: types[name].isNotNull() & (types[name] != "VOID") for name in RAW_EVENT_FIELDS}
    wrong_type: dict[str, Column] = {name: present[name] & (types[name] != "STRING") for name in STRING_FIELDS}
    wrong_type["event_time"] = (
        wrong_type["event_time"] | ~values["event_time"].rlike(ISO_TIME_PATTERN) | event_time.isNull()
    )
    wrong_type["extra"] = present["extra"] & ~types["extra"].startswith("OBJECT")

    reason = (
        F.when(F.col("preset_reason").isNotNull(), F.col("preset_reason"))
        # Spark hands over lines up to the limit + HADOOP_LINE_SLACK bytes; the limit is the rule.
        .when(F.col("line_bytes") > max_line_bytes, F.lit(LINE_TOO_LONG))
        # Spark keeps the raw bytes, but the parser reads them as UTF-8 with U+FFFD for bad
        # bytes: such a line would reach the lake with altered ids.
        .when(~F.is_valid_utf8(line), F.lit(BAD_ENCODING))
        # A blank line is never a whole object: the regex (a Java match from every position of
        # the line) runs on the few lines that are not.
        .when(unparseable & line.rlike(BLANK_PATTERN), F.lit(EMPTY_LINE))
        .when(unparseable, F.lit(UNPARSEABLE))
    )
    for name in REQUIRED_FIELDS:
        # Absent, null or a blank string. A value of another type is not blank: a bad type.
        missing = ~present[name] | ((types[name] == "STRING") & values[name].rlike(BLANK_PATTERN))
        reason = reason.when(missing, F.lit(missing_field(name)))
    for name in RAW_EVENT_FIELDS:
        reason = reason.when(wrong_type[name], F.lit(bad_type(name)))
    for name in ID_FIELDS:
        # An id the serving API cannot be asked about (ingest.ids). A blank session id is no
        # session id (see _classify), not a bad one.
        bad_id = present[name] & (
            (F.length(values[name]) > MAX_ID_LENGTH) | values[name].rlike(FORBIDDEN_ID_CHARACTERS))
        if name == "session_id":
            bad_id = bad_id & ~values[name].rlike(BLANK_PATTERN)
        reason = reason.when(bad_id, F.lit(invalid_id(name)))
    return (
        reason.when(~values["event_type"].isin(*EVENT_TYPES), F.lit(UNKNOWN_EVENT_TYPE))
        .when(event_time > F.lit(latest), F.lit(FUTURE_TIMESTAMP))
        .when(event_time < F.lit(earliest), F.lit(TOO_OLD_TIMESTAMP))
    )


def _new_events(spark: SparkSession, classified: DataFrame, settings: Settings, arrival_date: date,
                excluded_arrival_dates: Collection[str] = ()) -> DataFrame:
    """Valid events, one per ``event_id``, minus those the lake has from earlier arrival days
    (the excluded ones aside)."""
    valid = classified.where(F.col("reason").isNull())
    # Deterministic choice among copies of one event_id, so re-runs keep the same row: the
    # earliest, ties broken by the other lake columns. Copies equal in all of them are the same
    # lake row, whichever line they came from, so the raw lines need not travel to the sort.
    first_copy = Window.partitionBy("event_id").orderBy(*LAKE_EVENT_COLUMNS[1:])
    unique = valid.withColumn("copy", F.row_number().over(first_copy)).where(F.col("copy") == 1)
    events = unique.select(*LAKE_EVENT_COLUMNS, *LAKE_PARTITION_COLUMNS)
    if settings.events_dir.is_dir():
        earlier_ids = (
            spark.read.schema(LAKE_EVENT_SCHEMA)
            .parquet(str(settings.events_dir))
            .where(F.col("arrival_date") < F.lit(arrival_date))
            .where(~F.col("arrival_date").isin([date.fromisoformat(d) for d in excluded_arrival_dates]))
            .select("event_id")
        )
        events = events.join(earlier_ids, on="event_id", how="left_anti")
    return events.select(*LAKE_EVENT_COLUMNS, *LAKE_PARTITION_COLUMNS)


# ---- writing (into the run's staging folder) ----


def _write_events(events: DataFrame, folder: Path) -> None:
    (
        # Written from the partitions the dedup left (one file per partition and event date)
        # rather than shuffled once more into a file per date; rows in time order in each file.
        events.drop("arrival_date")
        .sortWithinPartitions("event_date", "event_time", "event_id")
        .write.mode("errorifexists")
        .options(**{f"parquet.enable.dictionary#{name}": "false" for name in PLAIN_EVENT_COLUMNS})
        # arrival_date is not a folder here: the published link names it (see _publish).
        .partitionBy("event_date")
        .parquet(str(folder))
    )


def _write_quarantine(classified: DataFrame, folder: Path) -> None:
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


# ---- publication ----


def _staging_dir(settings: Settings, arrival_date: date) -> Path:
    return settings.lake_dir / STAGING_FOLDER / f"arrival_date={arrival_date.isoformat()}"


def _versions_dir(settings: Settings, arrival_date: date) -> Path:
    return settings.lake_dir / VERSIONS_FOLDER / f"arrival_date={arrival_date.isoformat()}"


def _event_link(settings: Settings, event_day: str, arrival_date: date) -> tuple[Path, str]:
    """Where the lake shows this day's events of ``event_day``, and the link's (relative) target."""
    tag = f"arrival_date={arrival_date.isoformat()}"
    link = settings.events_dir / f"event_date={event_day}" / tag
    # Relative, so a lake moved or mounted elsewhere keeps working.
    return link, f"../../{VERSIONS_FOLDER}/{tag}/{CURRENT_LINK}/events/event_date={event_day}"


def _quarantine_link(settings: Settings, arrival_date: date) -> tuple[Path, str]:
    tag = f"arrival_date={arrival_date.isoformat()}"
    return settings.quarantine_dir / tag, f"../{VERSIONS_FOLDER}/{tag}/{CURRENT_LINK}/quarantine"


def _published_event_days(settings: Settings, arrival_date: date) -> set[str]:
    """Event dates for which readers now see files of this arrival day."""
    pattern = f"event_date=*/arrival_date={arrival_date.isoformat()}/*.parquet"
    return {path.parent.parent.name.removeprefix("event_date=") for path in settings.events_dir.glob(pattern)}


def _changed_event_dates(settings: Settings, arrival_date: date, new: dict[str, dict[str, Any]]) -> list[str]:
    """Event dates whose rows of this arrival day differ from the last reconciled run's."""
    try:
        reconciled = json.loads((_versions_dir(settings, arrival_date) / RECONCILED_FILE).read_text("utf-8"))
        old = reconciled["event_dates"]
    except FileNotFoundError:
        # No run of this day reconciled with a manifest (a first run, a lake from before
        # versioned publication, or a first run killed after its swap): every date it shows
        # now and every date it will show count as changed.
        return sorted(set(new) | _published_event_days(settings, arrival_date))
    return sorted(day for day in set(old) | set(new) if old.get(day) != new.get(day))


def _publish(settings: Settings, arrival_date: date, run_dir: Path, run_id: str, event_days: list[str]) -> None:
    """Make ``run_dir`` the day's visible version with one rename (see the module docstring)."""
    versions = _versions_dir(settings, arrival_date)
    versions.mkdir(parents=True, exist_ok=True)
    # Complete and counted: from here on the folder only moves as a whole.
    os.rename(run_dir, versions / run_id)

    # Links first. A link to a date the current version does not have dangles, and a dangling
    # link is an empty folder to every reader (DuckDB, Spark, pyarrow, pathlib) until the swap.
    legacy: list[tuple[Path, str]] = []
    wanted = [_event_link(settings, day, arrival_date) for day in event_days]
    wanted.append(_quarantine_link(settings, arrival_date))
    for link, target in wanted:
        if link.is_symlink():
            if os.readlink(link) != target:
                _place_link(link, target, versions)
        elif link.exists():
            legacy.append((link, target))
        else:
            link.parent.mkdir(parents=True, exist_ok=True)
            _place_link(link, target, versions)

    # The commit: one rename of a link. Every link of the day now resolves into the new version.
    _place_link(versions / CURRENT_LINK, run_id, versions)

    # Folders written by the job before versioned publication become links; this one-time
    # change per arrival day is not atomic (each folder flips on its own).
    for link, target in legacy:
        retired = versions / f".retired-{uuid.uuid4().hex}"
        os.rename(link, retired)
        _place_link(link, target, versions)
        shutil.rmtree(retired)
    # Dates this run no longer has: their links dangle since the swap (empty to readers); remove
    # them and the event-date folders left empty.
    keep = {f"event_date={day}" for day in event_days}
    tag = f"arrival_date={arrival_date.isoformat()}"
    # Not Path.glob: it does not list dangling links.
    for link in (folder / tag for folder in settings.events_dir.glob("event_date=*")):
        if link.parent.name in keep or not os.path.lexists(link):
            continue
        if link.is_symlink():
            link.unlink()
        else:
            retired = versions / f".retired-{uuid.uuid4().hex}"
            os.rename(link, retired)
            shutil.rmtree(retired)
        try:
            link.parent.rmdir()
        except OSError:
            pass  # other arrival days still have events on that date


def _place_link(path: Path, target: str, scratch: Path) -> None:
    """Create or replace the symlink ``path`` -> ``target`` atomically (rename over it).

    The temporary link is made in ``scratch``, outside every reader's glob; rename keeps the
    link's text, so the relative target resolves from ``path``'s folder once in place.
    """
    temporary = scratch / f".link-{uuid.uuid4().hex}"
    os.symlink(target, temporary)
    os.replace(temporary, path)


def _collect_garbage(settings: Settings, arrival_date: date) -> None:
    """Drop superseded versions of the day, keeping the one before current for in-flight readers."""
    versions = _versions_dir(settings, arrival_date)
    current = os.readlink(versions / CURRENT_LINK)
    older = sorted(
        (path for path in versions.iterdir()
         if path.is_dir() and not path.is_symlink() and not path.name.startswith(".") and path.name != current),
        key=lambda path: path.name,
    )
    for path in older[:-1]:
        shutil.rmtree(path, ignore_errors=True)
    for path in versions.glob(".*"):  # temporary links and retired folders of killed runs
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(_staging_dir(settings, arrival_date), ignore_errors=True)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: the quality gate may read it at any time.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Ingest ``--date`` (through ``--to``); user errors are one ``error:`` line and exit status 2.

    A day of the range without a raw folder is skipped (one warning each, and the summary line
    on stderr names them); ``--strict`` refuses such a range before ingesting anything.
    """
    from core.cli_errors import add_debug_flag, user_errors

    parser = argparse.ArgumentParser(description="Ingest arrival days of raw logs into the lake.")
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="first arrival day")
    parser.add_argument("--to", type=date.fromisoformat, default=None, help="last arrival day (inclusive)")
    parser.add_argument(
        "--max-line-bytes", type=int, default=MAX_LINE_BYTES,
        help=f"longer raw lines are quarantined as {LINE_TOO_LONG} (default {MAX_LINE_BYTES})",
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="refuse a range in which a day has no raw folder (default: skip such days)",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    last = args.to or args.date
    if last < args.date:
        parser.error("--to must not be before --date")
    if not 1 <= args.max_line_bytes <= MAX_LINE_LIMIT:
        parser.error(f"--max-line-bytes must be in 1..{MAX_LINE_LIMIT}")
    with user_errors(debug=args.debug):
        settings = Settings.from_env()
        plan = plan_arrival_days(settings, args.date, last, strict=args.strict)
        # A session that already runs in this process (a caller embedding main) is left running.
        started_here = SparkSession.getActiveSession() is None
        spark = spark_session(settings)
        try:
            for day in plan.days:
                record = ingest_arrival_day(settings, day, spark=spark, max_line_bytes=args.max_line_bytes)
                print(json.dumps(record, sort_keys=True), flush=True)
        finally:
            if started_here:
                spark.stop()
        if args.to is not None:
            # stderr: stdout keeps one JSON record per line.
            print(skipped_days_line(plan), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
