"""Reading public log files record by record, with the line number each record starts on."""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from ingest.importers.canonical import SourceFormatError

# Longest record read as fields. Real rows are short (an Amazon-M2 session of hundreds of items
# is a few KB); anything longer is a broken export, quarantined instead of being held, parsed
# and written as one enormous event.
MAX_RECORD_CHARS = 100_000
UNDECODABLE_BYTE = re.compile("[\udc80-\udcff]")
# How much of an unrecognised first line an error message quotes.
QUOTED_LINE_CHARS = 120


@dataclass(frozen=True, slots=True)
class Record:
    line_number: int  # 1-based physical line the record starts on
    fields: list[str] | None  # None when the record does not split into fields
    text: str  # the record as it is in the file (for the quarantine)


def open_text(source: Path) -> TextIO:
    """The source as UTF-8 text; ``.gz`` files (how the public logs are often shipped) are read as is.

    ``newline=""`` so quoted CSV fields keep their embedded newlines. Bytes that are not UTF-8
    come through as lone surrogates (``surrogateescape``) instead of stopping the import: the
    readers send such a row to the quarantine (:func:`undecodable`), one row, not the file.
    """
    if source.name.endswith(".gz"):
        return gzip.open(source, "rt", encoding="utf-8", errors="surrogateescape", newline="")
    return open(source, encoding="utf-8", errors="surrogateescape", newline="")


def undecodable(text: str) -> bool:
    """The text holds bytes that were not UTF-8: ids read from it would not be the source's ids."""
    return not text.isascii() and UNDECODABLE_BYTE.search(text) is not None


def split_lines(lines: Iterable[str], delimiter: str, first_line_number: int = 1) -> Iterator[Record]:
    """One record per non-blank line, split on ``delimiter``.

    For the numeric logs (no quoting in any of them) a plain split is used instead of the csv
    module: one stray quote would make csv read on to the end of the file as a single field,
    while here it costs exactly one row.
    """
    for line_number, line in enumerate(lines, start=first_line_number):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue  # a blank line holds no row
        if len(text) > MAX_RECORD_CHARS or undecodable(text):
            yield Record(line_number, None, text)
        else:
            yield Record(line_number, [field.strip() for field in text.split(delimiter)], text)


def csv_records(lines: Iterable[str], first_line_number: int = 1) -> Iterator[Record]:
    """CSV records (a quoted field may span lines), each with the text it was read from.

    A record ends at the first line end outside quotes, i.e. once its quote count is even (CSV
    escapes a quote by doubling it). A stray quote would otherwise pull the rest of the file
    into one record: when an open record passes ``MAX_RECORD_CHARS``, its first line alone
    goes to the quarantine and reading resumes on the line after it.
    """
    source = iter(lines)
    replay: deque[tuple[int, str]] = deque()  # lines read ahead of a record that was given up
    next_number = first_line_number

    def next_line() -> tuple[int, str] | None:
        nonlocal next_number
        if replay:
            return replay.popleft()
        line = next(source, None)
        if line is None:
            return None
        next_number += 1
        return next_number - 1, line

    while True:
        first = next_line()
        if first is None:
            return
        if not first[1].strip():
            continue  # a blank line holds no row
        pending = [first]
        quotes, size = first[1].count('"'), len(first[1])
        while quotes % 2 and size <= MAX_RECORD_CHARS:
            more = next_line()
            if more is None:
                break
            pending.append(more)
            quotes += more[1].count('"')
            size += len(more[1])
        if quotes % 2:
            # Unbalanced to the end of the file or past the size bound: give up on the first line.
            replay.extendleft(reversed(pending[1:]))
            yield Record(first[0], None, first[1].rstrip("\r\n"))
            continue
        text = "".join(line for _, line in pending)
        fields = _csv_fields(text) if size <= MAX_RECORD_CHARS else None
        yield Record(first[0], fields, text.rstrip("\r\n"))


def _csv_fields(text: str) -> list[str] | None:
    if undecodable(text):
        return None
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error:
        return None  # malformed quoting inside the record
    return rows[0] if len(rows) == 1 else None


def header_fields(line: str, delimiter: str) -> list[str]:
    """Column names as the file spells them (matching is case-insensitive, ``extra`` keeps them)."""
    # A byte-order mark (files saved by spreadsheet tools) would otherwise stick to the first name.
    return [field.strip().strip('"') for field in line.lstrip("\ufeff").rstrip("\r\n").split(delimiter)]


def column_key(name: str) -> str:
    """How column names are matched: case and underscores ignored, so the DIGINETICA sample's
    ``session_id`` and the full release's ``sessionId`` are one column."""
    return name.lower().replace("_", "")


def optional_position(header: list[str], name: str) -> int | None:
    keys = [column_key(column) for column in header]
    return keys.index(column_key(name)) if column_key(name) in keys else None


def supported_variants(format_name: str, variants: dict[str, str]) -> str:
    """``supported <format> variants: name (shape); ...``, for a one-line error."""
    return f"supported {format_name} variants: " + "; ".join(f"{name} ({shape})" for name, shape in variants.items())


def unknown_variant(source: Path, format_name: str, line: str, variants: dict[str, str]) -> SourceFormatError:
    """The error for a file whose first line fits none of ``variants``: one line, quoting the
    start of that line (escaped, so the message stays one line whatever the file holds)."""
    text = line.rstrip("\r\n")
    quoted = repr(text if len(text) <= QUOTED_LINE_CHARS else text[:QUOTED_LINE_CHARS] + "...")
    return SourceFormatError(
        f"{source}: first line {quoted} matches no {format_name} variant; {supported_variants(format_name, variants)}"
    )


def column_positions(
    header: list[str],
    required: tuple[str, ...],
    source: Path,
    format_name: str,
    variants: dict[str, str] | None = None,
) -> dict[str, int]:
    """Where each required column is, by name (see :func:`column_key`); a missing one means a
    wrong format, named with the ``variants`` the format supports when it has several."""
    positions = {name: optional_position(header, name) for name in required}
    missing = [name for name, position in positions.items() if position is None]
    if missing:
        known = "" if variants is None else f"; {supported_variants(format_name, variants)}"
        raise SourceFormatError(f"{source}: not a {format_name} file: header {header} lacks column(s) {missing}{known}")
    return {name: position for name, position in positions.items() if position is not None}


def unmapped_fields(header: list[str], fields: list[str], mapped: Iterable[int]) -> dict[str, str]:
    """The row's values in columns the format does not map, by column name; empty ones left out."""
    used = set(mapped)
    return {name: value for k, (name, value) in enumerate(zip(header, fields)) if k not in used and value}


def first_line(lines: Iterator[str]) -> tuple[int, str] | None:
    """The first non-blank line and its number, consuming ``lines`` up to it; None for no such line."""
    for line_number, line in enumerate(lines, start=1):
        if line.strip():
            return line_number, line
    return None
