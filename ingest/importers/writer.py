"""Canonical lines -> ``raw_dir/<arrival day>/<format>-00000.jsonl.gz``, streamed.

The arrival day of an event is the UTC date of its event time, so ingestion's age and future
checks (relative to the arrival day) never reject an imported event for arriving late. A line
without a usable time (a row going to the quarantine) goes to the day of the previous dated line
in source order, next to the rows it was read with.

Public logs are ordered by session or user, not by time, so every day receives lines all through
the file. Lines are buffered per day and, when ``max_buffered_lines`` are held, appended to one
plain spill file per day in a hidden temporary folder under ``raw_dir``; at the end each day's
spill and buffer are compressed into its final file. Memory stays bounded by the buffer, not the
file. Lines keep their source order within a day (ingestion does not need time order, and sorting
would need the whole day in memory).

Output is deterministic: gzip without a file name and with ``mtime=0``, so importing the same
file again gives byte-identical files. The format owns its file name: an import replaces that
format's file in every day it writes and removes it from days the new import no longer has
(a re-import with a smaller ``--limit`` must not leave a stale day for ingestion to pick up).
Other files in the day folders (other formats, generated logs) are left alone.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType

from ingest.importers.canonical import CanonicalLine

FILE_SUFFIX = "-00000.jsonl.gz"
DEFAULT_MAX_BUFFERED_LINES = 100_000
# zlib's default level: level 9 costs about twice the time for a few percent smaller files.
COMPRESS_LEVEL = 6
COPY_CHUNK_BYTES = 1 << 20


@dataclass
class DayCounts:
    events: int = 0
    rejected_reasons: Counter = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_reasons.values())

    def add(self, line: CanonicalLine) -> None:
        if line.reason is None:
            self.events += 1
        else:
            self.rejected_reasons[line.reason] += 1

    def merge(self, other: "DayCounts") -> None:
        self.events += other.events
        self.rejected_reasons.update(other.rejected_reasons)


def raw_file_name(format_name: str) -> str:
    return f"{format_name}{FILE_SUFFIX}"


def _is_day_folder(path: Path) -> bool:
    try:
        date.fromisoformat(path.name)
    except ValueError:
        return False
    return path.is_dir() and len(path.name) == 10


class ArrivalDayWriter:
    """Collects canonical lines and writes one gzip file per arrival day on :meth:`finish`.

    Use as a context manager: the spill folder is removed however the import ends, and nothing
    under the day folders changes unless :meth:`finish` ran.
    """

    def __init__(self, raw_dir: Path, format_name: str, *, max_buffered_lines: int = DEFAULT_MAX_BUFFERED_LINES):
        if max_buffered_lines < 1:
            raise ValueError("max_buffered_lines must be at least 1")
        self.raw_dir = Path(raw_dir)
        self.format_name = format_name
        self.max_buffered_lines = max_buffered_lines
        # Key None: lines before the first dated line; they join that line's day.
        self._buffers: dict[date | None, list[str]] = {}
        self._counts: dict[date | None, DayCounts] = {}
        self._spilled: set[date | None] = set()
        self._buffered = 0
        self._current_day: date | None = None
        self._spill_dir: Path | None = None

    # ---- collecting ----

    def add(self, line: CanonicalLine) -> None:
        if line.day is not None and line.day != self._current_day:
            if self._current_day is None and None in self._counts:
                self._adopt_pending(line.day)
            self._current_day = line.day
        day = self._current_day
        self._buffers.setdefault(day, []).append(line.text)
        self._counts.setdefault(day, DayCounts()).add(line)
        self._buffered += 1
        if self._buffered >= self.max_buffered_lines:
            self._spill()

    @property
    def events(self) -> int:
        return sum(counts.events for counts in self._counts.values())

    def _adopt_pending(self, day: date) -> None:
        # Only ever called for the first dated line, so ``day`` has nothing of its own yet.
        self._counts[day] = self._counts.pop(None)
        if None in self._buffers:
            self._buffers[day] = self._buffers.pop(None)
        if None in self._spilled:
            self._spilled.discard(None)
            self._spill_path(None).rename(self._spill_path(day))
            self._spilled.add(day)

    def _spill_path(self, day: date | None) -> Path:
        if self._spill_dir is None:
            self.raw_dir.mkdir(parents=True, exist_ok=True)
            # Hidden and outside every day folder: ingestion never reads it.
            self._spill_dir = Path(tempfile.mkdtemp(prefix=f".import-{self.format_name}-", dir=self.raw_dir))
        return self._spill_dir / f"{'pending' if day is None else day.isoformat()}.jsonl"

    def _spill(self) -> None:
        for day, lines in self._buffers.items():
            if lines:
                with open(self._spill_path(day), "a", encoding="utf-8") as handle:
                    handle.writelines(text + "\n" for text in lines)
                self._spilled.add(day)
        self._buffers = {}
        self._buffered = 0

    # ---- writing ----

    def finish(self) -> tuple[dict[date, DayCounts], list[date]]:
        """Write every day's file; returns the counts per day and the days whose stale file of
        this format was removed."""
        if None in self._counts:
            raise ValueError("no line had an event time: there is no arrival day to put them in")
        days = sorted(day for day in self._counts if day is not None)
        for day in days:
            self._write_day(day)
        removed = self._remove_stale(set(days))
        return {day: self._counts[day] for day in days}, removed

    def _write_day(self, day: date) -> None:
        folder = self.raw_dir / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / raw_file_name(self.format_name)
        # Dot-prefixed: ingestion skips it, and a crash never leaves half a file under the real name.
        temporary = folder / f".{path.name}.tmp"
        with open(temporary, "wb") as handle:
            with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=COMPRESS_LEVEL) as packed:
                if day in self._spilled:
                    with open(self._spill_path(day), "rb") as spilled:
                        shutil.copyfileobj(spilled, packed, COPY_CHUNK_BYTES)
                packed.write("".join(text + "\n" for text in self._buffers.get(day, ())).encode("utf-8"))
        os.replace(temporary, path)

    def _remove_stale(self, written: set[date]) -> list[date]:
        removed = []
        if not self.raw_dir.is_dir():
            return removed
        name = raw_file_name(self.format_name)
        for folder in sorted(self.raw_dir.iterdir()):
            if not _is_day_folder(folder) or date.fromisoformat(folder.name) in written:
                continue
            stale = folder / name
            if stale.is_file():
                stale.unlink()
                removed.append(date.fromisoformat(folder.name))
                # An arrival day folder that is now empty would be ingested as a day of nothing.
                if not any(folder.iterdir()):
                    folder.rmdir()
        return removed

    # ---- cleanup ----

    def close(self) -> None:
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None
        self._buffers = {}

    def __enter__(self) -> "ArrivalDayWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
