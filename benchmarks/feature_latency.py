"""Online feature read latency (Feast vs. a direct read of the same keys) and materialization.

Per online store (SQLite; Redis when one answers at ``--redis``): a synthetic ``user_features``
export is applied and materialized (rows/s), then reads of the ``recommendation_features`` service
for 1 and 100 users are timed through ``read_user_features`` (``feast get_online_features``),
``UserFeatureReader`` (``feast online_read``, and ``online_read_async`` on Redis: the API's path)
and the floor ``direct``: the same keys without Feast (``sqlite3`` ``SELECT ... IN`` or one Redis
``HMGET`` pipeline), values decoded from Feast's ValueProto.

    python -m benchmarks.feature_latency [--users 10000] [--k 50] [--iterations 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks import common

NAME = "feature_latency"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _redis_answers(address: str) -> bool:
    host, _, port = address.partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def write_export(settings: Any, n_users: int, k: int) -> int:
    """The Parquet files export_feature_data would write, synthetic; returns user rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features import store as ops

    settings.feature_data_dir.mkdir(parents=True, exist_ok=True)
    ts_type = pa.timestamp("us", tz="UTC")
    users = pa.table({
        "user_id": [f"u{i:07d}" for i in range(n_users)],
        "feature_date": [T0.date()] * n_users,
        "event_timestamp": pa.array([T0 + timedelta(seconds=i) for i in range(n_users)], ts_type),
        "recent_item_ids": [[f"i{(i * 7 + j) % 5000:05d}" for j in range(k)] for i in range(n_users)],
        "n_events_total": pa.array([k + i % 100 for i in range(n_users)], pa.int64()),
        "n_sessions_total": pa.array([1 + i % 10 for i in range(n_users)], pa.int64()),
        "n_purchases_total": pa.array([i % 3 for i in range(n_users)], pa.int64()),
    })
    pq.write_table(users, settings.feature_data_dir / ops.USER_FEATURES_FILE)
    items = pa.table({
        "item_id": ["i00000"], "feature_date": [T0.date()],
        "event_timestamp": pa.array([T0], ts_type),
        "n_events_1d": pa.array([1], pa.int64()), "n_events_7d": pa.array([1], pa.int64()),
        "n_users_7d": pa.array([1], pa.int64()),
    })
    pq.write_table(items, settings.feature_data_dir / ops.ITEM_FEATURES_FILE)
    # No item side information: materialization reads every view's file, even an empty one.
    attributes = pa.table({
        "item_id": pa.array([], pa.string()), "event_timestamp": pa.array([], ts_type),
        "attribute_values": pa.array([], pa.list_(pa.string())),
        "n_attribute_values": pa.array([], pa.int64()),
    })
    pq.write_table(attributes, settings.feature_data_dir / ops.ITEM_ATTRIBUTES_FILE)
    return n_users


def _timed(fn: Callable[[], Any], iterations: int) -> list[float]:
    for _ in range(min(50, iterations)):
        fn()  # warm caches (registry, connections)
    out: list[float] = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def _timed_async(loop: Any, make: Callable[[], Any], iterations: int) -> list[float]:
    """:func:`_timed` for a coroutine factory on ``loop`` (one loop: the async Redis client is bound to it)."""

    async def run() -> list[float]:
        for _ in range(min(50, iterations)):
            await make()
        out = []
        for _ in range(iterations):
            start = time.perf_counter_ns()
            await make()
            out.append((time.perf_counter_ns() - start) / 1e6)
        return out

    return loop.run_until_complete(run())


def _direct_sqlite(settings: Any, project: str, views: dict[str, list[str]]) -> Callable[[list[str]], Any]:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    from features import store as ops
    from features.online_reader import entity_key

    con = sqlite3.connect(str(settings.feast_dir / "online_store.db"), check_same_thread=False)

    def read(user_ids: list[str]) -> dict[str, dict[str, Any]]:
        keys = {serialize_entity_key(entity_key([ops.USER_JOIN_KEY], [u]),
                                     entity_key_serialization_version=3): u for u in user_ids}
        marks = ",".join("?" * len(keys))
        out: dict[str, dict[str, Any]] = {u: {} for u in user_ids}
        for view in views:
            for key, name, raw, _ts in con.execute(
                f"SELECT entity_key, feature_name, value, event_ts FROM {project}_{view} "
                f"WHERE entity_key IN ({marks})", list(keys)):
                value = Value()
                value.ParseFromString(raw)
                out[keys[key]][name] = feast_value_type_to_python_type(value)
        return out

    return read


def _direct_redis(settings: Any, project: str, views: dict[str, list[str]]) -> Callable[[list[str]], Any]:
    import redis
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    from features import store as ops
    from features.online_reader import entity_key

    host, _, port = settings.redis_connection_string.partition(":")
    client = redis.Redis(host=host, port=int(port or 6379))
    names = [name for fields in views.values() for name in fields]
    fields = [_mmh3(f"{view}:{name}") for view, view_fields in views.items() for name in view_fields]
    fields += [f"_ts:{view}" for view in views]

    def read(user_ids: list[str]) -> dict[str, dict[str, Any]]:
        pipe = client.pipeline(transaction=False)
        for u in user_ids:
            pipe.hmget(_redis_key(project, entity_key([ops.USER_JOIN_KEY], [u]), 3), fields)
        out = {}
        for u, values in zip(user_ids, pipe.execute()):
            row = {}
            for name, raw in zip(names, values):
                value = Value()
                value.ParseFromString(raw)
                row[name] = feast_value_type_to_python_type(value)
            out[u] = row
        return out

    return read


def bench_store(kind: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from features import store as ops
    from features.definitions import apply_feature_repo
    from features.materialize import materialize
    from features.online_reader import UserFeatureReader, read_user_features
    from core.settings import Settings

    settings = Settings(home=work / kind, max_sequence_length=args.k, feast_online_store=kind,
                        redis_connection_string=args.redis)
    project = ops.PROJECT if kind == "sqlite" else f"recsys_bench_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        (settings.feast_dir / "online_store.db").unlink(missing_ok=True)
        (settings.feast_dir / "registry.db").unlink(missing_ok=True)
    rows = write_export(settings, args.users, args.k)
    apply_feature_repo(settings, project=project)
    store = ops.feature_store(settings, project=project)
    try:
        start = time.perf_counter()
        summary = materialize(settings, T0 - timedelta(days=1), T0 + timedelta(days=1), project=project)
        seconds = time.perf_counter() - start
        written = sum(v["written"] for v in summary["feature_views"].values())
        service = store.get_feature_service(ops.FEATURE_SERVICE)
        views = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
        direct = (_direct_sqlite if kind == "sqlite" else _direct_redis)(settings, project, views)
        reader = UserFeatureReader(store)

        one, hundred = ["u0000042"], [f"u{i * 37 % args.users:07d}" for i in range(100)]
        # the three paths must agree before their speed means anything
        expected = read_user_features(store, hundred)
        assert reader.read(hundred) == expected
        loop = asyncio.new_event_loop()
        if reader.reads_async:
            assert loop.run_until_complete(reader.aread(hundred)) == expected
        assert {u: {n: direct(hundred)[u][n] for n in expected[u]} for u in hundred} == expected

        results = {"materialize_rows_per_s": rows / seconds, "materialize_s": seconds,
                   "materialized_rows": written}
        for label, users, iterations in (("1 user", one, args.iterations),
                                         ("100 users", hundred, max(50, args.iterations // 10))):
            timings = {"feast get_online_features": _timed(lambda u=users: read_user_features(store, u), iterations),
                       "feast online_read": _timed(lambda u=users: reader.read(u), iterations),
                       "direct": _timed(lambda u=users: direct(u), iterations)}
            if reader.reads_async:  # the API's path on Redis: online_read_async on its event loop
                timings["feast online_read_async"] = _timed_async(loop, lambda u=users: reader.aread(u), iterations)
            for path, times in timings.items():
                results[(label, path)] = {"p50": common.percentile(times, 50), "p99": common.percentile(times, 99),
                                          "n": iterations}
        loop.close()
        return [results]
    finally:
        if kind == "redis":
            store.teardown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feature_latency")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json")
    args = parser.parse_args(argv)
    work = args.work_dir or common.default_work_dir(NAME)
    work.mkdir(parents=True, exist_ok=True)
    command = common.command_line("benchmarks.feature_latency", list(argv if argv is not None else sys.argv[1:]))
    hardware = common.hardware(packages=("feast", "redis"))
    # Latency tails on a shared machine say more about its load than about the code.
    hardware["load_avg_1m_at_start"] = round(os.getloadavg()[0], 1)
    date = common.now_iso()
    kinds = ["sqlite"] + (["redis"] if _redis_answers(args.redis) else [])
    if "redis" not in kinds:
        print(f"no Redis answering at {args.redis}: SQLite only", file=sys.stderr)

    records, dataset = [], f"{args.users} synthetic users, K={args.k}"

    def rec(metric, value, unit, model, baseline=None, ds=dataset):
        records.append(common.record(metric, value, unit, dataset=ds, model=model, baseline=baseline,
                                     command=command, hardware=hardware, date=date))

    for kind in kinds:
        (res,) = bench_store(kind, args, work)
        rec("materialize_throughput", res["materialize_rows_per_s"], "rows/s", f"features.materialize.materialize ({kind})")
        for (label, path), v in ((k, v) for k, v in res.items() if isinstance(k, tuple)):
            model = f"{path} ({kind})"
            baseline = None if path == "direct" else f"direct ({kind})"
            ds = f"{dataset}, {label}"
            rec("read_latency_p50", v["p50"], "ms", model, baseline, ds)
            rec("read_latency_p99", v["p99"], "ms", model, baseline, ds)
            if path != "direct":
                floor = res[(label, "direct")]["p99"]
                rec("p99_ratio_vs_direct", v["p99"] / floor, "x", f"{path} ({kind}), {label}",
                    f"direct ({kind})", ds)
        print(f"{kind}: materialized {res['materialized_rows']} rows in {res['materialize_s']:.2f} s")
    return common.finish(NAME, args.results, records)


if __name__ == "__main__":
    raise SystemExit(main())
