"""Importers: public recommender data sets -> the canonical raw format, one folder per arrival day.

``import_log(format, source, raw_dir)`` reads ``source`` in the named format (see ``IMPORTERS``),
converts every row into canonical events (docs/architecture.md) and writes them to
``raw_dir/<YYYY-MM-DD>/<format>-00000.jsonl.gz`` by the UTC date of their event time, ready for
``ingest.ingest_day``. A row that cannot be converted is written too, in a form ingestion
quarantines with a reason (see :mod:`ingest.importers.canonical`), so the lake's quarantine and
reconciliation account for every source row; the summary counts those rows per reason and day.

``items=``: an item table beside the events (S3Rec ``item2attributes.json`` or a CSV/TSV with an
``item_id`` column, :mod:`ingest.importers.item_table`), converted and written into the lake
(``lake_dir``) as the format's item table (:mod:`ingest.item_lake`).

Only the standard library is used here: the import DAG reads the registry at every parse.

    python -m ingest.importers otto data/otto/train.jsonl --limit 1000
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator

from ingest.importers import (
    amazon_m2,
    amazon_s3rec,
    diginetica,
    movielens,
    otto,
    retailrocket,
    taobao,
    yoochoose,
)
from ingest.importers.canonical import SourceFormatError, SourceRow
from ingest.importers.item_table import ItemTable, read_item_table
from ingest.importers.writer import DEFAULT_MAX_BUFFERED_LINES, ArrivalDayWriter, raw_file_name

__all__ = ["IMPORT_ERRORS", "IMPORTERS", "Importer", "SourceFormatError", "import_error_message", "import_log",
           "summary_lines"]

# Kept in the summary so a wrong format can be diagnosed without opening the quarantine.
N_REJECTED_EXAMPLES = 10


@dataclass(frozen=True)
class Importer:
    name: str
    description: str
    read_rows: Callable[..., Iterator[SourceRow]]
    # The format carries no timestamps; event times are made up from ``start_date``.
    synthesizes_time: bool = False
    default_start_date: date | None = None


IMPORTERS: dict[str, Importer] = {
    module.NAME: Importer(module.NAME, module.DESCRIPTION, module.read_rows)
    for module in (yoochoose, otto, diginetica, taobao, movielens, retailrocket)
} | {
    module.NAME: Importer(
        module.NAME,
        module.DESCRIPTION,
        module.read_rows,
        synthesizes_time=True,
        default_start_date=module.DEFAULT_START_DATE,
    )
    for module in (amazon_m2, amazon_s3rec)
}


def import_log(
    format: str,
    source: Path,
    raw_dir: Path,
    *,
    limit: int | None = None,
    start_date: date | None = None,
    max_buffered_lines: int = DEFAULT_MAX_BUFFERED_LINES,
    items: Path | None = None,
    lake_dir: Path | None = None,
) -> dict[str, Any]:
    """Convert ``source`` (format ``format``) into arrival-day files under ``raw_dir``, and the
    item table ``items`` (if given) into ``lake_dir``'s item table of the format.

    ``limit``: read at most this many source rows (records: a line, or for OTTO a session line,
    for Amazon-M2 a CSV row; the header and blank lines are not rows). ``start_date``: first
    day of the synthesized times of a format without timestamps (``amazon_m2``, ``amazon_s3rec``).
    ``limit`` does not apply to ``items``: the catalog is read whole.

    Returns a JSON-serialisable summary: ``rows_read``, ``lines_written`` = ``events_written``
    + ``rejected`` (lines written for the quarantine, by ``rejected_reasons``, the reason
    ingestion will give), per arrival day the same counts and the file (``days``), the sorted
    ``arrival_days``, ``removed_stale_days`` and whether ``limit`` cut the source short
    (``truncated``), and ``items``: None, or the item table's counts (``ItemTable.summary``) with
    its ``path`` and ``quarantine_path`` in the lake. Raises :class:`SourceFormatError` when no
    row converts into an event (the wrong format was named, or the file is empty) or ``items`` is
    not an item table; nothing is written then.
    """
    importer = IMPORTERS.get(format)
    if importer is None:
        raise ValueError(f"unknown format {format!r}; known formats: {', '.join(sorted(IMPORTERS))}")
    source, raw_dir = Path(source), Path(raw_dir)
    if not source.is_file():
        raise FileNotFoundError(f"source file not found: {source}")
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    options: dict[str, Any] = {}
    if importer.synthesizes_time:
        start_date = start_date or importer.default_start_date
        options["start_date"] = start_date
    elif start_date is not None:
        raise ValueError(f"{format} rows carry their own timestamps; start_date applies to formats without")
    # Read (and refused, when it is not an item table) before any event file is written.
    item_table = _read_items(items, lake_dir)

    rows_read, truncated = 0, False
    examples: list[dict[str, Any]] = []
    rows = importer.read_rows(source, **options)
    try:
        with ArrivalDayWriter(raw_dir, format, max_buffered_lines=max_buffered_lines) as writer:
            for row in rows:
                if limit is not None and rows_read >= limit:
                    truncated = True
                    break
                rows_read += 1
                for line in row.lines:
                    writer.add(line)
                    if line.reason is not None and len(examples) < N_REJECTED_EXAMPLES:
                        examples.append({"line_number": row.line_number, "reason": line.reason})
            if rows_read == 0:
                raise SourceFormatError(f"{source} holds no rows to import")
            if writer.events == 0:
                raise SourceFormatError(
                    f"{source}: none of {rows_read} rows converted into an event as {format} "
                    f"(first rejections: {examples[:3]}); is it the right format?"
                )
            days, removed = writer.finish()
    finally:
        rows.close()  # closes the source file when the loop stopped early

    rejected_reasons: dict[str, int] = {}
    for counts in days.values():
        for reason, n in counts.rejected_reasons.items():
            rejected_reasons[reason] = rejected_reasons.get(reason, 0) + n
    item_summary = None
    if item_table is not None:
        from ingest.item_lake import write_item_table

        item_summary = {"source": str(items), **item_table.summary(),
                        **write_item_table(Path(lake_dir), format, item_table)}
    events_written = sum(counts.events for counts in days.values())
    rejected = sum(rejected_reasons.values())
    return {
        "format": format,
        "source": str(source),
        "raw_dir": str(raw_dir),
        "limit": limit,
        "truncated": truncated,
        "start_date": None if start_date is None else start_date.isoformat(),
        "rows_read": rows_read,
        "lines_written": events_written + rejected,
        "events_written": events_written,
        "rejected": rejected,
        "rejected_reasons": dict(sorted(rejected_reasons.items())),
        "rejected_examples": examples,
        "arrival_days": [day.isoformat() for day in days],
        "days": {
            day.isoformat(): {
                "events": counts.events,
                "rejected": counts.rejected,
                "rejected_reasons": dict(sorted(counts.rejected_reasons.items())),
                "path": str(raw_dir / day.isoformat() / raw_file_name(format)),
            }
            for day, counts in days.items()
        },
        "removed_stale_days": [day.isoformat() for day in removed],
        "items": item_summary,
    }


def _read_items(items: Path | None, lake_dir: Path | None) -> ItemTable | None:
    if items is None:
        return None
    if lake_dir is None:
        raise ValueError("an item table is written into the lake: give lake_dir with items")
    items = Path(items)
    if not items.is_file():
        raise FileNotFoundError(f"item table not found: {items}")
    return read_item_table(items)


# What an import of a file that is not what its format says, cannot be read or written, or is a
# broken or truncated .gz raises: a user error, told in one line.
IMPORT_ERRORS = (OSError, EOFError, zlib.error, SourceFormatError, ValueError)


def import_error_message(error: BaseException, source: Path) -> str:
    """One line for one of ``IMPORT_ERRORS`` (a broken .gz's errors do not name the file)."""
    message = " ".join(str(error).splitlines())
    if isinstance(error, (EOFError, zlib.error, gzip.BadGzipFile)):
        message = f"{source}: {message}"
    elif isinstance(error, OSError) and error.strerror:
        message = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return message


def summary_lines(summary: dict[str, Any], format_name: str) -> list[str]:
    """What an import wrote, and the commands that ingest it, for the terminal."""
    days = summary["arrival_days"]
    lines = [f"arrival days written ({len(days)}): {' '.join(days)}"]
    if summary["removed_stale_days"]:
        lines.append(f"stale {format_name} files removed from: {' '.join(summary['removed_stale_days'])}")
    if (items := summary.get("items")) is not None:
        lines.append(f"item table: {items['items']} items, {items['attribute_values']} attribute values -> "
                     f"{items['path']}; {items['rejected']} rows quarantined {items['rejected_reasons']} "
                     f"-> {items['quarantine_path']} (the next `recsys sessions` reads it)")
    if days:
        # One range, in date order: ingestion drops cross-day duplicates only when earlier days
        # come first; the days between without a folder are skipped and listed.
        lines.append(f"next: recsys ingest --date {days[0]} --to {days[-1]}, then "
                     f"recsys airflow run --date {days[-1]} (README: Bring your own log)")
    return lines
