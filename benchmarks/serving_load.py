"""Serving latency under load: the real API (uvicorn) vs its floor (feature read + model forward).

Builds a small real pipeline state (a ring-walk log as the dbt marts, features materialized into
Feast, a SASRec promoted in MLflow), starts ``uvicorn serving.app:app`` on loopback and drives
``GET /recommendations/{user}`` open-loop (``httpx.AsyncClient``, a fixed schedule: a slow server
cannot slow the offered load). Per rate: achieved throughput and p50/p99 from each request's
scheduled send time, against the in-process floor of the same run (``UserFeatureReader.read`` +
``Recommender.recommend``). Redis, when asked for, is a private ``redis-server`` on a free port.

    python -m benchmarks.serving_load                       # 50, 100, 200 req/s, 20 s each, SQLite
    python -m benchmarks.serving_load --online-store sqlite --online-store redis --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common

NAME = "serving_load"
MODULE = "benchmarks.serving_load"
RUN_DATE = date(2026, 11, 10)
MATERIALIZED_TO = datetime(2026, 11, 11, tzinfo=timezone.utc)


def stats(ms: Sequence[float]) -> dict[str, float]:
    return {"p50": common.percentile(ms, 50), "p99": common.percentile(ms, 99), "mean": statistics.fmean(ms)}


def ring_rows(n_users: int, n_items: int, seed: int = 0) -> list[tuple[str, list[str], list[datetime]]]:
    rng = random.Random(seed)
    end = datetime(2026, 11, 10, 22, 0)
    rows = []
    for u in range(n_users):
        start, length = rng.randrange(n_items), rng.randint(8, 30)
        times = [end - timedelta(hours=4 * (length - k) + rng.uniform(0, 3)) for k in range(length)]
        items, current = [], start
        for k in range(length):
            if k:
                current = rng.randrange(n_items) if rng.random() < 0.1 else (current + 1) % n_items
            items.append(f"item_{current:04d}")
        rows.append((f"user_{u:05d}", items, times))
    return rows


def build_state(settings, n_users: int, n_items: int, epochs: int) -> list[str]:
    """Warehouse -> Feast (export, apply, materialize) -> SASRec promoted; the user ids."""
    import duckdb

    from features.export import export_feature_data
    from registry.promotion import apply_decision, decide_promotion
    from registry.versions import champion_version
    from serving.smoke import serves_in_api_path
    from tests.warehouse_fixtures import SESSIONIZED_FROM_USER_SEQUENCES  # the tests' stand-in for dbt
    from training.tracking import train_and_log

    rows = ring_rows(n_users, n_items)
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    k = settings.max_sequence_length
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create or replace table user_sequences (user_id varchar, item_ids varchar[], "
                    "event_times timestamp[], n_events bigint, first_event_time timestamp, "
                    "last_event_time timestamp)")
        con.executemany("insert into user_sequences values (?, ?, ?, len(?), list_min(?), list_max(?))",
                        [(u, i, t, i, t, t) for u, i, t in rows])
        con.execute(SESSIONIZED_FROM_USER_SEQUENCES)  # training reads its sessions from here
        con.execute(f"""
            create or replace table user_features as
            select user_id, cast(last_event_time as date) as feature_date,
                   last_event_time as event_timestamp, item_ids[-{k}:] as recent_item_ids,
                   n_events as n_events_total, cast(1 as bigint) as n_sessions_total,
                   cast(0 as bigint) as n_purchases_total
            from user_sequences""")
        con.execute("""
            create or replace table item_features as
            select item_id, cast(max(t) as date) as feature_date, max(t) as event_timestamp,
                   count(*) as n_events_1d, count(*) as n_events_7d, count(*) as n_users_7d
            from (select unnest(item_ids) as item_id, unnest(event_times) as t from user_sequences)
            group by item_id""")
    export_feature_data(settings)
    rematerialize(settings)

    if champion_version(settings) is None:
        candidate = train_and_log(settings, RUN_DATE, "sasrec", epochs=epochs, lr=3e-3)
        decision = decide_promotion(settings, RUN_DATE, candidate, gate_passed=True, serving_check=serves_in_api_path)
        apply_decision(settings, decision)
        if not decision.promote:
            raise RuntimeError(f"benchmark model not promoted: {decision.checks}")
    return [u for u, _, _ in rows]


def rematerialize(settings) -> None:
    from features.definitions import apply_feature_repo
    from features.materialize import materialize

    apply_feature_repo(settings)
    materialize(settings, MATERIALIZED_TO - timedelta(days=60), MATERIALIZED_TO)


def floor_parts(settings, users: list[str]):
    """The reader and model the API uses, built and warmed as the API builds them."""
    from features.online_reader import UserFeatureReader
    from features.store import feature_store
    from registry.versions import load_champion

    import torch

    torch.set_num_threads(settings.serving_torch_threads or torch.get_num_threads())  # as the API runs
    model, _ = load_champion(settings)
    reader = UserFeatureReader(feature_store(settings))  # what the API reads through
    reader.read(users[:1])  # warm: registry, connection
    return reader, model


def measure_floor(reader, model, users: list[str], n: int = 1000) -> dict[str, dict[str, float]]:
    rng = random.Random(1)
    feature_ms, model_ms, histories = [], [], []
    for _ in range(n):
        user = rng.choice(users)
        t = time.perf_counter()
        found = reader.read([user])
        feature_ms.append((time.perf_counter() - t) * 1000)
        histories.append(list((found.get(user) or {}).get("recent_item_ids") or []))
    for history in histories:
        t = time.perf_counter()
        model.recommend(history, 10, exclude=set(history))
        model_ms.append((time.perf_counter() - t) * 1000)
    both = [a + b for a, b in zip(feature_ms, model_ms)]
    return {"feature_read": stats(feature_ms), "model_forward": stats(model_ms), "floor": stats(both)}


def measure_paced_floor(reader, model, users: list[str], rate: float, duration_s: float = 5.0) -> dict[str, float]:
    """The floor called on the load's schedule: a paced server runs each request on cold caches, and
    so do these calls; dividing by this floor shows what HTTP and the framework add."""
    rng = random.Random(2)
    n = max(1, int(rate * duration_s))
    start = time.perf_counter() + 0.05
    both = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        user = rng.choice(users)
        t = time.perf_counter()
        history = list((reader.read([user]).get(user) or {}).get("recent_item_ids") or [])
        model.recommend(history, 10, exclude=set(history))
        both.append((time.perf_counter() - t) * 1000)
    return stats(both)


def start_server(settings, port: int, log_path: Path, tree: Path = common.REPO_ROOT, workers: int = 1,
                 env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """``uvicorn serving.app:app`` from ``tree`` (this checkout, or another one to compare with),
    ``workers`` processes; ``env_extra``: more RECSYS_* settings of the server."""
    env = dict(os.environ) | (env_extra or {}) | {
        "RECSYS_HOME": str(settings.home), "RECSYS_MAX_SEQUENCE_LENGTH": str(settings.max_sequence_length),
        "RECSYS_FEAST_ONLINE_STORE": settings.feast_online_store, "RECSYS_CHAMPION_POLL_SECONDS": "30",
        "RECSYS_REDIS_CONNECTION_STRING": settings.redis_connection_string,
        "PYTHONPATH": str(tree)}  # ahead of the editable install, which points at this checkout
    with open(log_path, "wb") as log:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serving.app:app", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log", "--log-level", "warning", "--workers", str(workers),
             # a worker loading a large catalog on busy cores may miss the default 5 s ping
             *(["--timeout-worker-healthcheck", "120"] if workers > 1 else [])],
            env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(client, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # starting
            if (await client.get("/health")).json().get("status") == "ok":
                return
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become healthy")


def load_client(base_url: str, connections: int):
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, timeout=10.0, limits=limits)


async def open_loop(base_url: str, users: list[str], rate: float, duration_s: float, seed: int = 0,
                    connections: int = 64) -> dict[str, Any]:
    """``rate`` req/s for ``duration_s`` on a fixed schedule. Latency from each request's scheduled send
    time (what a user sees) and service latency from when it was handed to the client."""
    rng, n = random.Random(seed), int(rate * duration_s)
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[int, int] = {}
    fallbacks = timeouts = 0
    async with load_client(base_url, connections) as client:
        await wait_healthy(client)
        clock = time.perf_counter  # not loop.time(): uvloop's clock moves in whole milliseconds
        start = clock() + 0.1

        async def one(i: int) -> None:
            nonlocal fallbacks, timeouts
            scheduled = start + i / rate
            if scheduled > clock():
                await asyncio.sleep(scheduled - clock())
            sent = clock()
            try:
                response = await client.get(f"/recommendations/{rng.choice(users)}?k=10")
                status = response.status_code
            except Exception:  # noqa: BLE001 - counted as a failure
                status = 0
            done = clock()
            if status == 200 and response.json()["fallback"]:
                fallbacks += 1
                timeouts += response.json()["fallback_reason"] == "feature_store_timeout"
            latencies.append((done - scheduled) * 1000)
            service.append((done - sent) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

        began = clock()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = clock() - began
    ok = statuses.get(200, 0)
    return {
        "rate": rate, "requests": n, "ok": ok, "errors": n - ok, "fallbacks": fallbacks, "feature_timeouts": timeouts,
        "throughput": ok / elapsed, "p50": common.percentile(latencies, 50), "p99": common.percentile(latencies, 99),
        "service_p50": common.percentile(service, 50), "service_p99": common.percentile(service, 99),
    }


def run_load(coroutine):
    """On uvloop when installed (as the server): the generator's own cost lands in every latency."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


ROUTE_LABEL = 'endpoint="/recommendations/{user_id}"'


def server_time(base_url: str) -> tuple[float, float]:
    """(seconds, requests) in the API's own latency histogram of the route (no loopback, no client)."""
    import httpx

    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    total = count = 0.0
    for line in text.splitlines():
        if ROUTE_LABEL in line and line.startswith("recsys_request_latency_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif ROUTE_LABEL in line and line.startswith("recsys_request_latency_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


def run_store(base, users: list[str], store: str, rates: list[float], duration: float,
              work: Path) -> dict[str, Any]:
    redis_process = None
    settings = base
    if store == "redis":
        redis_process, port = common.start_private_redis(work)
        settings = base.replace(feast_online_store="redis", redis_connection_string=f"127.0.0.1:{port}")
        rematerialize(settings)
    try:
        reader, model = floor_parts(settings, users)  # one load, shared by both floors
        floor = measure_floor(reader, model, users)
        port = common.free_port()
        server = start_server(settings, port, work / f"uvicorn-{store}.log")
        try:
            base_url = f"http://127.0.0.1:{port}"
            run_load(open_loop(base_url, users, 50, 3, seed=99))  # warm-up, not reported
            loads, paced = [], {}
            for i, rate in enumerate(rates):
                before = server_time(base_url)
                load = run_load(open_loop(base_url, users, rate, duration, seed=i))
                after = server_time(base_url)
                load["server_mean"] = (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000
                loads.append(load)
                # right after its load (the server idle): the machine's speed drifts over minutes
                paced[rate] = measure_paced_floor(reader, model, users, rate)
        finally:
            common.stop_process(server)
    finally:
        if redis_process is not None:
            common.stop_process(redis_process)
    return {"store": store, "floor": floor, "paced_floor": paced, "loads": loads}


def to_records(runs: list[dict[str, Any]], dataset: str, command: str, hardware: dict, date_: str) -> list[dict]:
    floor_name = "in-process feature read + model forward"
    records = []
    for run in runs:
        floor, api = run["floor"], f"GET /recommendations (uvicorn, 1 worker, {run['store']})"
        for load in run["loads"]:
            paced = run["paced_floor"][load["rate"]]
            paced_name = f"{floor_name}, paced at {load['rate']:g} req/s"
            reader, forward = "UserFeatureReader.read (in-process)", "Recommender.recommend (in-process)"
            figures = [  # (metric, value, unit, model, baseline)
                ("throughput", load["throughput"], "req/s", api, None),
                ("p50_latency", load["p50"], "ms", api, None),
                ("p99_latency", load["p99"], "ms", api, None),
                ("errors", load["errors"], "requests", api, None),
                ("fallbacks", load["fallbacks"], "requests", api, None),
                ("feature_timeout_share", load["feature_timeouts"] / max(load["ok"], 1), "fraction", api, None),
                ("p50_vs_floor", load["p50"] / floor["floor"]["p50"], "ratio", api, floor_name),
                ("p99_vs_floor", load["p99"] / floor["floor"]["p99"], "ratio", api, floor_name),
                ("service_p50_latency", load["service_p50"], "ms", api, None),
                ("service_p99_latency", load["service_p99"], "ms", api, None),
                ("service_p50_vs_floor", load["service_p50"] / floor["floor"]["p50"], "ratio", api, floor_name),
                ("service_p99_vs_floor", load["service_p99"] / floor["floor"]["p99"], "ratio", api, floor_name),
                ("floor_feature_read_p50", floor["feature_read"]["p50"], "ms", reader, None),
                ("floor_feature_read_p99", floor["feature_read"]["p99"], "ms", reader, None),
                ("floor_model_forward_p50", floor["model_forward"]["p50"], "ms", forward, None),
                ("floor_model_forward_p99", floor["model_forward"]["p99"], "ms", forward, None),
                ("server_mean_latency", load["server_mean"], "ms", api, None),
            ]
            for q in ("p50", "p99"):
                figures += [
                    (f"paced_floor_{q}", paced[q], "ms", paced_name, None),
                    # what pacing alone costs on this machine: the ratio a server adding nothing
                    # to the feature read and the forward would score against the back-to-back floor
                    (f"paced_floor_{q}_vs_floor", paced[q] / floor["floor"][q], "ratio", paced_name, floor_name),
                    (f"service_{q}_vs_paced_floor", load[f"service_{q}"] / paced[q], "ratio", api, paced_name),
                ]
            records += [common.record(metric, value, unit, model=model, baseline=baseline,
                                      dataset=f"{dataset}, {run['store']} online store, {load['rate']:g} req/s",
                                      command=command, hardware=hardware, date=date_)
                        for metric, value, unit, model, baseline in figures]
    return records


def build_parser(module: str = MODULE, doc: str | None = __doc__, name: str = NAME) -> argparse.ArgumentParser:
    """The options of the state both serving benchmarks build (``serving_overload`` adds its own)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{name}.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from core.settings import Settings

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    parser.add_argument("--rate", type=float, action="append", help="req/s (repeatable; default 50 100 200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--online-store", action="append", choices=("sqlite", "redis"), help="default sqlite")
    args = parser.parse_args(argv)
    rates = args.rate or [50.0, 100.0, 200.0]
    stores = args.online_store or ["sqlite"]
    work = args.work_dir or common.default_work_dir(NAME)
    work.mkdir(parents=True, exist_ok=True)
    command = common.command_line(MODULE, argv)
    settings = Settings(home=(work / "home").resolve(), champion_poll_seconds=30)
    print(f"building the pipeline state in {settings.home} ...", flush=True)
    users = build_state(settings, args.users, args.items, args.epochs)
    runs = [run_store(settings, users, store, rates, args.duration, work) for store in stores]

    hardware = common.hardware(packages=("torch", "feast", "fastapi", "uvicorn", "httpx"))
    dataset = f"ring walk, {args.users} users, {args.items} items, SASRec, k=10, {args.duration:g} s per rate"
    records = to_records(runs, dataset, command, hardware, common.now_iso())
    return common.finish(NAME, args.results, records)


if __name__ == "__main__":
    raise SystemExit(main())
