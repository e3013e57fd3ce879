"""An arrival day's raw files as lines, with a salvage of what Spark cannot read.

Spark reads the files (``read_lines``); a file it cannot read to its end (a truncated or corrupt
gzip) or whose lines do not add up to its size (Hadoop skipped over-long lines without a trace,
``fully_read``) is salvaged: streamed once in Python into a plain copy of its readable lines plus
quarantine rows for the rest (``salvage_file``), which Spark then reads in its place. Which files
to read at all is ``ingest.raw_inventory``'s concern.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Iterable, Iterator

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ingest.raw_inventory import is_gzip
from ingest.schema import CORRUPT_FILE, LINE_TOO_LONG, MAX_RAW_LINE_CHARS, TRUNCATED_FILE

# Hadoop's line reader skips a line once the bytes it consumed for it (line end included) reach
# this limit, and holds no more than that of any line. Spark passes read options into the
# Hadoop configuration, so this bounds the memory a 1 GB line can take.
HADOOP_MAX_LINE_KEY = "mapreduce.input.linerecordreader.line.maxlength"
# Room for the longest line end (CR LF) and the reader's ">=": a line within the limit is never
# skipped by Hadoop, so every skipped line is one the quarantine must hold.
HADOOP_LINE_SLACK = 3
# Hadoop reads the limit as a Java int.
MAX_LINE_LIMIT = 2**31 - 1 - HADOOP_LINE_SLACK

# Salvaged copies of damaged raw files get this suffix: no compression codec matches it.
SALVAGED_SUFFIX = ".readable"
SALVAGE_CHUNK_BYTES = 1 << 20
# Bytes of a rejected line kept to make MAX_RAW_LINE_CHARS characters of evidence (UTF-8: at
# most 4 bytes per character).
EVIDENCE_BYTES = 4 * MAX_RAW_LINE_CHARS
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MIN_BYTES = 18  # header (10) + trailer (8)

# The columns of ``read_lines``.
LINES_SCHEMA = "raw_line string, source_file string, line_bytes int, preset_reason string"


@dataclass
class Salvage:
    """A raw file re-read in Python: its readable lines in ``copy``, the rest as quarantine rows."""

    copy: Path
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (evidence, reason)
    damage: str | None = None  # TRUNCATED_FILE or CORRUPT_FILE when the file could not be read to its end


def source_name(arrival_date: date, name: str) -> str:
    # Relative to the raw folder, so the quarantine does not depend on where RECSYS_HOME is.
    return f"{arrival_date.isoformat()}/{name}"


def read_lines(
    spark: SparkSession, files: list[Path], salvaged: dict[Path, Salvage], arrival_date: date,
    max_line_bytes: int,
) -> DataFrame:
    """One row per input line: ``raw_line``, ``source_file`` (``<day>/<name>``), ``line_bytes``
    (null for a row the salvage made) and ``preset_reason`` (the salvage's quarantine reason)."""
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
        (evidence, source_name(arrival_date, path.name), None, reason)
        for path, salvage in salvaged.items()
        for evidence, reason in salvage.rejected
    ]
    # Made only when needed: the usual day has no salvaged rows, and a local DataFrame is not free.
    if rejected or frame is None:
        salvage_rows = spark.createDataFrame(rejected, LINES_SCHEMA)
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


def fully_read(path: Path, lines: int, line_bytes: int) -> bool:
    """Whether ``lines`` lines of ``line_bytes`` bytes (line ends excluded) are all of ``path``."""
    if not is_gzip(path):
        return plain_file_fully_read(path, lines, line_bytes)
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


def plain_file_fully_read(path: Path, lines: int, line_bytes: int) -> bool:
    # One LF per line; the last line may lack it. Anything else (skipped lines, CR LF line ends,
    # a byte-order mark) sends the file through the salvage, which handles them all.
    size = path.stat().st_size
    consumed = line_bytes + lines
    return size == consumed or (lines > 0 and size == consumed - 1)


def salvage_file(path: Path, folder: Path, max_line_bytes: int) -> Salvage:
    """Stream ``path`` (gzip or plain) into ``folder/<name>.readable`` as Hadoop would split it.

    Lines within ``max_line_bytes`` are copied; longer ones become ``line_too_long`` rows with a
    prefix, holding no more than ``max_line_bytes`` of any line in memory. A compressed file
    that ends early or is damaged keeps its complete lines; the rest (the cut line, whatever
    could not be decompressed) becomes one row.
    """
    folder.mkdir(parents=True, exist_ok=True)
    salvage = Salvage(copy=folder / (path.name + SALVAGED_SUFFIX))
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
