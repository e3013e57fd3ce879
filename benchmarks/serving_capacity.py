"""Serving capacity: the highest offered rate whose p99 stays within 20 ms, per catalog, store, workers.

For each catalog size (``--catalog``: 300 items, the ring-walk SASRec state of
``benchmarks.serving_load``; above ``RECSYS_ANN_MIN_CATALOG``, the synthetic catalog of
``benchmarks.serving_catalog`` served through its retrieval index), each online store and each
worker count, ``uvicorn serving.app:app --workers N`` is driven open-loop (``serving_load``'s
generator, in this process, on the same cores) at rising rates: doubling from ``--start-rate``
while a rate passes, then ``--steps`` bisections between the last rate that passed and the
first that failed. A rate passes when p99 (from each request's scheduled send time) is at most
``--p99-ms``, no request failed, and at least 95 % of the offered rate was achieved. The
capacity is the highest rate that passed (0 when even the lowest tried failed).

    python -m benchmarks.serving_capacity          # 300 and 1,000,000 items, SQLite and Redis, 1 and 2 workers
    python -m benchmarks.serving_capacity --catalog 300 --online-store redis --workers 2 --duration 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks import common
from benchmarks.serving_catalog import (ANN_MIN_CATALOG, ann_env, build_catalog_state, catalog_settings, health,
                                        wait_until_healthy)
from benchmarks.serving_load import build_state, open_loop, rematerialize, run_load, start_server

NAME = "serving_capacity"
MODULE = "benchmarks.serving_capacity"
SMALL_EPOCHS = 5  # the ring-walk SASRec of serving_load's state


def passes(load: dict[str, Any], p99_ms: float) -> bool:
    return load["p99"] <= p99_ms and load["errors"] == 0 and load["throughput"] >= 0.95 * load["rate"]


def search(probe: Callable[[float], dict[str, Any]], start: float, max_rate: float, steps: int,
           p99_ms: float) -> tuple[float, list[dict[str, Any]]]:
    """(highest passing rate, every probe): double while passing, halve while failing from the
    start, then bisect between the last pass and the first failure."""
    tried: list[dict[str, Any]] = []

    def run(rate: float) -> bool:
        load = probe(rate)
        tried.append(load)
        print(f"  {rate:7.1f} req/s: p99 {load['p99']:8.2f} ms, achieved {load['throughput']:7.1f}, "
              f"errors {load['errors']} -> {'pass' if passes(load, p99_ms) else 'fail'}", flush=True)
        return passes(load, p99_ms)

    good, bad, rate = 0.0, None, start
    if run(rate):
        good = rate
        while rate * 2 <= max_rate:
            rate *= 2
            if not run(rate):
                bad = rate
                break
            good = rate
    else:
        bad = rate
        while rate / 2 >= 1.0:
            rate /= 2
            if run(rate):
                good = rate
                break
            bad = rate
    for _ in range(steps if bad is not None and good > 0 else 0):
        middle = round((good + bad) / 2)
        if middle in (good, bad):
            break
        if run(middle):
            good = middle
        else:
            bad = middle
    return good, tried


def wait_workers_settled(server, workers: int, timeout_s: float = 900.0) -> None:
    """Every worker started and done loading (its CPU quiet): a worker still loading accepts no
    connection, and the load would all go to the first one."""
    import psutil

    root = psutil.Process(server.pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        processes = root.children() if workers > 1 else [root]
        if len(processes) >= workers and all(p.cpu_percent(interval=0.5) < 10.0 for p in processes):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{workers} workers did not settle within {timeout_s:g} s")


def measure(settings, users: list[str], workers: int, args, work: Path, label: str) -> dict[str, Any]:
    port = common.free_port()
    server = start_server(settings, port, work / f"uvicorn-{label}.log", workers=workers, env_extra=ann_env(settings))
    try:
        base_url = f"http://127.0.0.1:{port}"
        run_load(wait_until_healthy(base_url))
        wait_workers_settled(server, workers)
        retrieval = health(base_url).get("retrieval")
        run_load(open_loop(base_url, users, 20, 2, seed=99))  # warm-up, not reported
        print(f"{label}: {retrieval} retrieval", flush=True)
        capacity, tried = search(lambda rate: run_load(open_loop(base_url, users, rate, args.duration, seed=int(rate))),
                                 args.start_rate, args.max_rate, args.steps, args.p99_ms)
    finally:
        common.stop_process(server)
    at = next((t for t in tried if t["rate"] == capacity), None)
    return {"capacity": capacity, "p99_at_capacity": at["p99"] if at else None, "retrieval": retrieval,
            "probes": len(tried)}


def catalog_state(items: int, users: int, work_root: Path, ann_min_catalog: int):
    """(settings, user ids, work dir) of a catalog's state, built or reused under ``work_root``:
    below ``ann_min_catalog`` a SASRec trained on a ring walk, from it the synthetic catalog."""
    work = work_root / f"items-{items}"
    work.mkdir(parents=True, exist_ok=True)
    settings = catalog_settings(work, ann_min_catalog)
    if items < ann_min_catalog:
        return settings, build_state(settings, users, items, SMALL_EPOCHS), work
    return settings, build_catalog_state(settings, items, users, work), work


def to_records(rows: list[dict[str, Any]], args, command: str, hardware: dict, date_: str) -> list[dict]:
    records = []
    for row in rows:
        api = f"GET /recommendations (uvicorn, {row['workers']} worker{'s' if row['workers'] > 1 else ''}, " \
              f"{row['retrieval']} retrieval)"
        dataset = (f"capacity at p99 <= {args.p99_ms:g} ms, {row['items']} items, {row['store']} online store, "
                   f"{row['workers']} workers, {args.duration:g} s per rate")
        for metric, value, unit in (("capacity", row["capacity"], "req/s"),
                                    ("p99_at_capacity", row["p99_at_capacity"], "ms"),
                                    ("probes", row["probes"], "rates")):
            records.append(common.record(metric, value, unit, dataset=dataset, model=api, baseline=None,
                                         command=command, hardware=hardware, date=date_))
    return records


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.serving_catalog import NAME as CATALOG_NAME

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=int, action="append", help="items (repeatable; default 300 1000000)")
    parser.add_argument("--online-store", action="append", choices=("sqlite", "redis"), help="default both")
    parser.add_argument("--workers", type=int, action="append", help="uvicorn workers (default 1 2)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per probed rate")
    parser.add_argument("--start-rate", type=float, default=50.0)
    parser.add_argument("--max-rate", type=float, default=3200.0)
    parser.add_argument("--steps", type=int, default=3, help="bisections after the first failure")
    parser.add_argument("--p99-ms", type=float, default=20.0)
    parser.add_argument("--ann-min-catalog", type=int, default=ANN_MIN_CATALOG)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="catalog states, shared with serving_catalog (default: its work dir)")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json")
    args = parser.parse_args(argv)
    work_root = args.work_dir or common.default_work_dir(CATALOG_NAME)
    rows = []
    for items in args.catalog or [300, 1_000_000]:
        settings, users, work = catalog_state(items, args.users, work_root, args.ann_min_catalog)
        for store in args.online_store or ["sqlite", "redis"]:
            redis_process, served = None, settings
            if store == "redis":
                redis_process, port = common.start_private_redis(work)
                served = settings.replace(feast_online_store="redis", redis_connection_string=f"127.0.0.1:{port}")
                rematerialize(served)
            try:
                for workers in args.workers or [1, 2]:
                    label = f"{items}-{store}-{workers}w"
                    rows.append(measure(served, users, workers, args, work, label)
                                | {"items": items, "store": store, "workers": workers})
                    print(f"{label}: capacity {rows[-1]['capacity']:g} req/s", flush=True)
            finally:
                if redis_process is not None:
                    common.stop_process(redis_process)
    hardware = common.hardware(packages=("torch", "faiss-cpu", "feast", "fastapi", "uvicorn", "httpx"))
    records = to_records(rows, args, common.command_line(MODULE, argv), hardware, common.now_iso())
    return common.finish(NAME, args.results, records)


if __name__ == "__main__":
    raise SystemExit(main())
