"""Spark job: one arrival day of raw logs into the lake, the quarantine and a reconciliation.

Every input line ends up in exactly one place: the events lake (valid, one copy per
``event_id``), the quarantine (with a machine-readable reason) or the duplicate count. Lines
that cannot be read whole (longer than the line limit, the cut-off rest of a truncated gzip
file) are quarantined too, never skipped. The reconciliation record states the three counts and
the job refuses to publish anything if they do not add up to the number of input lines. Every
file under the raw folder is read or named in the record as ignored, with its reason
(``ingest.raw_inventory``).

This module runs a day and plans ranges of days (the backfill, the command line). The work is
split by what it handles: ``ingest.raw_files`` reads the raw files and salvages damaged ones,
``ingest.classify`` gives each line its quarantine reason and drops duplicates,
``ingest.staging`` writes the run into its staging folder and reconciles it there, and
``ingest.publish`` makes it visible to readers with one rename (atomic publication,
docs/architecture.md, "Lake").
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Collection

from pyspark.sql import SparkSession

from core.errors import UserError
from core.settings import Settings
from ingest.publish import (
    MANIFEST_FILE,
    RECONCILED_FILE,
    changed_event_dates,
    collect_garbage,
    publish,
    staging_dir,
    versions_dir,
    write_json,
)
from ingest.raw_files import MAX_LINE_LIMIT, source_name
from ingest.raw_inventory import take_inventory
from ingest.schema import LINE_TOO_LONG, MAX_LINE_BYTES
from ingest.spark import spark_session
from ingest.staging import stage_arrival_day

log = logging.getLogger(__name__)


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
    Counts that do not add up raise :class:`ingest.staging.ReconciliationError` and publish
    nothing.
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

    staging = staging_dir(settings, arrival_date)
    # What a killed run left: never visible to readers, and not worth resuming.
    shutil.rmtree(staging, ignore_errors=True)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]
    run_dir = staging / run_id
    run_dir.mkdir(parents=True)

    stage = stage_arrival_day(spark, settings, arrival_date, files, run_dir, max_line_bytes,
                              excluded_arrival_dates)
    manifest = {
        "run_id": run_id,
        "arrival_date": arrival_date.isoformat(),
        "event_dates": stage.event_dates,
        "quarantined_rows": stage.quarantined_rows,
    }
    write_json(run_dir / MANIFEST_FILE, manifest)
    # Measured against what the last record vouched for, before the swap changes what is visible.
    affected = changed_event_dates(settings, arrival_date, stage.event_dates)
    publish(settings, arrival_date, run_dir, run_id, sorted(stage.event_dates))

    reconciliation = {
        "arrival_date": arrival_date.isoformat(),
        "input_rows": stage.input_rows,
        "written_rows": stage.written_rows,
        "quarantined_rows": stage.quarantined_rows,
        "duplicate_rows": stage.duplicate_rows,
        "quarantine_reasons": stage.quarantine_reasons,
        "ingested_files": [source_name(arrival_date, path.name) for path in files],
        # Files under the raw folder that were not read (the quality gate warns about them).
        "ignored_files": [item.to_dict() for item in inventory.ignored],
        "event_dates": sorted(stage.event_dates),
        "affected_event_dates": affected,
    }
    write_json(reconciliation_path, reconciliation)
    # After the record: a run killed in between measures its changes against the older state
    # again, which reports more dates than needed rather than fewer.
    write_json(versions_dir(settings, arrival_date) / RECONCILED_FILE, manifest)
    collect_garbage(settings, arrival_date)
    return reconciliation


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
