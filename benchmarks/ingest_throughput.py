"""Ingestion throughput: the Spark job against a single-process DuckDB reader of the same files.

::

    python -m benchmarks.ingest_throughput --events 1000000 [--events 10000000] [--repeat 1]
                                           [--work-dir DIR] [--keep] [--profile]

For every size it generates one arrival day of logs with ``ingest.generator.generate_logs``
(cached in the work dir by size, files, seed and generator version, so a re-run skips it), then
runs, side by side and alternating which goes first:

* ``spark-ingest``: the real job, ``ingest.ingest_day.ingest_arrival_day``, on
  ``RECSYS_SPARK_MASTER`` (default ``local[*]``; a ``spark://`` URL runs it on a cluster, with the
  work dir on storage the workers share);
* ``duckdb-baseline``: one DuckDB process reading the same gzip JSON lines as text and applying
  the same rules (strict JSON object, required fields, JSON types, ISO time with zone,
  future/too-old bounds, the event type set, first copy per ``event_id``), writing the same
  Parquet lake and quarantine and counting them back.

Each run is a fresh process; its wall time and the peak RSS of its whole process tree (Python
driver + JVM) are measured from outside. The baseline's counts must equal Spark's
reconciliation and both lakes must hold the same rows, otherwise the command fails: the
baseline also cross-checks the ingestion job.

The figures go to ``benchmarks/results/ingest_throughput.json`` and the "Ingestion throughput"
section of ``docs/benchmarks.md``.

**The data.** One arrival day. The generator keeps a whole run in memory (~1 GB per million
lines), so a size is made of files of at most 1M lines (``--files`` overrides): file ``k`` is
``generate_logs`` for the day ``k`` days before the arrival day (seed ``seed + k``), i.e. late
events well inside the 30-day window, with distinct event ids. 1M events = one file, one event
date; 10M = ten files, ten event dates. Each file carries the generator's defects (1 % malformed
lines, 1 % re-sent duplicates), 3 events per user, 5,000 items.

**Where the baseline differs from the job** (none of it occurs in generated logs): it reads
lines with DuckDB's CSV reader, so a line holding the byte 0x01, mixed CR/LF line ends, invalid
UTF-8 (the job: ``bad_encoding``), a line over 2 MB or a damaged gzip file (the job salvages
them: ``truncated_file``, ``corrupt_file``) make it fail loudly rather than quarantine; it looks
for duplicate keys at the top level and inside ``extra`` only (Spark's variant parser at every
depth); and an ``event_time`` ending in an escaped line break passes Java's ``$`` but not RE2's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common

NAME = "ingest_throughput"
MODULE = "benchmarks.ingest_throughput"
TITLE = "Ingestion throughput"

SPARK = "spark-ingest"
BASELINE = "duckdb-baseline"
BASELINE_NAME = "duckdb-single-process"
GENERATOR = "generator"

ARRIVAL_DATE = date(2026, 11, 20)
MAX_LINES_PER_FILE = 1_000_000
# The generator's lines per user and day at 3 events per user-day and 1 % defects (measured).
LINES_PER_USER = 3.008
EVENTS_PER_USER_PER_DAY = 3.0
N_ITEMS = 5_000
DEFECT_RATE = 0.01
# Late events must stay inside the too-old bound (30 days by default).
MAX_FILES = 25

RAW_FILE_SUFFIXES = (".jsonl", ".jsonl.gz")
COUNT_KEYS = ("input_rows", "written_rows", "quarantined_rows", "duplicate_rows", "quarantine_reasons",
              "event_dates")


# ---- sizes and labels ----


def parse_count(text: str) -> int:
    """``1000000``, ``1_000_000``, ``1M``, ``20k``, ``10m`` -> int."""
    cleaned = text.strip().replace("_", "").replace(",", "").lower()
    factor = 1
    if cleaned.endswith("k"):
        factor, cleaned = 1_000, cleaned[:-1]
    elif cleaned.endswith("m"):
        factor, cleaned = 1_000_000, cleaned[:-1]
    try:
        value = float(cleaned) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event count: {text!r}") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a positive whole number of events: {text!r}")
    return int(value)


def size_label(events: int) -> str:
    for factor, suffix in ((1_000_000, "M"), (1_000, "k")):
        if events >= factor and events % (factor // 10) == 0:
            return f"{events / factor:g}{suffix}"
    return str(events)


def dataset_label(events: int) -> str:
    return f"generated-{size_label(events)}"


# ---- the data: generated once per size, cached ----


@dataclass(frozen=True)
class Dataset:
    label: str
    target_events: int
    files: int
    seed: int
    folder: Path
    summary: dict[str, Any]

    @property
    def raw_day(self) -> Path:
        return self.folder / "raw" / ARRIVAL_DATE.isoformat()

    @property
    def lines(self) -> int:
        return int(self.summary["lines"])


def _generator_version() -> str:
    from ingest import generator

    return hashlib.sha1(Path(generator.__file__).read_bytes()).hexdigest()[:10]


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def _generate_file(scratch: str, index: int, lines: int, seed: int) -> dict[str, Any]:
    """One file of the day: ``generate_logs`` for the day ``index`` days before arrival."""
    from ingest.generator import generate_logs

    day = ARRIVAL_DATE - timedelta(days=index)
    started = time.perf_counter()
    summary = generate_logs(
        Path(scratch) / f"file-{index}", day, 1,
        n_users=max(1, round(lines / LINES_PER_USER)), n_items=N_ITEMS,
        events_per_user_per_day=EVENTS_PER_USER_PER_DAY, seed=seed + index, defect_rate=DEFECT_RATE,
    )
    day_summary = summary["days"][day.isoformat()]
    return {"index": index, "event_date": day.isoformat(), "seconds": time.perf_counter() - started,
            "n_users": summary["n_users"], **day_summary}


def prepare_dataset(work_dir: Path, events: int, files: int | None, seed: int, workers: int,
                    log=print) -> Dataset:
    files = files or max(1, math.ceil(events / MAX_LINES_PER_FILE))
    if not 1 <= files <= MAX_FILES:
        raise ValueError(f"--files must be in 1..{MAX_FILES} (late events must stay within the age bound)")
    key = f"events-{events}-files-{files}-seed-{seed}-gen-{_generator_version()}"
    folder = work_dir / "data" / key
    summary_path = folder / "summary.json"
    label = dataset_label(events)
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        log(f"[{label}] generated logs cached in {folder} ({summary['lines']:,} lines, generated in "
            f"{summary['generation_s']:.1f} s)")
        return Dataset(label, events, files, seed, folder, summary)

    shutil.rmtree(folder, ignore_errors=True)
    scratch = folder / "scratch"
    scratch.mkdir(parents=True)
    sizes = _split(events, files)
    workers = max(1, min(workers, files))
    log(f"[{label}] generating {events:,} events in {files} file(s) with {workers} worker process(es) ...")
    started = time.perf_counter()
    # A fresh process per file: the generator holds a file's lines in memory, which would otherwise
    # stay in this process (and its peak) for the whole benchmark.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        parts = list(pool.map(_generate_file, [str(scratch)] * files, range(files), sizes, [seed] * files))
    generation_s = time.perf_counter() - started
    day_folder = folder / "raw" / ARRIVAL_DATE.isoformat()
    day_folder.mkdir(parents=True)
    for part in parts:
        os.replace(part["path"], day_folder / f"events-{part['index']:05d}.jsonl.gz")
    shutil.rmtree(scratch)
    reasons: dict[str, int] = {}
    for part in parts:
        for reason, n in part["quarantine_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    summary = {
        "target_events": events, "files": files, "seed": seed, "arrival_date": ARRIVAL_DATE.isoformat(),
        "lines": sum(p["lines"] for p in parts),
        "events": sum(p["events"] for p in parts),
        "duplicate_lines": sum(p["duplicate_lines"] for p in parts),
        "quarantined_lines": sum(p["quarantined_lines"] for p in parts),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "bytes": sum(path.stat().st_size for path in day_folder.iterdir()),
        "generation_s": generation_s,
        "generation_workers": workers,
        "generation_cpu_s": sum(p["seconds"] for p in parts),
        "parts": [{k: v for k, v in p.items() if k != "path"} for p in parts],
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    log(f"[{label}] generated {summary['lines']:,} lines ({summary['bytes'] / common.MIB:.0f} MiB gzip) "
        f"in {generation_s:.1f} s")
    return Dataset(label, events, files, seed, folder, summary)


def _link_raw(dataset: Dataset, home: Path) -> None:
    """The dataset's files under ``home/raw/<day>/`` (hard links: no copy, no shared state)."""
    target = home / "raw" / ARRIVAL_DATE.isoformat()
    target.mkdir(parents=True)
    for source in sorted(dataset.raw_day.iterdir()):
        try:
            os.link(source, target / source.name)
        except OSError:
            shutil.copy2(source, target / source.name)


# ---- the single-process baseline (DuckDB), same rules as ingest/ingest_day.py ----

# Mirrors of the Spark job's patterns. Java's \s is [ \t\n\x0B\f\r]; RE2's lacks \x0B.
_WS = r"[ \t\n\x0B\f\r]"
BLANK_PATTERN = f"^{_WS}*$"
ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
# DuckDB's JSON reader also accepts NaN/Infinity and trailing commas, which strict JSON (and the
# Spark job) rejects: looked for outside string literals, on the lines that might have them.
_LENIENT_HINT = r"(?i)nan|inf|,[ \t\n\r]*[}\]]"
_STRING_LITERAL = r'"(?:[^"\\]|\\.)*"'


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _scalar(con: Any, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    assert row is not None, sql
    return row[0]


def raw_files(folder: Path) -> list[Path]:
    """The same selection as the Spark job: sorted, not hidden, ``.jsonl[.gz]``, not empty."""
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and not path.name.startswith((".", "_")) and path.name.endswith(RAW_FILE_SUFFIXES)
        and path.stat().st_size > 0
    )


def classify_sql(files: Sequence[Path], arrival_date: date, max_future_skew_minutes: int,
                 max_event_age_days: int) -> str:
    """One row per input line with its quarantine reason (NULL if valid) and the lake columns."""
    from ingest.schema import (EMPTY_LINE, EVENT_TYPES, FUTURE_TIMESTAMP, RAW_EVENT_FIELDS,
                               REQUIRED_FIELDS, STRING_FIELDS, TOO_OLD_TIMESTAMP, UNKNOWN_EVENT_TYPE,
                               UNPARSEABLE, bad_type, missing_field)

    day_start = datetime.combine(arrival_date, dtime.min, tzinfo=timezone.utc)
    latest = day_start + timedelta(days=1, minutes=max_future_skew_minutes)
    earliest = day_start - timedelta(days=max_event_age_days)
    position = {name: k + 1 for k, name in enumerate(RAW_EVENT_FIELDS)}  # DuckDB lists are 1-based
    paths = "[" + ", ".join(_sql_literal(f"$.{name}") for name in RAW_EVENT_FIELDS) + "]"
    blank = lambda value: f"({value} IS NULL OR regexp_matches({value}, {_sql_literal(BLANK_PATTERN)}))"  # noqa: E731

    from ingest import schema

    reasons = []
    max_line_bytes = getattr(schema, "MAX_LINE_BYTES", None)
    if max_line_bytes:  # the job quarantines over-long lines (and DuckDB's reader fails beyond 2 MB)
        reasons.append(f"WHEN strlen(raw_line) > {int(max_line_bytes)} THEN "
                       f"{_sql_literal(getattr(schema, 'LINE_TOO_LONG', 'line_too_long'))}")
    reasons += [f"WHEN blank_line THEN {_sql_literal(EMPTY_LINE)}",
               f"WHEN doc IS NULL OR doc_type <> 'OBJECT' OR duplicate_keys OR lenient THEN {_sql_literal(UNPARSEABLE)}"]
    reasons += [f"WHEN {blank(f'v[{position[name]}]')} THEN {_sql_literal(missing_field(name))}"
                for name in REQUIRED_FIELDS]
    for name in RAW_EVENT_FIELDS:
        t = f"t[{position[name]}]"
        if name == "extra":
            wrong = f"{t} IS NOT NULL AND {t} NOT IN ('NULL', 'OBJECT')"
        elif name == "event_time":
            wrong = f"({t} IS NOT NULL AND {t} NOT IN ('NULL', 'VARCHAR')) OR ts IS NULL"
        elif name in STRING_FIELDS:
            wrong = f"{t} IS NOT NULL AND {t} NOT IN ('NULL', 'VARCHAR')"
        else:
            continue
        reasons.append(f"WHEN {wrong} THEN {_sql_literal(bad_type(name))}")
    types = ", ".join(_sql_literal(t) for t in EVENT_TYPES)
    reasons += [
        f"WHEN v[{position['event_type']}] NOT IN ({types}) THEN {_sql_literal(UNKNOWN_EVENT_TYPE)}",
        f"WHEN ts > TIMESTAMPTZ {_sql_literal(latest.isoformat())} THEN {_sql_literal(FUTURE_TIMESTAMP)}",
        f"WHEN ts < TIMESTAMPTZ {_sql_literal(earliest.isoformat())} THEN {_sql_literal(TOO_OLD_TIMESTAMP)}",
    ]
    file_list = "[" + ", ".join(_sql_literal(str(path)) for path in files) + "]"
    et = f"v[{position['event_time']}]"
    offset = r"[+-](\d{2}):?(\d{2})$"
    return f"""
WITH lines AS (
    SELECT coalesce(raw_line, '') AS raw_line,
           {_sql_literal(arrival_date.isoformat() + '/')} || parse_filename(filename) AS source_file
    FROM read_csv({file_list}, columns = {{'raw_line': 'VARCHAR'}}, delim = chr(1), quote = '',
                  escape = '', header = false, auto_detect = false, filename = true)
), checked AS (
    SELECT raw_line, source_file,
           regexp_matches(raw_line, {_sql_literal(BLANK_PATTERN)}) AS blank_line,
           CASE WHEN json_valid(raw_line) THEN raw_line END AS doc
    FROM lines
), fields AS (
    SELECT raw_line, source_file, blank_line, doc,
           json_type(doc) AS doc_type,
           json_keys(doc) AS keys,
           json_extract_string(doc, {paths}) AS v,
           json_type(doc, {paths}) AS t
    FROM checked
), typed AS (
    SELECT *,
           len(keys) <> len(list_distinct(keys))
             OR coalesce(CASE WHEN t[{position['extra']}] = 'OBJECT' THEN
                  len(json_keys(v[{position['extra']}])) <> len(list_distinct(json_keys(v[{position['extra']}])))
                END, false) AS duplicate_keys,
           CASE WHEN regexp_matches(doc, {_sql_literal(_LENIENT_HINT)})
                THEN regexp_matches(regexp_replace(doc, {_sql_literal(_STRING_LITERAL)}, '""', 'g'),
                                    {_sql_literal(_LENIENT_HINT)})
                ELSE false END AS lenient,
           CASE WHEN regexp_matches({et}, {_sql_literal(ISO_TIME_PATTERN)})
                     AND substr({et}, 12, 2) < '24'
                     AND (right({et}, 1) = 'Z'
                          OR (CAST(regexp_extract({et}, {_sql_literal(offset)}, 1) AS INTEGER) * 60
                              + CAST(regexp_extract({et}, {_sql_literal(offset)}, 2) AS INTEGER) <= 18 * 60
                              AND CAST(regexp_extract({et}, {_sql_literal(offset)}, 2) AS INTEGER) < 60))
                THEN try_cast({et} AS TIMESTAMPTZ) END AS ts
    FROM fields
)
SELECT raw_line, source_file,
       CASE {' '.join(reasons)} END AS reason,
       v[{position['event_id']}] AS event_id,
       ts AS event_time,
       v[{position['user_id']}] AS user_id,
       CASE WHEN NOT {blank(f"v[{position['session_id']}]")} THEN v[{position['session_id']}] END AS session_id,
       v[{position['item_id']}] AS item_id,
       v[{position['event_type']}] AS event_type,
       v[{position['extra']}] AS extra,
       CAST(ts AS DATE) AS event_date
FROM typed
"""


def baseline_ingest(home: Path, arrival_date: date, threads: int | None = None) -> dict[str, Any]:
    """The baseline's ingestion of ``home/raw/<arrival_date>/`` into ``home/lake``: the same
    outputs and the same reconciliation record as the Spark job, from one DuckDB process."""
    import duckdb

    from ingest.schema import MAX_RAW_LINE_CHARS
    from core.settings import Settings

    settings = Settings.from_env().with_home(home)
    day = arrival_date.isoformat()
    files = raw_files(settings.raw_dir / day)
    events_dir, quarantine_dir = settings.events_dir, settings.quarantine_dir / f"arrival_date={day}"
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    events_dir.mkdir(parents=True, exist_ok=True)
    spill = home / "duckdb-tmp"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET temp_directory = {_sql_literal(str(spill))}")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")

    if files:
        sql = classify_sql(files, arrival_date, settings.max_future_skew_minutes, settings.max_event_age_days)
        # The line's text is kept for the quarantine only, as the Spark job does.
        con.execute("CREATE TEMP TABLE classified AS SELECT * REPLACE "
                    f"(CASE WHEN reason IS NOT NULL THEN raw_line END AS raw_line) FROM ({sql})")
    else:
        con.execute("CREATE TEMP TABLE classified (raw_line VARCHAR, source_file VARCHAR, reason VARCHAR, "
                    "event_id VARCHAR, event_time TIMESTAMPTZ, user_id VARCHAR, session_id VARCHAR, "
                    "item_id VARCHAR, event_type VARCHAR, extra VARCHAR, event_date DATE)")
    counts = dict(con.execute("SELECT reason, count(*) FROM classified GROUP BY reason").fetchall())
    input_rows = sum(counts.values())
    valid_rows = counts.pop(None, 0)

    quarantine_file = quarantine_dir / "part-00000.parquet"
    con.execute(f"""
        COPY (SELECT substr(raw_line, 1, {MAX_RAW_LINE_CHARS}) AS raw_line, reason, source_file
              FROM classified WHERE reason IS NOT NULL ORDER BY source_file, reason, raw_line)
        TO {_sql_literal(str(quarantine_file))} (FORMAT parquet)""")

    earlier = sorted(p for p in events_dir.glob("event_date=*/arrival_date=*/*.parquet")
                     if p.parent.name < f"arrival_date={day}")
    anti_join = ""
    if earlier:  # the same rule as the Spark job: ids the lake has from earlier days are duplicates
        earlier_list = "[" + ", ".join(_sql_literal(str(p)) for p in earlier) + "]"
        anti_join = f"AND event_id NOT IN (SELECT event_id FROM read_parquet({earlier_list}))"
    con.execute(f"""
        CREATE TEMP TABLE new_events AS
        SELECT event_id, event_time, user_id, session_id, item_id, event_type, extra, event_date,
               DATE {_sql_literal(day)} AS arrival_date
        FROM (SELECT * FROM classified WHERE reason IS NULL
              QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY event_time, user_id,
                     session_id NULLS FIRST, item_id, event_type, extra NULLS FIRST) = 1)
        WHERE true {anti_join}""")
    con.execute("DROP TABLE classified")
    new_event_rows = _scalar(con, "SELECT count(*) FROM new_events")
    event_dates = [row[0] for row in con.execute(
        "SELECT DISTINCT event_date FROM new_events ORDER BY event_date").fetchall()]
    if new_event_rows:
        con.execute(f"""
            COPY (SELECT * FROM new_events ORDER BY event_date, event_time, event_id)
            TO {_sql_literal(str(events_dir))}
            (FORMAT parquet, PARTITION_BY (event_date, arrival_date), OVERWRITE_OR_IGNORE true)""")
    con.execute("DROP TABLE new_events")

    # Counted back from the written files, as the Spark job does.
    written = list(events_dir.glob(f"event_date=*/arrival_date={day}/*.parquet"))
    written_rows = _scalar(con, "SELECT count(*) FROM read_parquet(?)", [[str(p) for p in written]]) if written else 0
    quarantined_rows = _scalar(con, "SELECT count(*) FROM read_parquet(?)", [str(quarantine_file)])
    con.close()
    shutil.rmtree(spill, ignore_errors=True)
    return {
        "arrival_date": day,
        "input_rows": input_rows,
        "written_rows": written_rows,
        "quarantined_rows": quarantined_rows,
        "duplicate_rows": valid_rows - new_event_rows,
        "quarantine_reasons": dict(sorted(counts.items())),
        "event_dates": [d.isoformat() for d in event_dates],
    }


# ---- workers: one fresh process per measured run ----


def _worker(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{MODULE} _worker")
    parser.add_argument("kind", choices=("spark", "duckdb"))
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--date", type=date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if args.kind == "spark":
        from ingest.ingest_day import ingest_arrival_day
        from ingest.line_parser import register
        from ingest.spark import spark_session
        from core.settings import Settings

        settings = Settings.from_env().with_home(args.home)
        imported = time.perf_counter()
        spark = spark_session(settings)
        spark.sparkContext.setLogLevel("ERROR")
        # The parser the ingestion will use ("jvm" or "sql"), as it resolves it; the figures
        # depend on it.
        result["parser"] = register(spark, settings)
        session_started = time.perf_counter()
        try:
            result["reconciliation"] = ingest_arrival_day(settings, args.date, spark=spark)
            done = time.perf_counter()
        finally:
            spark.stop()
        result["startup_s"] = session_started - imported
        result["master"] = settings.spark_master
    else:
        import duckdb  # noqa: F401 - imported before the clock starts, like pyspark above

        imported = session_started = time.perf_counter()
        result["reconciliation"] = baseline_ingest(args.home, args.date, args.threads)
        done = time.perf_counter()
        result["startup_s"] = 0.0
    result["import_s"] = imported - started
    result["ingest_s"] = done - session_started
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


@dataclass
class Run:
    model: str
    ingest_s: float  # the ingestion call alone (Spark session already started)
    process_s: float  # the whole fresh process, interpreter and JVM start included
    startup_s: float  # Spark session start (JVM); 0 for the baseline
    peak_rss_bytes: int
    reconciliation: dict[str, Any]
    home: Path = field(repr=False)
    parser: str | None = None  # the Spark job's line parser; None for the baseline


def measured_run(kind: str, dataset: Dataset, run_dir: Path, env: dict[str, str],
                 threads: int | None = None, extra_env: dict[str, str] | None = None) -> Run:
    shutil.rmtree(run_dir, ignore_errors=True)
    home = run_dir / "home"
    _link_raw(dataset, home)
    out, log = run_dir / "result.json", run_dir / "worker.log"
    command = common.python_module_command(MODULE, "_worker", kind, "--home", str(home),
                                           "--date", ARRIVAL_DATE.isoformat(), "--out", str(out))
    if threads:
        command += ["--threads", str(threads)]
    worker_env = {**env, "RECSYS_HOME": str(home), **(extra_env or {})}
    measured = common.run_measured(command, env=worker_env, cwd=common.REPO_ROOT, log_path=log)
    if measured.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise RuntimeError(f"{kind} run failed (exit {measured.returncode}); log {log}:\n{tail}")
    result = json.loads(out.read_text())
    return Run(
        model=SPARK if kind == "spark" else BASELINE,
        ingest_s=result["ingest_s"], process_s=measured.wall_s, startup_s=result["startup_s"],
        peak_rss_bytes=measured.peak_rss_bytes, reconciliation=result["reconciliation"], home=home,
        parser=result.get("parser"),
    )


# ---- cross-checks ----


def count_mismatches(spark: dict[str, Any], baseline: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {key: (spark.get(key), baseline.get(key)) for key in COUNT_KEYS if spark.get(key) != baseline.get(key)}


def compare_lakes(spark_home: Path, baseline_home: Path, arrival_date: date) -> dict[str, int]:
    """Rows one lake (or quarantine) has and the other does not, compared by value."""
    import duckdb

    day = arrival_date.isoformat()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def events(home: Path) -> str:
        files = list((home / "lake" / "events").glob(f"event_date=*/arrival_date={day}/*.parquet"))
        if not files:
            return ("SELECT NULL::VARCHAR a, NULL::BIGINT b, NULL::VARCHAR c, NULL::VARCHAR d, NULL::VARCHAR e,"
                    " NULL::VARCHAR f, NULL::VARCHAR g, NULL::VARCHAR h WHERE false")
        listed = "[" + ", ".join(_sql_literal(str(p)) for p in files) + "]"
        return (f"SELECT event_id, epoch_us(event_time), user_id, session_id, item_id, event_type, "
                f"CAST(json(extra) AS VARCHAR), CAST(event_date AS VARCHAR) "
                f"FROM read_parquet({listed}, hive_partitioning = true)")

    def quarantine(home: Path) -> str:
        return (f"SELECT raw_line, reason, source_file FROM read_parquet("
                f"{_sql_literal(str(home / 'lake' / 'quarantine' / f'arrival_date={day}' / '*.parquet'))})")

    diff = {}
    for name, query in (("events", events), ("quarantine", quarantine)):
        a, b = query(spark_home), query(baseline_home)
        diff[f"{name}_only_in_spark"] = _scalar(con, f"SELECT count(*) FROM ({a} EXCEPT ALL {b})")
        diff[f"{name}_only_in_baseline"] = _scalar(con, f"SELECT count(*) FROM ({b} EXCEPT ALL {a})")
    con.close()
    return diff


# ---- Spark's own account of where its time goes (event log) ----


def profile_conf_dir(run_dir: Path) -> tuple[Path, Path]:
    """A ``SPARK_CONF_DIR`` that turns the event log on, without touching the job's code."""
    conf, logs = run_dir / "spark-conf", run_dir / "eventlog"
    conf.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    (conf / "spark-defaults.conf").write_text(
        f"spark.eventLog.enabled true\nspark.eventLog.dir file://{logs}\nspark.eventLog.compress false\n")
    return conf, logs


def read_event_log(logs: Path) -> list[dict[str, Any]]:
    """One entry per SQL execution (a DataFrame action): what it did, how long it took, and the
    driver time between it and the previous action (or the application start)."""
    entries: dict[int, dict[str, Any]] = {}
    app_start = None
    # Spark 4 writes a rolling log: a folder of event files per application.
    for path in sorted(p for p in logs.rglob("*") if p.is_file()):
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("Event", "")
            if kind == "SparkListenerApplicationStart":
                app_start = event.get("Timestamp")
            elif kind.endswith("SparkListenerSQLExecutionStart"):
                entries[event["executionId"]] = {"start": event["time"], "description": event.get("description", ""),
                                                 "plan": event.get("physicalPlanDescription", "")}
            elif kind.endswith("SparkListenerSQLExecutionEnd") and event["executionId"] in entries:
                entries[event["executionId"]]["end"] = event["time"]
    ordered = sorted((e for e in entries.values() if "end" in e), key=lambda e: e["start"])
    previous_end = app_start
    out = []
    for entry in ordered:
        out.append({
            "description": describe_action(entry["description"], entry["plan"]),
            "seconds": (entry["end"] - entry["start"]) / 1000,
            "gap_before_s": (entry["start"] - previous_end) / 1000 if previous_end else None,
        })
        previous_end = max(previous_end or 0, entry["end"])
    return out


def describe_action(description: str, plan: str) -> str:
    """``count``/``collect``/``parquet`` plus what the physical plan does, in words."""
    head = description.strip().splitlines()[0] if description.strip() else "?"
    action = head.split(" at ", 1)[0]
    where = ""
    if ".py:" in head:
        where = " (" + Path(head.split(" at ", 1)[1]).name + ")"
    # The lake folder, or the run's staging folder for it (lake/_staging/<day>/<run>/events).
    target = re.search(r"/lake/(?:_staging/[^/\]\s]+/[^/\]\s]+/)?(events|quarantine)", plan)
    scanned = ("lake/" + target.group(1)) if target else "?"
    if "InsertIntoHadoopFsRelationCommand" in plan:
        what = f"write {scanned}"
    elif "Window" in plan:
        what = "dedup: window over event_id"
    elif "Scan text" in plan:
        what = "read + parse + classify + cache, count per reason"
    elif "Scan parquet" in plan:
        what = f"read back {scanned}"
    elif "Scan ExistingRDD" in plan:
        what = "on the checkpointed new events"
    else:
        what = ""
    return f"{action}{where}: {what}" if what else f"{action}{where}"


# ---- the benchmark ----


@dataclass
class SizeResult:
    dataset: Dataset
    spark: list[Run]
    baseline: list[Run]
    lake_diff: dict[str, int]
    profile: list[dict[str, Any]] = field(default_factory=list)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def build_records(results: Sequence[SizeResult], command: str, hardware: dict[str, Any], when: str) -> list[dict]:
    records: list[dict[str, Any]] = []

    def add(metric: str, value: Any, unit: str, dataset: str, model: str, baseline: str | None = BASELINE_NAME):
        records.append(common.record(metric, value, unit, dataset=dataset, model=model, baseline=baseline,
                                     command=command, hardware=hardware, date=when))

    for result in results:
        d = result.dataset
        lines = d.lines
        per_model = {}
        for model, runs in ((SPARK, result.spark), (BASELINE, result.baseline)):
            ingest_s = common.median([r.ingest_s for r in runs])
            process_s = common.median([r.process_s for r in runs])
            peak = common.median([r.peak_rss_bytes for r in runs]) / common.MIB
            per_model[model] = (ingest_s, process_s, peak)
            add("throughput", lines / ingest_s, "events/s", d.label, model)
            add("wall_time", ingest_s, "s", d.label, model)
            add("process_wall_time", process_s, "s", d.label, model)
            add("throughput_end_to_end", lines / process_s, "events/s", d.label, model)
            add("peak_rss", peak, "MiB", d.label, model)
            if model == SPARK:
                add("startup_time", common.median([r.startup_s for r in runs]), "s", d.label, model)
            add("repeats", len(runs), "runs", d.label, model)
            reconciliation = runs[0].reconciliation
            for key in ("input_rows", "written_rows", "quarantined_rows", "duplicate_rows"):
                add(key, reconciliation[key], "rows", d.label, model)
        spark, base = per_model[SPARK], per_model[BASELINE]
        add("ratio_vs_baseline", spark[0] / base[0], "x (wall time / baseline wall time)", d.label, SPARK)
        add("ratio_vs_baseline_end_to_end", spark[1] / base[1], "x (process time / baseline process time)",
            d.label, SPARK)
        add("peak_rss_ratio_vs_baseline", spark[2] / base[2], "x (peak RSS / baseline peak RSS)", d.label, SPARK)
        add("input_files", d.files, "files", d.label, GENERATOR, None)
        add("input_bytes", d.summary["bytes"] / common.MIB, "MiB (gzip)", d.label, GENERATOR, None)
        add("wall_time", d.summary["generation_s"], "s", d.label, GENERATOR, None)
        add("worker_processes", d.summary["generation_workers"], "processes", d.label, GENERATOR, None)
        add("throughput", lines / d.summary["generation_s"], "events/s", d.label, GENERATOR, None)
        add("cpu_throughput", lines / d.summary["generation_cpu_s"], "events/s per process", d.label,
            GENERATOR, None)
        for k, step in enumerate(result.profile):
            add(f"profile:{k:02d} {step['description']}", step["seconds"], "s", d.label, SPARK, None)
    return records


def _value(records: Sequence[dict], dataset: str, model: str, metric: str) -> Any:
    for item in records:
        if (item["dataset"], item["model"], item["metric"]) == (dataset, model, metric):
            return item["value"]
    return None


def _datasets(records: Sequence[dict]) -> list[str]:
    def size(label: str) -> float:
        return _value(records, label, SPARK, "input_rows") or 0

    return sorted({item["dataset"] for item in records}, key=size)


def summary_rows(records: Sequence[dict]) -> list[list[str]]:
    rows = []
    for dataset in _datasets(records):
        def v(model: str, metric: str) -> Any:
            return _value(records, dataset, model, metric)

        lines = v(SPARK, "input_rows")
        for model, label in ((SPARK, "Spark ingest_arrival_day"), (BASELINE, "DuckDB, one process")):
            ratio = ""
            if model == SPARK:
                ratio = (f"{_fmt(v(SPARK, 'ratio_vs_baseline'), 2)}x "
                         f"(end to end {_fmt(v(SPARK, 'ratio_vs_baseline_end_to_end'), 2)}x, "
                         f"memory {_fmt(v(SPARK, 'peak_rss_ratio_vs_baseline'), 2)}x)")
            rows.append([dataset, f"{lines:,}" if lines else "", label, _fmt(v(model, "wall_time")),
                         _fmt(v(model, "throughput"), 0), _fmt(v(model, "process_wall_time")),
                         _fmt(v(model, "peak_rss"), 0), ratio])
        rows.append([dataset, f"{lines:,}" if lines else "",
                     f"generator ({v(GENERATOR, 'input_files')} file(s), "
                     f"{v(GENERATOR, 'worker_processes')} process(es))",
                     _fmt(v(GENERATOR, "wall_time")), _fmt(v(GENERATOR, "throughput"), 0), "", "", ""])
    return rows


HEADERS = ["dataset", "input lines", "what", "wall s", "events/s", "process s", "peak RSS MiB",
           "Spark / baseline"]


def render_section(records: Sequence[dict]) -> str:
    rows = summary_rows(records)
    table = common.markdown_table(HEADERS, rows, align="lrlrrrrl")
    runs: dict[str, list[str]] = {}
    machines: dict[str, list[str]] = {}
    for dataset in _datasets(records):
        first = next(item for item in records if item["dataset"] == dataset)
        runs.setdefault(f"`{first['command']}` ({first['date']})", []).append(dataset)
        machines.setdefault(common.hardware_summary(first["hardware"]), []).append(dataset)
    commands = "\n".join(f"- {', '.join(ds)}: {cmd}" for cmd, ds in runs.items())
    hardware = "\n".join(f"- {', '.join(ds)}: {hw}" for hw, ds in machines.items())
    profiles = []
    for dataset in _datasets(records):
        steps = [item for item in records if item["dataset"] == dataset and item["metric"].startswith("profile:")]
        if steps:
            total = sum(item["value"] for item in steps)
            lines = [f"| {item['metric'].split(' ', 1)[1].replace('|', '/')} | {_fmt(item['value'], 2)} |"
                     for item in steps]
            profiles.append(f"Where Spark's time goes on {dataset}: one extra run with Spark's event log on "
                            f"(`--profile`), time per DataFrame action in the order they run, "
                            f"{_fmt(total, 1)} s in all:\n\n| step | s |\n|---|---:|\n" + "\n".join(lines))
    profile_text = ("\n\n" + "\n\n".join(profiles)) if profiles else ""
    return f"""Generated by `python -m {MODULE}`; do not edit by hand.

{table}

- **wall s / events/s**: the ingestion call alone, input lines per second. For Spark that is
  `ingest_arrival_day` with its session already started; for the baseline, one DuckDB process
  doing the same validation, dedup, Parquet writes and read-back counts.
- **process s**: the whole fresh process (interpreter, imports, JVM and Spark session start).
- **peak RSS**: the sum over the process tree (Python driver + JVM), sampled every 0.1 s. With a
  cluster master (`RECSYS_SPARK_MASTER=spark://...`) it covers the driver only, and the work dir
  must be on storage the executors share.
- The baseline is one process: DuckDB reading the gzip files as text lines, with its default
  threads (all cores).
- **Spark / baseline**: wall-time ratio (the goal is at most 2x at 10M events on 2 cores),
  then process-time and peak-memory ratios. Each figure is the median over the repeats.
- Spark's reconciliation (input, written, quarantined, duplicate rows, reasons, event dates)
  equals the baseline's, and the two lakes and quarantines hold the same rows, for every size
  shown: the command fails otherwise.
- Data: one arrival day from `ingest.generator.generate_logs`, gzip JSON lines, 3 events per
  user, 5,000 items, 1 % malformed and 1 % re-sent lines; at most 1M lines per file (file `k`
  holds events of the day `k` days before arrival).

Commands:
{commands}

Machine:
{hardware}{profile_text}
"""


def _print_table(records: Sequence[dict]) -> None:
    print()
    print(common.text_table(HEADERS, summary_rows(records)))
    print()


def run_benchmark(args: argparse.Namespace, command: str) -> list[dict[str, Any]]:
    work_dir = (args.work_dir or common.default_work_dir(NAME)).resolve()
    if work_dir.is_relative_to(common.REPO_ROOT):
        raise SystemExit(f"--work-dir {work_dir} is inside the repository; choose a folder outside it")
    work_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    master = env.get("RECSYS_SPARK_MASTER") or "local[*]"
    hardware = common.hardware(spark_master=master, packages=("pyspark", "duckdb"))
    when = common.now_iso()
    print(f"work dir {work_dir}; Spark master {master}; {common.hardware_summary(hardware)}")

    results: list[SizeResult] = []
    datasets = [prepare_dataset(work_dir, n, args.files, args.seed, args.gen_workers) for n in args.events]
    for index, dataset in enumerate(datasets):
        spark_runs: list[Run] = []
        baseline_runs: list[Run] = []
        lake_diff: dict[str, int] = {}
        for repeat in range(args.repeat):
            # Alternate which goes first, so that a drifting machine does not favour one side.
            order = ("spark", "duckdb") if (index + repeat) % 2 == 0 else ("duckdb", "spark")
            this: dict[str, Run] = {}
            for kind in order:
                run_dir = work_dir / "runs" / dataset.label / f"{kind}-{repeat}"
                print(f"[{dataset.label}] repeat {repeat + 1}/{args.repeat}: {kind} ...", flush=True)
                run = measured_run(kind, dataset, run_dir, env, threads=args.baseline_threads)
                print(f"    {run.ingest_s:.1f} s ingest, {run.process_s:.1f} s process, "
                      f"{run.peak_rss_bytes / common.MIB:,.0f} MiB peak, {run.reconciliation['input_rows']:,} "
                      f"lines", flush=True)
                this[kind] = run
            spark_runs.append(this["spark"])
            baseline_runs.append(this["duckdb"])
            mismatch = count_mismatches(this["spark"].reconciliation, this["duckdb"].reconciliation)
            if this["spark"].reconciliation["input_rows"] != dataset.lines:
                mismatch["generated_lines"] = (this["spark"].reconciliation["input_rows"], dataset.lines)
            if repeat == 0:
                lake_diff = compare_lakes(this["spark"].home, this["duckdb"].home, ARRIVAL_DATE)
                mismatch.update({k: (v, 0) for k, v in lake_diff.items() if v})
            if mismatch:
                raise SystemExit(
                    f"[{dataset.label}] Spark and the baseline disagree (spark, baseline): {mismatch}; "
                    f"outputs kept under {work_dir / 'runs' / dataset.label}")
            if not args.keep:
                for run in this.values():
                    shutil.rmtree(run.home.parent, ignore_errors=True)
        profile: list[dict[str, Any]] = []
        if args.profile:
            run_dir = work_dir / "runs" / dataset.label / "spark-profile"
            shutil.rmtree(run_dir, ignore_errors=True)
            conf, logs = profile_conf_dir(work_dir / "runs" / dataset.label / "spark-profile-conf")
            print(f"[{dataset.label}] profile run (Spark event log) ...", flush=True)
            run = measured_run("spark", dataset, run_dir, env, extra_env={"SPARK_CONF_DIR": str(conf)})
            actions = read_event_log(logs)
            outside = run.ingest_s - sum(step["seconds"] for step in actions)
            profile = [{"description": "Spark session start (JVM, before the ingestion call)",
                        "seconds": run.startup_s},
                       *actions,
                       {"description": "driver outside actions (planning, listing, Python)", "seconds": outside}]
            for step in profile:
                print(f"    {step['seconds']:7.2f} s  {step['description']}")
            print(f"    ingestion call {run.ingest_s:.2f} s, process {run.process_s:.2f} s")
            if not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
                shutil.rmtree(conf.parent, ignore_errors=True)
        results.append(SizeResult(dataset, spark_runs, baseline_runs, lake_diff, profile))

    # In the machine's record, so that runs with RECSYS_INGEST_PARSER=sql (or a machine without
    # a JDK, which falls back to it) are told apart from the default's.
    parsers = sorted({run.parser for result in results for run in result.spark if run.parser})
    hardware = {**hardware, "ingest_parser": "/".join(parsers) or None}
    records = build_records(results, command, hardware, when)
    merged = common.update_results(args.results, records)
    common.replace_section(args.docs, NAME, TITLE, render_section(merged))
    _print_table([r for r in merged if r["dataset"] in {d.label for d in datasets}])
    print(f"wrote {args.results} and the '{TITLE}' section of {args.docs}")
    return records


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Spark ingestion throughput and peak memory against a single-process DuckDB reader "
                    "doing the same validation, on generated logs.")
    parser.add_argument("--events", type=parse_count, action="append",
                        help="events (input lines) of the generated arrival day; repeatable "
                             "(1000000, 1M, 10M, 20k); default 1M")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side per size (median reported)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="generated logs (cached) and run outputs; default $RECSYS_HOME/bench/"
                             f"{NAME} or <tmp>/recsys-bench/{NAME}, never inside the repo")
    parser.add_argument("--keep", action="store_true", help="keep every run's lake and logs")
    parser.add_argument("--files", type=int, default=None,
                        help=f"files the day is split into (default: at most {MAX_LINES_PER_FILE:,} lines each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1,
                        help="processes generating files in parallel (default: all cores)")
    parser.add_argument("--baseline-threads", type=int, default=None,
                        help="DuckDB threads (default: DuckDB's, all cores)")
    parser.add_argument("--profile", action="store_true",
                        help="one more Spark run per size with Spark's event log on: time per action")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json",
                        help="results JSON (records of the measured sizes are replaced)")
    parser.add_argument("--docs", type=Path, default=common.DOCS_PATH,
                        help=f"markdown file whose '{TITLE}' section is rewritten")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        return _worker(argv[1:])
    args = build_parser().parse_args(argv)
    args.events = args.events or [1_000_000]
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    run_benchmark(args, common.command_line(MODULE, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
