"""Ingestion throughput: the Spark job against a floor measured in the same run.

    python -m benchmarks.ingest_throughput --events 1000000 [--events 10000000] [--repeat 1]
                                           [--work-dir DIR] [--keep]

For every size, one arrival day of logs from ``ingest.generator.generate_logs`` (cached in the work
dir by size, files, seed and generator version): files of at most 1M lines, file ``k`` being the
day ``k`` days before arrival (late events inside the 30-day window), each with the generator's
defects (1 % malformed, 1 % re-sent duplicates). Then, alternating which goes first, each in a
fresh process whose wall time and process-tree peak RSS are measured from outside:

* ``spark-ingest``: ``ingest.ingest_day.ingest_arrival_day`` on ``RECSYS_SPARK_MASTER`` (default
  ``local[*]``; a ``spark://`` cluster needs the work dir on shared storage);
* ``duckdb-read-write-floor`` ("floor: read+write only"): DuckDB reading the same gzip lines as
  text and writing them to Parquet, no validation or dedup: what any ingestion pays at least.

Both must read every generated line. Figures go to ``benchmarks/results/ingest_throughput.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common

NAME = "ingest_throughput"
MODULE = "benchmarks.ingest_throughput"
SPARK = "spark-ingest"
BASELINE = "duckdb-baseline"  # the rule-for-rule DuckDB copy earlier records were compared with
FLOOR = "duckdb-read-write-floor"  # the read+write floor that replaced it
FLOOR_NAME = "floor: read+write only"
GENERATOR = "generator"
ARRIVAL_DATE = date(2026, 11, 20)
MAX_LINES_PER_FILE = 1_000_000
LINES_PER_USER = 3.008  # the generator's lines per user-day at 3 events per user-day and 1 % defects
MAX_FILES = 25  # late events must stay inside the too-old bound (30 days by default)


def parse_count(text: str) -> int:
    """``1000000``, ``1_000_000``, ``1M``, ``20k``, ``10m`` -> int."""
    cleaned = text.strip().replace("_", "").replace(",", "").lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(cleaned[-1:], 1)
    try:
        value = float(cleaned[:-1] if factor > 1 else cleaned) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event count: {text!r}") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a positive whole number of events: {text!r}")
    return int(value)


def dataset_label(events: int) -> str:
    for factor, suffix in ((1_000_000, "M"), (1_000, "k")):
        if events >= factor and events % (factor // 10) == 0:
            return f"generated-{events / factor:g}{suffix}"
    return f"generated-{events}"


@dataclass(frozen=True)
class Dataset:
    label: str
    files: int
    folder: Path
    summary: dict[str, Any]

    @property
    def raw_day(self) -> Path:
        return self.folder / "raw" / ARRIVAL_DATE.isoformat()

    @property
    def lines(self) -> int:
        return int(self.summary["lines"])


def _generate_file(scratch: str, index: int, lines: int, seed: int) -> dict[str, Any]:
    """One file of the day: ``generate_logs`` for the day ``index`` days before arrival."""
    from ingest.generator import generate_logs

    day, started = ARRIVAL_DATE - timedelta(days=index), time.perf_counter()
    summary = generate_logs(Path(scratch) / f"file-{index}", day, 1, n_users=max(1, round(lines / LINES_PER_USER)),
                            n_items=5_000, events_per_user_per_day=3.0, seed=seed + index, defect_rate=0.01)
    return {"index": index, "event_date": day.isoformat(), "seconds": time.perf_counter() - started,
            "n_users": summary["n_users"], **summary["days"][day.isoformat()]}


def prepare_dataset(work_dir: Path, events: int, files: int | None, seed: int, workers: int, log=print) -> Dataset:
    from ingest import generator, synthetic_world

    files = files or max(1, math.ceil(events / MAX_LINES_PER_FILE))
    if not 1 <= files <= MAX_FILES:
        raise ValueError(f"--files must be in 1..{MAX_FILES} (late events must stay within the age bound)")
    version = hashlib.sha1(b"".join(Path(m.__file__).read_bytes() for m in (generator, synthetic_world)))
    folder = work_dir / "data" / f"events-{events}-files-{files}-seed-{seed}-gen-{version.hexdigest()[:10]}"
    summary_path, label = folder / "summary.json", dataset_label(events)
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        log(f"[{label}] generated logs cached in {folder} ({summary['lines']:,} lines)")
        return Dataset(label, files, folder, summary)
    shutil.rmtree(folder, ignore_errors=True)
    scratch, day_folder = folder / "scratch", folder / "raw" / ARRIVAL_DATE.isoformat()
    scratch.mkdir(parents=True)
    base, extra = divmod(events, files)
    sizes = [base + (1 if k < extra else 0) for k in range(files)]
    workers = max(1, min(workers, files))
    log(f"[{label}] generating {events:,} events in {files} file(s) with {workers} worker process(es) ...")
    started = time.perf_counter()
    # A fresh process per file: the generator holds a file's lines in memory.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        parts = list(pool.map(_generate_file, [str(scratch)] * files, range(files), sizes, [seed] * files))
    generation_s = time.perf_counter() - started
    day_folder.mkdir(parents=True)
    for part in parts:
        os.replace(part.pop("path"), day_folder / f"events-{part['index']:05d}.jsonl.gz")
    shutil.rmtree(scratch)
    summary = {"target_events": events, "files": files, "seed": seed, "arrival_date": ARRIVAL_DATE.isoformat(),
               **{k: sum(p[k] for p in parts) for k in ("lines", "events", "duplicate_lines", "quarantined_lines")},
               "bytes": sum(path.stat().st_size for path in day_folder.iterdir()), "generation_s": generation_s,
               "generation_workers": workers, "generation_cpu_s": sum(p["seconds"] for p in parts), "parts": parts}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    log(f"[{label}] generated {summary['lines']:,} lines in {generation_s:.1f} s")
    return Dataset(label, files, folder, summary)


def floor_ingest(home: Path, arrival_date: date, threads: int | None = None) -> dict[str, Any]:
    """Every line of the day's raw files (the job's selection) as text into one Parquet file; the row counts."""
    import duckdb

    files = sorted(str(path) for path in (home / "raw" / arrival_date.isoformat()).iterdir()
                   if path.is_file() and not path.name.startswith((".", "_"))
                   and path.name.endswith((".jsonl", ".jsonl.gz")) and path.stat().st_size > 0)
    target = home / "floor" / "lines.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("COPY (SELECT coalesce(line, '') AS line, filename FROM read_csv(?, columns = {'line': 'VARCHAR'}, "
                "delim = chr(1), quote = '', escape = '', header = false, auto_detect = false, filename = true)) "
                f"TO '{target}' (FORMAT parquet)", [files])
    rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(target)]).fetchone()[0]
    con.close()
    return {"input_rows": rows, "written_rows": rows}


def _worker(argv: Sequence[str]) -> int:
    """One measured run in this fresh process: ``_worker spark|floor --home H --date D --out F``."""
    parser = argparse.ArgumentParser(prog=f"{MODULE} _worker")
    parser.add_argument("kind", choices=("spark", "floor"))
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--date", type=date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {"startup_s": 0.0}
    if args.kind == "spark":
        from core.settings import Settings
        from ingest.ingest_day import ingest_arrival_day
        from ingest.line_parser import register
        from ingest.spark import spark_session

        settings = Settings.from_env().with_home(args.home)
        imported = time.perf_counter()
        spark = spark_session(settings)
        spark.sparkContext.setLogLevel("ERROR")
        result["parser"] = register(spark, settings)  # the figures depend on the line parser ("jvm" or "sql")
        session_started = time.perf_counter()
        try:
            result["reconciliation"] = ingest_arrival_day(settings, args.date, spark=spark)
            done = time.perf_counter()
        finally:
            spark.stop()
        result["startup_s"] = session_started - imported
    else:
        import duckdb  # noqa: F401 - imported before the clock starts, like pyspark above

        imported = session_started = time.perf_counter()
        result["reconciliation"] = floor_ingest(args.home, args.date, args.threads)
        done = time.perf_counter()
    result["import_s"], result["ingest_s"] = imported - started, done - session_started
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


@dataclass
class Run:
    model: str
    ingest_s: float  # the ingestion call alone (Spark session already started)
    process_s: float  # the whole fresh process, interpreter and JVM start included
    startup_s: float  # Spark session start (JVM); 0 for the floor
    peak_rss_bytes: int
    reconciliation: dict[str, Any]
    home: Path = field(repr=False)
    parser: str | None = None  # the Spark job's line parser; None for the floor


def measured_run(kind: str, dataset: Dataset, run_dir: Path, env: dict[str, str], threads: int | None = None) -> Run:
    shutil.rmtree(run_dir, ignore_errors=True)
    home = run_dir / "home"
    (home / "raw" / ARRIVAL_DATE.isoformat()).mkdir(parents=True)
    for source in sorted(dataset.raw_day.iterdir()):  # hard links: no copy, no shared state
        try:
            os.link(source, home / "raw" / ARRIVAL_DATE.isoformat() / source.name)
        except OSError:
            shutil.copy2(source, home / "raw" / ARRIVAL_DATE.isoformat() / source.name)
    out, log = run_dir / "result.json", run_dir / "worker.log"
    command = [sys.executable, "-m", MODULE, "_worker", kind, "--home", str(home),
               "--date", ARRIVAL_DATE.isoformat(), "--out", str(out)]
    command += ["--threads", str(threads)] if threads else []
    measured = common.run_measured(command, env={**env, "RECSYS_HOME": str(home)}, cwd=common.REPO_ROOT,
                                   log_path=log)
    if measured.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise RuntimeError(f"{kind} run failed (exit {measured.returncode}); log {log}:\n{tail}")
    result = json.loads(out.read_text())
    return Run(model=SPARK if kind == "spark" else FLOOR, ingest_s=result["ingest_s"], process_s=measured.wall_s,
               startup_s=result["startup_s"], peak_rss_bytes=measured.peak_rss_bytes,
               reconciliation=result["reconciliation"], home=home, parser=result.get("parser"))


def build_records(results: Sequence[tuple[Dataset, dict[str, list[Run]]]], command: str, hardware: dict[str, Any],
                  when: str) -> list[dict]:
    records: list[dict[str, Any]] = []

    def add(metric: str, value: Any, unit: str, dataset: str, model: str, baseline: str | None = FLOOR_NAME):
        records.append(common.record(metric, value, unit, dataset=dataset, model=model, baseline=baseline,
                                     command=command, hardware=hardware, date=when))

    for d, runs_of in results:
        per_model = {}
        for model, runs in runs_of.items():
            ingest_s = common.median([r.ingest_s for r in runs])
            process_s = common.median([r.process_s for r in runs])
            peak = common.median([r.peak_rss_bytes for r in runs]) / common.MIB
            per_model[model] = (ingest_s, process_s, peak)
            add("throughput", d.lines / ingest_s, "events/s", d.label, model)
            add("wall_time", ingest_s, "s", d.label, model)
            add("process_wall_time", process_s, "s", d.label, model)
            add("throughput_end_to_end", d.lines / process_s, "events/s", d.label, model)
            add("peak_rss", peak, "MiB", d.label, model)
            if model == SPARK:
                add("startup_time", common.median([r.startup_s for r in runs]), "s", d.label, model)
            add("repeats", len(runs), "runs", d.label, model)
            reconciliation = runs[0].reconciliation
            for key in ("input_rows", "written_rows", "quarantined_rows", "duplicate_rows"):
                if key in reconciliation:
                    add(key, reconciliation[key], "rows", d.label, model)
        spark, base = per_model[SPARK], per_model[FLOOR]
        add("ratio_vs_baseline", spark[0] / base[0], "x (wall time / baseline wall time)", d.label, SPARK)
        add("ratio_vs_baseline_end_to_end", spark[1] / base[1], "x (process time / baseline process time)",
            d.label, SPARK)
        add("peak_rss_ratio_vs_baseline", spark[2] / base[2], "x (peak RSS / baseline peak RSS)", d.label, SPARK)
        add("input_files", d.files, "files", d.label, GENERATOR, None)
        add("input_bytes", d.summary["bytes"] / common.MIB, "MiB (gzip)", d.label, GENERATOR, None)
        add("wall_time", d.summary["generation_s"], "s", d.label, GENERATOR, None)
        add("worker_processes", d.summary["generation_workers"], "processes", d.label, GENERATOR, None)
        add("throughput", d.lines / d.summary["generation_s"], "events/s", d.label, GENERATOR, None)
        add("cpu_throughput", d.lines / d.summary["generation_cpu_s"], "events/s per process", d.label,
            GENERATOR, None)
    return records


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

    results = []
    datasets = [prepare_dataset(work_dir, n, args.files, args.seed, args.gen_workers) for n in args.events]
    for index, dataset in enumerate(datasets):
        runs: dict[str, list[Run]] = {SPARK: [], FLOOR: []}
        for repeat in range(args.repeat):
            # Alternate which goes first, so that a drifting machine does not favour one side.
            order = ("spark", "floor") if (index + repeat) % 2 == 0 else ("floor", "spark")
            for kind in order:
                print(f"[{dataset.label}] repeat {repeat + 1}/{args.repeat}: {kind} ...", flush=True)
                run = measured_run(kind, dataset, work_dir / "runs" / dataset.label / f"{kind}-{repeat}", env,
                                   threads=args.baseline_threads if kind == "floor" else None)
                print(f"    {run.ingest_s:.1f} s ingest, {run.process_s:.1f} s process, "
                      f"{run.peak_rss_bytes / common.MIB:,.0f} MiB peak, {run.reconciliation['input_rows']:,} "
                      f"lines", flush=True)
                if run.reconciliation["input_rows"] != dataset.lines:
                    raise SystemExit(f"[{dataset.label}] {kind} read {run.reconciliation['input_rows']:,} lines "
                                     f"of {dataset.lines:,}; outputs kept under {run.home}")
                runs[run.model].append(run)
                if not args.keep:
                    shutil.rmtree(run.home.parent, ignore_errors=True)
        results.append((dataset, runs))

    # In the machine's record, so that runs with RECSYS_INGEST_PARSER=sql (or a machine without
    # a JDK, which falls back to it) are told apart from the default's.
    parsers = sorted({run.parser for _, runs in results for run in runs[SPARK] if run.parser})
    hardware = {**hardware, "ingest_parser": "/".join(parsers) or None}
    records = build_records(results, command, hardware, when)
    common.finish(NAME, args.results, records)
    return records


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=parse_count, action="append",
                        help="input lines of the generated day; repeatable (1000000, 1M, 20k); default 1M")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side per size (median reported)")
    parser.add_argument("--work-dir", type=Path, default=None, help="generated logs (cached) and run outputs")
    parser.add_argument("--keep", action="store_true", help="keep every run's lake and logs")
    parser.add_argument("--files", type=int, default=None, help="files the day is split into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1,
                        help="processes generating files in parallel (default: all cores)")
    parser.add_argument("--baseline-threads", type=int, default=None,
                        help="DuckDB threads of the floor (default: DuckDB's, all cores)")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json")
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
