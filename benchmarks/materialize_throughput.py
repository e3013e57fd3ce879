"""Materialization into Redis: Feast's standard route, the bulk route and the raw write floor.

In one run, against a private ``redis-server``, on a synthetic export of ``--users`` users (each
with a full ``--k``-item recent list and three counters, both user views) and ``--users // 100``
items:

* **standard**: ``features.materialize`` with ``feast_materialize_route=standard`` (Feast's
  ``write_to_online_store``), on ``--standard-users`` users (it is slow: the rate is the figure);
* **bulk (empty store)** and **bulk (store holding older rows)**: the bulk route into an empty
  Redis, then again after the export moved a day on (every row read, found older, rewritten:
  the nightly case);
* **floor**: the same encoded HSET commands the bulk route sends, written raw (pre-encoded,
  pipelined, one connection, replies read) into an empty Redis; only the writes are timed.

Each phase runs in a process of its own, so its peak RSS is its own; the routes are timed after a
warm-up run on the first users into another Redis database (imports and set-up not counted).
Rows are entity rows of the export (users + items); a user row fills two views.

    python -m benchmarks.materialize_throughput [--users 1000000] [--k 50] [--standard-users 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common

NAME = "materialize_throughput"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
CHUNK = 250_000  # users per generated row group
VOCABULARY = 50_000  # distinct items in the recent lists


def write_export(feature_dir: Path, n_users: int, k: int, day: int, seed: int = 7) -> None:
    """The Parquet files ``export_feature_data`` writes, synthetic and vectorised; ``day`` shifts
    every timestamp by that many days (a later night's export of the same users)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features import store as ops

    feature_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ts_type = pa.timestamp("us", tz="UTC")
    base_us = int((T0 + timedelta(days=day)).timestamp() * 1_000_000)
    vocabulary = pc.binary_join_element_wise(
        "i", pc.utf8_lpad(pa.array(np.arange(VOCABULARY)).cast(pa.string()), 6, "0"), "")

    def ids(prefix: str, lo: int, hi: int) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.utf8_lpad(pa.array(np.arange(lo, hi)).cast(pa.string()), 9, "0"), "")

    schema = None
    with_writer: Any = None
    for lo in range(0, n_users, CHUNK):
        hi = min(n_users, lo + CHUNK)
        m = hi - lo
        items = vocabulary.take(pa.array(rng.integers(0, VOCABULARY, m * k)))
        table = pa.table({
            "user_id": ids("u", lo, hi),
            "feature_date": pa.array([(T0 + timedelta(days=day)).date()] * m),
            "event_timestamp": pa.array(base_us + np.arange(lo, hi) * 1000, pa.int64()).cast(ts_type),
            "recent_item_ids": pa.ListArray.from_arrays(pa.array(np.arange(0, m * k + 1, k, dtype=np.int32)), items),
            "n_events_total": pa.array(rng.integers(k, 10 * k, m), pa.int64()),
            "n_sessions_total": pa.array(rng.integers(1, 100, m), pa.int64()),
            "n_purchases_total": pa.array(rng.integers(0, 20, m), pa.int64()),
        })
        if with_writer is None:
            schema = table.schema
            with_writer = pq.ParquetWriter(feature_dir / ops.USER_FEATURES_FILE, schema)
        with_writer.write_table(table)
    with_writer.close()
    n_items = max(1, n_users // 100)
    pq.write_table(pa.table({
        "item_id": ids("i", 0, n_items), "feature_date": pa.array([(T0 + timedelta(days=day)).date()] * n_items),
        "event_timestamp": pa.array(base_us + np.arange(n_items) * 1000, pa.int64()).cast(ts_type),
        **{name: pa.array(rng.integers(0, 1000, n_items), pa.int64())
           for name in ("n_events_1d", "n_events_7d", "n_users_7d")},
    }), feature_dir / ops.ITEM_FEATURES_FILE)
    pq.write_table(pa.table({  # the static item-attribute view: empty, it loads outside any interval
        "item_id": pa.array([], pa.string()), "event_timestamp": pa.array([], ts_type),
        "attribute_values": pa.array([], pa.list_(pa.string())), "n_attribute_values": pa.array([], pa.int64()),
    }), feature_dir / ops.ITEM_ATTRIBUTES_FILE)


def _settings(home: Path, redis_url: str, route: str) -> Any:
    from core.settings import Settings

    return Settings(home=home, feast_online_store="redis", redis_connection_string=redis_url,
                    feast_materialize_route=route)


def _window(day: int) -> tuple[datetime, datetime]:
    return T0 + timedelta(days=day - 1), T0 + timedelta(days=day + 1)


def phase(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement, in this process: its result as a dict (run by :func:`main` in a child)."""
    route = "standard" if args.phase == "standard" else "bulk"
    settings = _settings(args.home, args.redis, route)
    start, end = _window(args.day)
    if args.phase == "floor":
        return _floor(settings, args.project, start, end, args.batch_rows)
    # A first run over the first users, into another database of the same Redis, so that
    # neither route is timed paying its one-time imports and set-up.
    warm_end = T0 + timedelta(days=args.day, milliseconds=100)
    _materialize(_settings(args.home, f"{args.redis},db=1", route), args, start, warm_end)
    began, cpu = time.perf_counter(), _cpu_s()
    summary = _materialize(settings, args, start, end)
    seconds, cpu = time.perf_counter() - began, _cpu_s() - cpu
    rows = summary["user_activity"]["entities"] + summary["item_popularity"]["entities"]
    return {"seconds": seconds, "cpu_s": cpu, "rows": rows, "summary": summary}


def _materialize(settings: Any, args: argparse.Namespace, start: datetime, end: datetime) -> dict[str, Any]:
    """The route of ``settings`` over ``[start, end)``: its summary per view."""
    from features.materialize import materialize

    if settings.feast_materialize_route == "standard":
        return materialize(settings, start, end, project=args.project)["feature_views"]
    from features import store as ops
    from features.bulk_materialize import BulkMaterializeConfig, bulk_materialize

    store = ops.feature_store(settings, project=args.project, redis_batch=True)
    views = [view for view in store.list_feature_views() if view.ttl]  # as materialize does
    trusted_until = datetime.now(timezone.utc) + timedelta(hours=1)
    return bulk_materialize(store, views, start, end, trusted_until, BulkMaterializeConfig(batch_rows=args.batch_rows))


def _cpu_s() -> float:
    """CPU seconds of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _floor(settings: Any, project: str, start: datetime, end: datetime, batch_rows: int) -> dict[str, Any]:
    """The bulk route's HSETs for every row, encoded untimed, written raw and timed."""
    import numpy as np

    from features import redis_pipe
    from features import store as ops
    from features.bulk_commands import CommandEncoder
    from features.bulk_materialize import latest_row_indices, view_groups, winning_batches

    store = ops.feature_store(settings, project=project, redis_batch=True)
    client = store._get_provider().online_store._get_client(store.config.online_store)
    seconds, cpu, rows = 0.0, 0.0, 0
    with redis_pipe.PipelinedConnection(client) as connection:
        for group in view_groups([view for view in store.list_feature_views() if view.ttl]):
            _, winners = latest_row_indices(group.path, group.join_key, group.timestamp_field, start, end)
            encoder = CommandEncoder(store, group.views, group.join_key, group.timestamp_field, check=False)
            for batch in winning_batches(group.path, encoder.columns, winners, batch_rows, encoder.list_features):
                encoded = encoder.encode(batch)
                commands, replies = encoder.writes(encoded, [np.ones(encoded.size, bool)] * len(group.views))
                data = redis_pipe.packed(commands)
                began, began_cpu = time.perf_counter(), _cpu_s()
                connection.send(data, replies)
                connection.drain()
                seconds, cpu = seconds + time.perf_counter() - began, cpu + _cpu_s() - began_cpu
                rows += encoded.size
    return {"seconds": seconds, "cpu_s": cpu, "rows": rows}


def _redis_cpu_s(client: Any) -> float:
    cpu = client.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def _run_phase(name: str, args: argparse.Namespace, home: Path, project: str, day: int, work: Path,
               client: Any) -> dict[str, Any]:
    out = work / f"{name}.json"
    command = [sys.executable, "-m", "benchmarks.materialize_throughput", "--phase", name, "--home", str(home),
               "--project", project, "--redis", args.redis, "--day", str(day), "--batch-rows", str(args.batch_rows),
               "--phase-out", str(out)]
    if day == 0:  # a first night: the phase starts from an empty Redis
        client.flushall()
    redis_cpu = _redis_cpu_s(client)
    measured = common.run_measured(command, log_path=work / f"{name}.log")
    if measured.returncode != 0:
        raise RuntimeError(f"phase {name} failed: see {work / f'{name}.log'}")
    result = json.loads(out.read_text())
    # Redis's CPU over the whole child (its own start included: Redis idles through that).
    result["redis_cpu_s"] = _redis_cpu_s(client) - redis_cpu
    print(f"{name}: {result['rows']} rows in {result['seconds']:.2f} s = {result['rows'] / result['seconds']:,.0f} rows/s, "
          f"CPU/row: client {result['cpu_s'] / result['rows'] * 1e6:.1f} us, Redis {result['redis_cpu_s'] / result['rows'] * 1e6:.1f} us; "
          f"peak RSS {measured.peak_rss_bytes / common.MIB:,.0f} MiB", flush=True)
    return result | {"peak_rss_mib": measured.peak_rss_bytes / common.MIB}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.materialize_throughput")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--standard-users", type=int, default=20_000)
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json")
    for internal in ("--phase", "--home", "--project", "--redis", "--phase-out"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    parser.add_argument("--day", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        args.home = Path(args.home)
        Path(args.phase_out).write_text(json.dumps(phase(args)))
        return 0

    import redis

    from features.definitions import apply_feature_repo

    work = args.work_dir or common.default_work_dir(NAME)
    work.mkdir(parents=True, exist_ok=True)
    argv_list = list(argv if argv is not None else sys.argv[1:])
    command, date = common.command_line("benchmarks.materialize_throughput", argv_list), common.now_iso()
    hardware = common.hardware(packages=("feast", "redis", "pyarrow"))
    # Throughput on a shared machine says as much about its load as about the code.
    hardware["load_avg_1m_at_start"] = round(os.getloadavg()[0], 1)
    server, port = common.start_private_redis(work)
    url = args.redis = f"127.0.0.1:{port}"
    client = redis.Redis(host="127.0.0.1", port=port)
    project = f"recsys_bench_{uuid.uuid4().hex[:8]}"
    results: dict[str, dict[str, Any]] = {}
    try:
        for label, users in (("standard", args.standard_users), ("bulk", args.users)):
            home = work / label
            write_export(home / "feature_data", users, args.k, day=0)
            apply_feature_repo(_settings(home, url, "bulk"), project=project)
        results["standard"] = _run_phase("standard", args, work / "standard", project, 0, work, client)
        results["floor"] = _run_phase("floor", args, work / "bulk", project, 0, work, client)
        results["bulk_empty"] = _run_phase("bulk", args, work / "bulk", project, 0, work, client)
        redis_mib = client.info("memory")["used_memory"] / common.MIB
        write_export(work / "bulk" / "feature_data", args.users, args.k, day=1)  # the next night
        results["bulk_older"] = _run_phase("bulk", args, work / "bulk", project, 1, work, client)
    finally:
        common.stop_process(server)

    n_items = max(1, args.users // 100)
    labels = {
        "standard": (f"features.materialize route=standard (Feast write_to_online_store), {args.standard_users} users", "bulk_empty"),
        "floor": ("raw pipelined HSET of the bulk route's encoded rows (floor)", None),
        "bulk_empty": ("features.bulk_materialize, empty Redis", "floor"),
        "bulk_older": ("features.bulk_materialize, Redis holding every row a day older", "floor"),
    }
    dataset = f"{args.users} synthetic users (K={args.k} items each, 2 views) + {n_items} items"
    records = []

    def rec(metric: str, value: float, unit: str, model: str, baseline: str | None) -> None:
        records.append(common.record(metric, value, unit, dataset=dataset, model=model, baseline=baseline,
                                     command=command, hardware=hardware, date=date))

    for key, result in results.items():
        model, baseline_key = labels[key]
        baseline = labels[baseline_key][0] if baseline_key else None
        rate = result["rows"] / result["seconds"]
        rec("materialize_throughput", rate, "rows/s", model, baseline)
        rec("materialize_wall_s", result["seconds"], "s", model, baseline)
        rec("client_cpu_us_per_row", result["cpu_s"] / result["rows"] * 1e6, "us", model, None)
        rec("redis_cpu_us_per_row", result["redis_cpu_s"] / result["rows"] * 1e6, "us", model, None)
        if key != "floor":  # the floor's process also encodes: its RSS is not the write's
            rec("peak_rss_mib", result["peak_rss_mib"], "MiB", model, None)
        if baseline_key:
            floor_rate = results[baseline_key]["rows"] / results[baseline_key]["seconds"]
            rec("throughput_ratio", rate / floor_rate, "x", model, baseline)
    rec("redis_used_memory_mib", redis_mib, "MiB", "redis-server after the bulk load", None)
    return common.finish(NAME, args.results, records)


def section(records: Sequence[dict[str, Any]], _: Path) -> list[dict]:
    """docs/benchmarks.md's tables of these records (benchmarks.report_docs)."""
    from benchmarks.report_docs import caption, first_seen, fmt, table, text

    blocks = [text(caption(records))]
    for dataset in first_seen(r["dataset"] for r in records):
        values = common.by_key([r for r in records if r["dataset"] == dataset], "model")
        rows = [(model, fmt(v.get("materialize_throughput"), 0, True), fmt(v.get("materialize_wall_s"), 2),
                 fmt(v.get("client_cpu_us_per_row"), 1), fmt(v.get("redis_cpu_us_per_row"), 1),
                 fmt(v.get("peak_rss_mib"), 0, True), fmt(v.get("throughput_ratio"), 2))
                for (model,), v in values.items() if "materialize_throughput" in v]
        memory = [v["redis_used_memory_mib"] for v in values.values() if "redis_used_memory_mib" in v]
        blocks += [text(f"*{dataset}*" + (f"; Redis holds {memory[0]:,.0f} MiB after the load:" if memory else ":")),
                   table(["route", "rows/s", "wall s", "client CPU µs/row", "Redis CPU µs/row", "peak RSS MiB",
                          "x baseline"], rows, "lrrrrrr"),
                   text("x baseline: rows/s over the bulk route's on an empty Redis (standard), over the floor's (bulk).")]
    return blocks


if __name__ == "__main__":
    raise SystemExit(main())
