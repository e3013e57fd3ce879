"""The whole nightly loop on one generated arrival day: wall, CPU and peak memory per stage.

    python -m benchmarks.big_night [--events 10M --users 1M --items 100k] [--train-minutes 10]
                                   [--standalone | --spark-master URL] [--dbt-target spark] [--redis]

The day comes from ``ingest.generator.generate_logs`` (cached in ``--work-dir``; its time is not
the night's): file ``k`` holds the events of the day ``k`` days before arrival (late events, so the
night has days to split into train / validation / test), every file over the same user and item ids.
In a fresh ``RECSYS_HOME``, the stages of ``dags/nightly_recsys.py`` then run in its order with its
default Params (``model=auto``, 20 epochs), each one ``pipeline.stages`` call in a child process
(``--stage``) whose summary reaches the next stage through a JSON file, as an XCom would. Per stage:
the process's wall seconds, its tree's CPU seconds and the peak of its tree's summed RSS (sampled
every 0.5 s; Spark's driver JVM is in the tree). A failed stage stops the night; the teardown
``write_nightly_report`` still runs. ``--train-minutes`` is the night's training budget, shared
by the models ``auto`` optimises (the stage's ``RECSYS_TRAIN_MAX_MINUTES`` is per model; 0: none).
``--standalone`` then runs the stages a Spark master takes (ingestion; dbt too with ``--dbt-target
spark``, though the stages after it read DuckDB only: docs/scale_out.md) again from the same raw
day on a local standalone master and worker (``RECSYS_SPARK_MASTER``); ``--redis`` puts the online
store on a private redis-server. Figures: ``benchmarks/results/big_night.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psutil

from benchmarks import common
from benchmarks.ingest_throughput import ARRIVAL_DATE, MAX_FILES, MAX_LINES_PER_FILE, parse_count

NAME = "big_night"
MODULE = "benchmarks.big_night"
# dags/nightly_recsys.py: its task order, and its teardown, which runs whatever happened before.
STAGES = ("ingest_events", "build_sessions", "check_quality", "materialize_features", "train_candidate",
          "evaluate_candidate", "promote_candidate")
TEARDOWN = "write_nightly_report"
DAG_MODEL, DAG_EPOCHS = "auto", 20  # the DAG's default Params "model" and "epochs"
MIN_FILES = 7  # event days enough for the protocol's train, validation and test windows
SAMPLE_S = 0.5
# The numbers of the stages' summaries (bools as 0/1) kept as records, and the table's units.
COUNTS = {**dict.fromkeys(("input_rows", "written_rows", "quarantined_rows", "duplicate_rows", "fct_sessions",
                           "user_sequences", "exported_rows"), "rows"), "passed": "1 = yes",
          "n_train_sequences": "sequences", "n_test_examples": "examples", "epochs_run": "epochs", "promote": "1 = yes"}


def _generate_file(scratch: str, index: int, events: int, users: int, items: int, seed: int) -> dict[str, Any]:
    """File ``index``: the day ``index`` days before arrival, over all ``users`` and ``items``."""
    from ingest.generator import generate_logs

    day, started = ARRIVAL_DATE - timedelta(days=index), time.perf_counter()
    summary = generate_logs(Path(scratch) / f"file-{index}", day, 1, n_users=users, n_items=items,
                            events_per_user_per_day=events / users, seed=seed + index, defect_rate=0.01)
    return {"index": index, "seconds": time.perf_counter() - started, **summary["days"][day.isoformat()]}


def generate_day(work_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The raw day's folder (cached by its parameters and the generator's code) and its summary."""
    from ingest import generator, synthetic_world

    files = args.files or min(MAX_FILES, max(MIN_FILES, math.ceil(args.events / MAX_LINES_PER_FILE)))
    code = hashlib.sha1(b"".join(Path(m.__file__).read_bytes() for m in (generator, synthetic_world)))
    folder = work_dir / "data" / (f"events-{args.events}-users-{args.users}-items-{args.items}-files-{files}"
                                  f"-seed-{args.seed}-gen-{code.hexdigest()[:10]}")
    if (folder / "summary.json").exists():
        return json.loads((folder / "summary.json").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    scratch, day_dir = folder / "scratch", folder / "raw" / ARRIVAL_DATE.isoformat()
    scratch.mkdir(parents=True)
    sizes = [args.events // files + (k < args.events % files) for k in range(files)]
    print(f"generating {args.events:,} events in {files} files ...", flush=True)
    started = time.perf_counter()
    # A fresh process per file: the generator holds a file's world and lines in memory.
    with ProcessPoolExecutor(max_workers=max(1, min(args.gen_workers, files)), mp_context=get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        parts = list(pool.map(_generate_file, [str(scratch)] * files, range(files), sizes, [args.users] * files,
                              [args.items] * files, [args.seed] * files))
    day_dir.mkdir(parents=True)
    for part in parts:
        os.replace(part.pop("path"), day_dir / f"events-{part['index']:05d}.jsonl.gz")
    shutil.rmtree(scratch)
    summary = {"raw_day": str(day_dir), "files": files, "generation_s": time.perf_counter() - started,
               **{key: sum(p[key] for p in parts) for key in ("lines", "events", "duplicate_lines")}}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _train(settings: Any, run_date: date, model: str, minutes: float, epochs: int) -> dict[str, Any]:
    """The DAG's train_candidate with ``minutes`` of optimisation shared by the models it trains
    (the stage's budget is per model: ``RECSYS_TRAIN_MAX_MINUTES``)."""
    from pipeline import stages
    from training.auto import AUTO, auto_model_names
    from training.objectives import objective_for

    names = auto_model_names(settings.auto_models) if model == AUTO else [model]
    optimised = [name for name in names if objective_for(name).name != "none"] or names
    per_model = minutes / len(optimised)
    summary = stages.train_candidate(settings, run_date, model, epochs, max_minutes=per_model)
    return summary | {"max_train_minutes_per_model": per_model}


def run_stage(args: argparse.Namespace) -> int:
    from core.settings import Settings
    from pipeline import stages

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings, run_date, state = Settings.from_env(), ARRIVAL_DATE, Path(args.state_dir)

    def prior(name: str) -> dict[str, Any]:
        return json.loads((state / f"{name}.json").read_text())

    calls: dict[str, Callable[[], dict[str, Any]]] = {
        "ingest_events": lambda: stages.ingest_events(settings, run_date),
        "build_sessions": lambda: stages.build_sessions(settings, run_date),
        "check_quality": lambda: stages.check_quality(settings, run_date),
        "materialize_features": lambda: stages.materialize_features(settings, run_date),
        "train_candidate": lambda: _train(settings, run_date, args.model, args.train_minutes, args.epochs),
        "evaluate_candidate": lambda: stages.evaluate_candidate(settings, run_date, prior("train_candidate")),
        "promote_candidate": lambda: stages.promote_candidate(settings, run_date, prior("evaluate_candidate")),
        TEARDOWN: lambda: stages.write_nightly_report(settings, run_date, run_id=f"{NAME}-{run_date}",
                                                      task_states=prior("task_states")),
    }
    summary = calls[args.stage]()
    (state / f"{args.stage}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


class TreeSampler:
    """Every ``SAMPLE_S``: the summed RSS of the process trees under ``pids`` (the peak is kept) and
    each process's CPU seconds (the last seen is kept, so a process that ends still counts)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._roots = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
        self._start: dict[tuple[int, float], float] = {}  # (pid, start time): CPU seconds
        self._last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_bytes = 0

    def _sample(self) -> None:
        total = 0
        for root in self._roots:
            with contextlib.suppress(psutil.Error):
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # ended between listing and reading
                        with process.oneshot():
                            total += process.memory_info().rss
                            times = process.cpu_times()
                            self._last[(process.pid, process.create_time())] = times.user + times.system
        self.peak_bytes = max(self.peak_bytes, total)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    @property
    def cpu_s(self) -> float:
        return sum(value - self._start.get(key, 0.0) for key, value in self._last.items())

    def __enter__(self) -> "TreeSampler":
        self._sample()
        self._start = dict(self._last)  # long-lived daemons (a cluster) count from here
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_stage(name: str, args: argparse.Namespace, env: dict[str, str], state: Path,
                  cluster_pids: Sequence[int]) -> dict[str, Any]:
    command = [sys.executable, "-m", MODULE, "--stage", name, "--state-dir", str(state),
               "--train-minutes", str(args.train_minutes), "--epochs", str(args.epochs), "--model", args.model]
    kernel_cpu = _cpu_of_children()
    with open(state / f"{name}.log", "wb") as log:
        started = time.perf_counter()
        # Its own process group: whatever the stage leaves running (a JVM) is stopped with it.
        child = subprocess.Popen(command, env=env, cwd=common.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            with TreeSampler([child.pid]) as tree, TreeSampler(cluster_pids) as cluster:
                returncode = child.wait()
            wall = time.perf_counter() - started
        finally:
            _signal_group(child.pid, signal.SIGKILL)
    # The kernel's account covers the reaped processes exactly; the samples catch the JVM, which
    # its Python parent does not reap.
    cpu = max(_cpu_of_children() - kernel_cpu, tree.cpu_s)
    summary = json.loads((state / f"{name}.json").read_text()) if returncode == 0 else {}
    return {"stage": name, "ok": returncode == 0, "wall_s": wall, "cpu_s": cpu,
            "peak_rss_mib": tree.peak_bytes / common.MIB, "cluster_cpu_s": cluster.cpu_s,
            "cluster_peak_rss_mib": cluster.peak_bytes / common.MIB, "counts": key_counts(summary)}


def key_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a stage's summary that say how much it did (``COUNTS``; dicts summed)."""
    flat = {**summary, **summary.get("rows", {})} if isinstance(summary.get("rows"), dict) else summary
    return {key: sum(flat[key].values()) if isinstance(flat[key], dict) else flat[key]
            for key in COUNTS if isinstance(flat.get(key), (int, float, dict))}


def run_night(label: str, args: argparse.Namespace, env: dict[str, str], run_dir: Path, raw_day: Path,
              cluster_pids: Sequence[int] = (), stages: Sequence[str] = (*STAGES, TEARDOWN)) -> dict[str, Any]:
    """The night (or its first ``stages``) in a fresh home under ``run_dir``: its stage rows and
    end-to-end wall time."""
    shutil.rmtree(run_dir, ignore_errors=True)
    home, state = run_dir / "home", run_dir / "stages"
    state.mkdir(parents=True)
    # Hard links (same file system): no copy, and the night never writes to the cached day.
    shutil.copytree(raw_day, home / "raw" / raw_day.name, copy_function=os.link)
    env = {**env, "RECSYS_HOME": str(home)}
    rows, states, started = [], {}, time.perf_counter()
    for name in stages:
        if name != TEARDOWN and "failed" in states.values():
            states[name] = "upstream_failed"
            continue
        if name == TEARDOWN:
            (state / "task_states.json").write_text(json.dumps(states))
        print(f"[{label}] {name} ...", flush=True)
        row = measure_stage(name, args, env, state, cluster_pids)
        states[name] = "success" if row["ok"] else "failed"
        print(f"[{label}] {name}: {'ok' if row['ok'] else 'FAILED, log ' + str(state / (name + '.log'))}, "
              f"{row['wall_s']:.1f} s, {row['peak_rss_mib']:,.0f} MiB {row['counts']}", flush=True)
        rows.append(row)
    return {"label": label, "rows": rows, "night_s": time.perf_counter() - started, "states": states,
            "whole": tuple(stages) == (*STAGES, TEARDOWN),
            "spark_master": env["RECSYS_SPARK_MASTER"], "dbt_target": env["RECSYS_DBT_TARGET"]}


@contextlib.contextmanager
def standalone_cluster(work: Path, memory: str) -> Iterator[tuple[str, list[int]]]:
    """A Spark standalone master and one worker with every core, from pip pyspark's spark-class."""
    spark_class = shutil.which("spark-class", path=str(Path(sys.executable).parent)) or shutil.which("spark-class")
    if spark_class is None:
        raise SystemExit("spark-class not found (pip pyspark installs it next to python)")
    work.mkdir(parents=True, exist_ok=True)
    port, master_ui, worker_ui = common.free_port(), common.free_port(), common.free_port()
    url = f"spark://127.0.0.1:{port}"
    # spark-class looks for pyspark with the python on PATH, which need not be this one: name it.
    spark_home = importlib.util.find_spec("pyspark").submodule_search_locations[0]
    env = dict(os.environ, SPARK_HOME=spark_home, SPARK_LOG_DIR=str(work), SPARK_WORKER_DIR=str(work / "worker"),
               SPARK_LOCAL_IP="127.0.0.1", SPARK_DAEMON_MEMORY="512m")
    daemons = {"master": ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                          "--webui-port", str(master_ui)],
               "worker": ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores",
                          str(os.cpu_count() or 1), "--memory", memory, "--webui-port", str(worker_ui),
                          "--work-dir", str(work / "worker")]}
    procs: list[subprocess.Popen] = []
    try:
        for name, daemon_args in daemons.items():
            with open(work / f"{name}.log", "wb") as log:
                procs.append(subprocess.Popen([spark_class, *daemon_args], env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"http://127.0.0.1:{master_ui}/json/", timeout=5) as response:
                    if json.load(response).get("aliveworkers", 0) >= 1:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standalone cluster did not start: see {work}/master.log, worker.log")
            time.sleep(1)
        yield url, [proc.pid for proc in procs]
    finally:
        for proc in reversed(procs):  # the worker's executors are in its process group
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()


def build_records(nights: Sequence[dict[str, Any]], generated: dict[str, Any], args: argparse.Namespace,
                  command: str, when: str) -> list[dict[str, Any]]:
    dataset = (f"generated day: {args.events} events, {args.users} users, {args.items} items; "
               f"model={args.model}, {args.train_minutes:g} training minutes")
    records: list[dict[str, Any]] = []
    hardware = common.hardware(packages=("pyspark", "dbt-core", "feast", "torch"))
    local = nights[0]["label"]

    def add(metric: str, value: Any, unit: str, model: str, baseline: str | None, machine: dict) -> None:
        records.append(common.record(metric, value, unit, dataset=dataset, model=model, baseline=baseline,
                                     command=command, hardware=machine, date=when))

    for night in nights:
        is_local = night["label"] == local
        suffix = "" if is_local else f" ({night['label']})"
        machine = {**hardware, "spark_master": night["spark_master"], "dbt_target": night["dbt_target"],
                   "online_store": "redis" if args.redis else "sqlite", "train_minutes": args.train_minutes,
                   "model_param": args.model}
        for row in night["rows"]:
            model, base = row["stage"] + suffix, None if is_local else row["stage"]
            add("ok", int(row["ok"]), "1 = succeeded", model, base, machine)
            for metric in ("wall_s", "cpu_s", "peak_rss_mib", *(("cluster_cpu_s", "cluster_peak_rss_mib")
                                                               if row["cluster_peak_rss_mib"] else ())):
                add(metric, row[metric], "MiB" if metric.endswith("mib") else "s", model, base, machine)
            for key, value in row["counts"].items():
                add(key, int(value) if isinstance(value, bool) else value, COUNTS[key], model, base, machine)
        if not night["whole"]:
            continue
        add("wall_s", night["night_s"], "s", "night" + suffix, None if is_local else "night", machine)
        add("ok", int(set(night["states"].values()) == {"success"}), "1 = succeeded", "night" + suffix,
            None if is_local else "night", machine)
    add("wall_s", generated["generation_s"], "s", "generator (not in the night)", None, hardware)
    add("input_lines", generated["lines"], "lines", "generator (not in the night)", None, hardware)
    return records


def section(records: Sequence[dict[str, Any]], _: Path) -> list[dict]:
    """docs/benchmarks.md's table of these records (benchmarks.report_docs)."""
    from benchmarks.report_docs import caption, first_seen, fmt, table, text

    blocks = [text(caption(records))]
    for dataset in first_seen(r["dataset"] for r in records):
        values = common.by_key([r for r in records if r["dataset"] == dataset], "model")
        baselines = {r["model"]: r["baseline"] for r in records if r["dataset"] == dataset}
        rows = []
        for (model,), v in values.items():
            base = values.get((baselines.get(model),), {})
            wall, done = v.get("wall_s"), v.get("ok")
            ratio = wall / base["wall_s"] if base.get("wall_s") and wall else None
            counts = ", ".join(f"{k} {fmt(v[k], 0, True)}" for k in COUNTS if k in v)
            rows.append((model, fmt(wall, 1, True), fmt(v.get("cpu_s"), 1, True), fmt(v.get("peak_rss_mib"), 0, True),
                         fmt(v.get("cluster_peak_rss_mib"), 0, True), fmt(ratio, 2),
                         "" if done is None else "yes" if done else "FAILED", counts))
        blocks += [text(f"*{dataset}*:"),
                   table(["stage", "wall s", "CPU s", "peak RSS MiB", "cluster RSS MiB", "x local wall", "ok",
                          "counts"], rows, "lrrrrrll"),
                   text("Peak RSS: the stage's process tree (its Spark driver JVM included); cluster RSS: the "
                        "standalone master, worker and executors during the stage.")]
    return blocks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--events", type=parse_count, default=10_000_000, help="events of the day (10M, 20k)")
    add("--users", type=parse_count, default=1_000_000)
    add("--items", type=parse_count, default=100_000)
    add("--files", type=int, default=None, help=f"event days in the arrival day (1..{MAX_FILES})")
    add("--seed", type=int, default=0)
    add("--gen-workers", type=int, default=os.cpu_count() or 1)
    add("--train-minutes", type=float, default=10.0,
        help="optimisation budget of train_candidate, shared by auto's models; 0: no cap (the DAG's stage)")
    add("--epochs", type=int, default=DAG_EPOCHS, help="the DAG's epochs Param")
    add("--model", default=DAG_MODEL, help="the DAG's model Param (auto trains RECSYS_AUTO_MODELS)")
    add("--spark-master", default=None, help="run the night on this master (RECSYS_SPARK_MASTER)")
    add("--standalone", action="store_true", help="then the Spark stages again on a local standalone master + worker")
    add("--worker-memory", default="4g", help="the standalone worker's and its executor's memory")
    add("--dbt-target", choices=("duckdb", "spark"), default="duckdb", help="RECSYS_DBT_TARGET on a Spark master")
    add("--redis", action="store_true", help="online store on a private redis-server")
    add("--work-dir", type=Path, default=None)
    add("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json")
    add("--stage", choices=(*STAGES, TEARDOWN), help=argparse.SUPPRESS)
    add("--state-dir", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.stage:
        return run_stage(args)
    if args.standalone and args.spark_master:
        raise SystemExit("--standalone starts its own master: leave out --spark-master")
    if args.files is not None and not 1 <= args.files <= MAX_FILES:
        raise SystemExit(f"--files must be in 1..{MAX_FILES} (late events must stay within the age bound)")

    from core.settings import Settings

    work = (args.work_dir or common.default_work_dir(NAME)).resolve()
    if work.is_relative_to(common.REPO_ROOT):
        raise SystemExit(f"--work-dir {work} is inside the repository; choose a folder outside it")
    command, when = common.command_line(MODULE, argv), common.now_iso()
    generated = generate_day(work, args)
    print(f"work dir {work}; {generated['lines']:,} lines in {generated['files']} files, "
          f"generated in {generated['generation_s']:.1f} s (not in the night)", flush=True)
    # A fresh registry and online store under each night's home, never a shared server's.
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "RECSYS_FEAST_ONLINE_STORE": "sqlite",
           "RECSYS_SPARK_MASTER": args.spark_master or Settings.from_env().spark_master,
           "RECSYS_DBT_TARGET": args.dbt_target if args.spark_master else "duckdb"}
    raw_day, nights = Path(generated["raw_day"]), []
    with contextlib.ExitStack() as stack:
        if args.redis:
            server, port = common.start_private_redis(work)
            stack.callback(common.stop_process, server)
            env.update(RECSYS_FEAST_ONLINE_STORE="redis", RECSYS_REDIS_CONNECTION_STRING=f"127.0.0.1:{port}")
        label = "spark-master" if args.spark_master else "local"
        nights.append(run_night(label, args, env, work / "runs" / label, raw_day))
        if args.standalone:
            if args.redis:  # the second night starts from an empty online store too
                __import__("redis").Redis(host="127.0.0.1", port=port).flushall()
            url, pids = stack.enter_context(standalone_cluster(work / "cluster", args.worker_memory))
            cluster_env = {**env, "RECSYS_SPARK_MASTER": url, "RECSYS_DBT_TARGET": args.dbt_target,
                           "SPARK_EXECUTOR_MEMORY": args.worker_memory}
            # Only the stages the master runs: the others do the same work in the same process.
            on_cluster = ("ingest_events", "build_sessions") if args.dbt_target == "spark" else ("ingest_events",)
            nights.append(run_night("standalone", args, cluster_env, work / "runs" / "standalone", raw_day, pids,
                                    on_cluster))
    records = build_records(nights, generated, args, command, when)
    common.finish(NAME, args.results, records, key=("dataset", "model"))
    failed = [f"{n['label']}: {s}" for n in nights for s, state in n["states"].items() if state == "failed"]
    if failed:
        print("failed stages: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
