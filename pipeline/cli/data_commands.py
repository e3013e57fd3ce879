"""``recsys`` commands for the data floors: the demo, logs in (generate, import, ingest), the
session tables, the quality gate and the re-admission of rejected days.

Each command is a thin call into the function the old ``python -m`` entry point calls, with the
same options; heavy modules (Spark, dbt, Great Expectations) are imported inside the commands.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import UserError
from ingest.importers import IMPORTERS
from pipeline.cli.app import DATE_METAVAR, RunDate, app, choice, example, exit_with, plain, print_json, settings


@app.command(epilog=example("recsys demo", "recsys demo --days 4 --users 500 --epochs 5"))
def demo(
    days: Annotated[int, typer.Option(help="days of history before the corrupted day")] = 8,
    users: int = 3000,
    items: int = 500,
    epochs: int = 30,
    model: Annotated[str, typer.Option(help="auto (the schedule's default) or a model name")] = "auto",
) -> None:
    """The whole nightly loop on generated logs: ingest, dbt, gate, Feast, train, promote, serve,
    then a corrupted day the gate must stop (what `make demo` runs)."""
    from pipeline.demo import main as run_demo

    exit_with(run_demo(["--days", str(days), "--users", str(users), "--items", str(items),
                        "--epochs", str(epochs), "--model", model]))


@app.command(epilog=example("recsys generate --start 2026-11-01 --days 7",
                            "recsys generate --out /tmp/raw --start 2026-11-01 --corrupt-date 2026-11-05"))
def generate(
    start: Annotated[date, typer.Option(parser=date.fromisoformat, metavar=DATE_METAVAR,
                                        help="first arrival day")],
    out: Annotated[Optional[Path], typer.Option(
        help="raw folder (one sub-folder per day); default: $RECSYS_HOME/raw")] = None,
    days: int = 7,
    users: int = 2000,
    items: int = 500,
    events_per_user_per_day: float = 3.0,
    seed: int = 0,
    defect_rate: float = 0.01,
    corrupt_date: Annotated[Optional[list[date]], typer.Option(
        parser=date.fromisoformat, metavar=DATE_METAVAR,
        help="arrival day that gets ~40% garbage lines (repeatable)")] = None,
    no_gzip: Annotated[bool, typer.Option("--no-gzip", help="write plain .jsonl files")] = False,
) -> None:
    """Write synthetic raw interaction logs, one folder per arrival day."""
    from ingest.generator import generate_logs

    print_json(generate_logs(out if out is not None else settings().raw_dir, start, days, users, items, events_per_user_per_day=events_per_user_per_day,
                             seed=seed, defect_rate=defect_rate, corrupt_dates=corrupt_date or [],
                             gzip=not no_gzip))


SourceFormat = choice("SourceFormat", sorted(IMPORTERS))
_FORMATS = "\n".join(f"  {name:<13} {importer.description}" for name, importer in sorted(IMPORTERS.items()))


@app.command("import", epilog=example(
    "recsys import movielens ml-1m/ratings.dat --limit 100000",
    "recsys import amazon_m2 sessions_train.csv --start-date 2026-11-01",
    "recsys import amazon_s3rec Beauty.txt --items Beauty_item2attributes.json",
) + "\n\n\b\nformats:\n" + _FORMATS)
def import_(
    format: Annotated[SourceFormat, typer.Argument(help="source format (listed below)",
                                                   show_default=False)],
    source: Annotated[Path, typer.Argument(help="source file (.gz is read as is)")],
    out: Annotated[Optional[Path], typer.Option(help="raw folder to write into (default: $RECSYS_HOME/raw)")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="read at most N source rows")] = None,
    start_date: Annotated[Optional[date], typer.Option(
        parser=date.fromisoformat, metavar=DATE_METAVAR,
        help="first day of synthesized event times (formats without timestamps: amazon_m2, amazon_s3rec)")] = None,
    items: Annotated[Optional[Path], typer.Option(
        metavar="ITEM_TABLE",
        help='item side information beside the events, written into the lake: JSON {"item_id": [attribute, ...]} '
             "or a CSV/TSV with an item_id column and attribute columns (a|b: several values)")] = None,
    lake: Annotated[Optional[Path], typer.Option(
        help="lake the --items table is written into (default: $RECSYS_HOME/lake)")] = None,
) -> None:
    """Convert a public interaction log into canonical raw events, one folder per arrival day,
    and with --items its item table into the lake (lake/items/<format>.parquet).

    Prints the summary as JSON; the arrival days written, and the commands that ingest them, on stderr.
    """
    from ingest.importers import IMPORT_ERRORS, import_error_message, import_log, summary_lines

    source_format = plain(format)
    raw_dir = out if out is not None else settings().raw_dir
    lake_dir = None if items is None else lake if lake is not None else settings().lake_dir
    try:
        summary = import_log(source_format, source, raw_dir, limit=limit, start_date=start_date,
                             items=items, lake_dir=lake_dir)
    except IMPORT_ERRORS as error:
        fix = f"check that {source} is a {source_format} file: {IMPORTERS[source_format].description}"
        if items is not None:
            fix += f"; and {items} an item table (JSON {{item_id: [attribute, ...]}} or CSV/TSV with item_id)"
        if isinstance(error, OSError) and error.strerror:
            fix = "check the path and that it can be read (and --out written)"
        raise UserError(import_error_message(error, source), fix=fix) from error
    print_json(summary)
    for line in summary_lines(summary, source_format):
        print(line, file=sys.stderr)


@app.command(epilog=example("recsys ingest --date 2026-11-20", "recsys ingest --date 2026-11-01 --to 2026-11-20"))
def ingest(
    run_date: RunDate,
    to: Annotated[Optional[date], typer.Option(parser=date.fromisoformat, metavar=DATE_METAVAR,
                                               help="last arrival day (inclusive)")] = None,
    max_line_bytes: Annotated[Optional[int], typer.Option(
        help="longer raw lines are quarantined as line_too_long (default 1 MiB)")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="refuse a range in which a day has no raw folder (default: skip such days)")] = False,
) -> None:
    """Ingest arrival days of raw logs ($RECSYS_HOME/raw/<day>/) into the lake with Spark.

    Prints one reconciliation record (JSON) per day. A day of the range without a raw folder is
    skipped (named on stderr); --strict refuses such a range before ingesting anything.
    """
    from pyspark.sql import SparkSession

    from ingest.ingest_day import ingest_arrival_day, plan_arrival_days, skipped_days_line
    from ingest.raw_files import MAX_LINE_LIMIT
    from ingest.spark import spark_session

    last = to or run_date
    if last < run_date:
        raise typer.BadParameter("--to must not be before --date", param_hint="--to")
    if max_line_bytes is not None and not 1 <= max_line_bytes <= MAX_LINE_LIMIT:
        raise typer.BadParameter(f"must be in 1..{MAX_LINE_LIMIT}", param_hint="--max-line-bytes")
    config = settings()
    plan = plan_arrival_days(config, run_date, last, strict=strict)
    limit = {} if max_line_bytes is None else {"max_line_bytes": max_line_bytes}
    started_here = SparkSession.getActiveSession() is None  # a caller's own session is left running
    spark = spark_session(config)
    try:
        for day in plan.days:
            print_json(ingest_arrival_day(config, day, spark=spark, **limit), indent=None)
    finally:
        if started_here:
            spark.stop()
    if to is not None:
        print(skipped_days_line(plan), file=sys.stderr, flush=True)


@app.command(epilog=example("recsys sessions --date 2026-11-20",
                            "recsys sessions --date 2026-11-20 --readmit 'duplicates were a client retry; checked'"))
def sessions(
    run_date: RunDate,
    full_refresh: Annotated[bool, typer.Option(
        "--full-refresh", help="rebuild every user, not only the changed ones")] = False,
    readmit: Annotated[Optional[str], typer.Option(
        metavar="REASON", help="first re-admit the date, rejected by an earlier quality gate, for this reason")] = None,
) -> None:
    """Build the session tables with dbt (lake -> sessions, sequences, feature tables) for the
    users the ingested days changed; prints the build summary."""
    from pipeline.stages import build_sessions

    print_json(build_sessions(settings(), run_date, full_refresh, readmit_reason=readmit,
                              readmitted_by="recsys sessions --readmit"))


@app.command(epilog=example("recsys check --date 2026-11-20"))
def check(run_date: RunDate) -> None:
    """Run the quality gate (Great Expectations) on the day's events and the session tables.

    Prints the verdict. A failed gate records the day as rejected, rebuilds the session tables
    without it and exits 1 (re-admit it with `recsys admission readmit`).
    """
    from quality.admission import ArrivalDayExcluded
    from quality.gate import QualityGateFailed

    from pipeline.stages import check_quality

    try:
        print_json(check_quality(settings(), run_date))
    except (QualityGateFailed, ArrivalDayExcluded) as stopped:
        print(stopped, file=sys.stderr, flush=True)
        raise typer.Exit(1) from None


admission = typer.Typer(help="Arrival days the quality gate rejected, and their re-admission.",
                        no_args_is_help=True, epilog=example("recsys admission list"))
app.add_typer(admission, name="admission")


@admission.command("list", epilog=example("recsys admission list"))
def admission_list() -> None:
    """Every recorded day's latest event (excluded days first)."""
    from quality.admission import admission_listing

    print("\n".join(admission_listing(settings())))


@admission.command("readmit", epilog=example(
    "recsys admission readmit 2026-11-21 --reason 'duplicates were a client retry; checked'"))
def admission_readmit(
    day: Annotated[str, typer.Argument(metavar=DATE_METAVAR, help="the rejected arrival date")],
    reason: Annotated[str, typer.Option(help="what was checked (kept in the record)")],
    by: Annotated[Optional[str], typer.Option(help="who (default: the login name)")] = None,
) -> None:
    """Let a rejected day back into the session tables from the next build on."""
    from quality.admission import admission_path, readmit

    config = settings()
    event = readmit(config, day, reason, by=by)
    print(f"re-admitted {event['arrival_date']} (recorded in {admission_path(config)}); "
          "the next `recsys sessions` brings its rows back")
