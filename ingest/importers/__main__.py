"""Command line: import a public data set into the raw folder.

    python -m ingest.importers FORMAT SOURCE [--out RAW_DIR] [--limit N] [--start-date YYYY-MM-DD]
                               [--items ITEM_TABLE] [--lake LAKE_DIR]

Prints the summary as JSON on stdout and the arrival days written on stderr, with the ingestion
command for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from ingest.importers import IMPORT_ERRORS, IMPORTERS, import_error_message, import_log, summary_lines
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
                        help="first day of synthesized event times (formats without timestamps: "
                             "amazon_m2, amazon_s3rec)")
    parser.add_argument("--items", type=Path, default=None, metavar="ITEM_TABLE",
                        help='item side information beside the events: JSON {"item_id": [attribute, ...]} '
                             "or a CSV/TSV with an item_id column and attribute columns (a|b: several values)")
    parser.add_argument("--lake", type=Path, default=None,
                        help="lake the item table is written into (default: $RECSYS_HOME/lake)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    raw_dir = args.out if args.out is not None else Settings.from_env().raw_dir
    lake_dir = None
    if args.items is not None:
        lake_dir = args.lake if args.lake is not None else Settings.from_env().lake_dir
    try:
        summary = import_log(args.format, args.source, raw_dir, limit=args.limit, start_date=args.start_date,
                             items=args.items, lake_dir=lake_dir)
    except IMPORT_ERRORS as error:  # one line, no traceback
        print(f"error: {import_error_message(error, args.source)}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    for line in summary_lines(summary, args.format):
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
