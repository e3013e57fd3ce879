"""Command line: import a public data set into the raw folder.

    python -m ingest.importers FORMAT SOURCE [--out RAW_DIR] [--limit N] [--start-date YYYY-MM-DD]

Prints the summary as JSON on stdout and the arrival days written on stderr, with the ingestion
command for them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zlib
from datetime import date
from pathlib import Path

from ingest.importers import IMPORTERS, SourceFormatError, import_log
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    formats = "\n".join(f"  {name:<13} {importer.description}" for name, importer in sorted(IMPORTERS.items()))
    parser = argparse.ArgumentParser(
        prog="python -m ingest.importers",
        description="Convert a public interaction log into canonical raw events, one folder per arrival day.",
        epilog=f"formats:\n{formats}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("format", choices=sorted(IMPORTERS), metavar="FORMAT", help="source format (see below)")
    parser.add_argument("source", type=Path, metavar="SOURCE", help="source file (.gz is read as is)")
    parser.add_argument("--out", type=Path, default=None,
                        help="raw folder to write into (default: $RECSYS_HOME/raw)")
    parser.add_argument("--limit", type=int, default=None, help="read at most N source rows")
    parser.add_argument("--start-date", type=date.fromisoformat, default=None,
                        help="first day of synthesized event times (formats without timestamps: amazon_m2)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    raw_dir = args.out if args.out is not None else Settings.from_env().raw_dir
    try:
        summary = import_log(args.format, args.source, raw_dir, limit=args.limit, start_date=args.start_date)
    except (OSError, EOFError, zlib.error, SourceFormatError, ValueError) as error:
        # One line, no traceback: the file is not what the format says, it cannot be read or
        # written, or it is a broken or truncated .gz (whose errors do not name the file).
        message = " ".join(str(error).splitlines())
        if isinstance(error, (EOFError, zlib.error, gzip.BadGzipFile)):
            message = f"{args.source}: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    days = summary["arrival_days"]
    print(f"arrival days written ({len(days)}): {' '.join(days)}", file=sys.stderr)
    if summary["removed_stale_days"]:
        print(f"stale {args.format} files removed from: {' '.join(summary['removed_stale_days'])}", file=sys.stderr)
    # One range, in date order (ingestion drops cross-day duplicates only when earlier days come
    # first); the days between without a folder are skipped and listed.
    if days:
        print(f"next: python -m ingest.ingest_day --date {days[0]} --to {days[-1]}, then "
              f"python -m pipeline.run_dag --date {days[-1]} (README: Bring your own log)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
