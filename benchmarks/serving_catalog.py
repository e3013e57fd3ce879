"""Catalog-scale serving: the real API on a synthetic 1M-item catalog, index against exact scoring.

Builds a pipeline state whose champion is a SASRec-shaped checkpoint over ``--items`` items with
clustered 64-dim embeddings (:mod:`benchmarks.synthetic_catalog`), registered in MLflow and
promoted by the real promotion step, which builds the retrieval index beside the checkpoint;
users' recent items go through Feast (export, apply, materialize) as in ``serving_load``. Then,
in the same run:

* recall@10 of the served answers (index candidates, exact re-scoring, the seen-item filter)
  against exact full-catalog scoring, over ``--recall-users`` users' real online histories;
* the in-process time of one answer, index path and exact path (``recommend``, k=10);
* the index's build time (at promotion) and size on disk;
* ``uvicorn serving.app:app`` driven open-loop at ``--rate`` for ``--duration`` seconds twice:
  with the index, and with ``RECSYS_ANN_MIN_CATALOG`` above the catalog (exact scoring of every
  item, the baseline), each after a warm-up of a few seconds at the same rate. ``/health`` is
  checked to name the retrieval each server uses.

    python -m benchmarks.serving_catalog                          # 1,000,000 items, 200 req/s, 20 s
    python -m benchmarks.serving_catalog --items 100000 --duration 5 --online-store redis

The state (catalog, index, features) is kept in the work dir and reused by the next run with
the same ``--work-dir``; ``benchmarks.serving_capacity`` builds it the same way.
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common
from benchmarks.serving_load import (build_parser, open_loop, rematerialize, run_load, start_server, stats,
                                     wait_healthy)

NAME = "serving_catalog"
MODULE = "benchmarks.serving_catalog"
CHECK = "synthetic_benchmark_catalog"
EXACT_ENV = {"RECSYS_ANN_MIN_CATALOG": str(2**62)}  # no catalog reaches it: every item scored
WARM_UP_S = 3.0
ANN_MIN_CATALOG = 100_000  # the default threshold; --ann-min-catalog lowers it for a quick look


def ann_env(settings) -> dict[str, str]:
    """The server's retrieval settings, as this process has them."""
    return {"RECSYS_ANN_MIN_CATALOG": str(settings.ann_min_catalog),
            "RECSYS_ANN_CANDIDATES": str(settings.ann_candidates),
            "RECSYS_ANN_EF_SEARCH": str(settings.ann_ef_search)}


def user_id(u: int) -> str:
    return f"user_{u:06d}"


def build_catalog_state(settings, n_items: int, n_users: int, work: Path) -> list[str]:
    """The synthetic champion promoted (index built by the promotion step) and its users'
    features online; reused when the work dir already holds a champion. The user ids."""
    import duckdb

    from benchmarks.synthetic_catalog import histories, promote, register_checkpoint, synthetic_checkpoint
    from features.export import export_feature_data
    from registry.versions import champion_version

    if champion_version(settings) is None:
        print(f"building a {n_items}-item catalog and its index (minutes for a million) ...", flush=True)
        checkpoint = synthetic_checkpoint(n_items, dim=64, max_len=settings.max_sequence_length)
        version = register_checkpoint(settings, checkpoint, work / "checkpoints")
        del checkpoint
        decision = promote(settings, version, CHECK)
        print(f"promoted v{version}; retrieval index: {decision['retrieval_index']}", flush=True)
    users = histories(n_users, n_items, seed=7, max_len=settings.max_sequence_length)
    end = datetime(2026, 11, 10, 22, 0)
    rows = [(user_id(u), items, end - timedelta(minutes=u)) for u, items in enumerate(users)]
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create or replace table user_features (user_id varchar, feature_date date, "
                    "event_timestamp timestamp, recent_item_ids varchar[], n_events_total bigint, "
                    "n_sessions_total bigint, n_purchases_total bigint)")
        con.executemany("insert into user_features values (?, cast(? as date), ?, ?, len(?), 1, 0)",
                        [(u, t, t, items, items) for u, items, t in rows])
        con.execute("""
            create or replace table item_features as
            select item_id, cast(max(t) as date) as feature_date, max(t) as event_timestamp,
                   count(*) as n_events_1d, count(*) as n_events_7d, count(*) as n_users_7d
            from (select unnest(recent_item_ids) as item_id, event_timestamp as t from user_features)
            group by item_id""")
    export_feature_data(settings)
    rematerialize(settings)
    return [u for u, _, _ in rows]


def served_models(settings):
    """(model with its index, the same model scoring exactly, index description), loaded the way
    serving loads the champion."""
    from registry.ann_index import META_FILE
    from registry.decision_record import artifact_digest
    from registry.versions import champion_version, download_registered_checkpoint, load_recommender
    from serving.ann_retrieval import ANN, with_index

    import torch

    torch.set_num_threads(settings.serving_torch_threads or torch.get_num_threads())  # as the API runs
    checkpoint = download_registered_checkpoint(settings, champion_version(settings))
    model = load_recommender(checkpoint)
    served, retrieval = with_index(settings, model, checkpoint.parent, artifact_digest(checkpoint))
    if retrieval["mode"] != ANN:
        raise RuntimeError(f"the champion is not served through its index: {retrieval['reason']}")
    meta = json.loads((checkpoint.parent / META_FILE).read_text())["meta"]
    return served, model, meta


def measure_in_process(settings, users: list[str], n_recall: int, n_timed: int) -> dict[str, Any]:
    """Recall@10 of the served answers against exact scoring, and both paths' time per answer,
    on users' histories as the API reads them (Feast's online store)."""
    from features.online_reader import UserFeatureReader
    from features.store import feature_store

    served, exact, meta = served_models(settings)
    reader = UserFeatureReader(feature_store(settings))
    sample = random.Random(3).sample(users, min(n_recall, len(users)))
    found = reader.read(sample)
    histories = [list((found.get(u) or {}).get("recent_item_ids") or []) for u in sample]
    histories = [h for h in histories if h]
    overlaps, ann_ms, exact_ms = [], [], []
    for i, history in enumerate(histories):
        t = time.perf_counter()
        got = served.recommend(history, 10)
        ann_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        want = exact.recommend(history, 10)
        if i < n_timed:
            exact_ms.append((time.perf_counter() - t) * 1000)
        overlaps.append(len({item for item, _ in got} & {item for item, _ in want}) / max(1, len(want)))
    return {"recall_at_10": sum(overlaps) / len(overlaps), "users": len(histories),
            "ann_model": stats(ann_ms[:n_timed]), "exact_model": stats(exact_ms), "index": meta,
            "candidates": served.candidates, "breadth": served.breadth}


def health(base_url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base_url}/health", timeout=10.0).json()


def serve_and_load(settings, users: list[str], mode: str, rate: float, duration: float, work: Path,
                   workers: int = 1) -> dict[str, Any]:
    """One server (``mode``: ann or exact) at ``rate`` for ``duration`` seconds, after a warm-up."""
    port = common.free_port()
    server = start_server(settings, port, work / f"uvicorn-{mode}-{settings.feast_online_store}.log",
                          workers=workers, env_extra=EXACT_ENV if mode == "exact" else ann_env(settings))
    try:
        base_url = f"http://127.0.0.1:{port}"
        run_load(wait_until_healthy(base_url))
        body = health(base_url)
        if body.get("retrieval") != mode:
            raise RuntimeError(f"the {mode} server reports retrieval {body.get('retrieval')!r}: {body}")
        # Warm-up at the offered rate, not reported: a cold server's first second at this rate
        # opens its online-store connections (the async Redis pool grows to the concurrency).
        run_load(open_loop(base_url, users, rate, WARM_UP_S, seed=99))
        return run_load(open_loop(base_url, users, rate, duration, seed=1)) | {"mode": mode}
    finally:
        common.stop_process(server)


async def wait_until_healthy(base_url: str) -> None:
    from benchmarks.serving_load import load_client

    async with load_client(base_url, 1) as client:
        await wait_healthy(client, timeout_s=900.0)  # a million-item champion takes a while to load


def to_records(inproc: dict[str, Any], loads: list[dict[str, Any]], dataset: str, command: str,
               hardware: dict, date_: str) -> list[dict]:
    index = inproc["index"]
    ann = f"index (faiss HNSW, {inproc['candidates']} candidates, ef {inproc['breadth']}) + exact re-scoring"
    exact = "exact scoring of every item"
    figures = [  # (metric, value, unit, model, baseline, dataset suffix)
        ("recall_at_10", inproc["recall_at_10"], "fraction", ann, exact, f"{inproc['users']} users"),
        ("index_build_seconds", index["build_seconds"], "s", ann, None, "at promotion"),
        ("index_size_mib", index["index_bytes"] / common.MIB, "MiB", ann, None, "on disk"),
    ]
    for name, key in ((ann, "ann_model"), (exact, "exact_model")):
        for q in ("p50", "p99"):
            figures.append((f"model_{q}_latency", inproc[key][q], "ms", f"{name}, in-process recommend", None,
                            "in-process, back to back"))
    for load in loads:
        api = f"GET /recommendations (uvicorn, 1 worker), {ann if load['mode'] == 'ann' else exact}"
        suffix = f"{load['store']} online store, {load['rate']:g} req/s"
        base = f"GET /recommendations (uvicorn, 1 worker), {exact}" if load["mode"] == "ann" else None
        figures += [
            ("throughput", load["throughput"], "req/s", api, None, suffix),
            ("p50_latency", load["p50"], "ms", api, base, suffix),
            ("p99_latency", load["p99"], "ms", api, base, suffix),
            ("service_p99_latency", load["service_p99"], "ms", api, base, suffix),
            ("errors", load["errors"], "requests", api, None, suffix),
            ("fallbacks", load["fallbacks"], "requests", api, None, suffix),
        ]
    return [common.record(metric, value, unit, model=model, baseline=baseline, dataset=f"{dataset}, {suffix}",
                          command=command, hardware=hardware, date=date_)
            for metric, value, unit, model, baseline, suffix in figures]


def catalog_settings(work: Path, ann_min_catalog: int = ANN_MIN_CATALOG):
    """The benchmark's settings: its own home, the index used from ``ann_min_catalog`` items."""
    from core.settings import Settings

    return Settings(home=(work / "home").resolve(), champion_poll_seconds=30, ann_min_catalog=ann_min_catalog)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(MODULE, __doc__, NAME)
    parser.set_defaults(items=1_000_000, users=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="offered req/s (default 200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per server")
    parser.add_argument("--online-store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--recall-users", type=int, default=1000)
    parser.add_argument("--timed-users", type=int, default=200, help="answers timed in-process per path")
    parser.add_argument("--ann-min-catalog", type=int, default=ANN_MIN_CATALOG,
                        help="RECSYS_ANN_MIN_CATALOG of the state and the index server")
    args = parser.parse_args(argv)
    work = (args.work_dir or common.default_work_dir(NAME)) / f"items-{args.items}"
    work.mkdir(parents=True, exist_ok=True)
    settings = catalog_settings(work, args.ann_min_catalog)
    users = build_catalog_state(settings, args.items, args.users, work)
    redis_process = None
    if args.online_store == "redis":
        redis_process, port = common.start_private_redis(work)
        settings = settings.replace(feast_online_store="redis", redis_connection_string=f"127.0.0.1:{port}")
        rematerialize(settings)
    try:
        inproc = measure_in_process(settings, users, args.recall_users, args.timed_users)
        print(f"recall@10 {inproc['recall_at_10']:.4f} over {inproc['users']} users", flush=True)
        loads = [serve_and_load(settings, users, mode, args.rate, args.duration, work) | {"store": args.online_store}
                 for mode in ("ann", "exact")]
    finally:
        if redis_process is not None:
            common.stop_process(redis_process)
    hardware = common.hardware(packages=("torch", "faiss-cpu", "feast", "fastapi", "uvicorn", "httpx"))
    dataset = (f"synthetic catalog, {args.items} items (clustered 64-dim embeddings, SASRec), {args.users} users, "
               f"k=10, {args.duration:g} s per server")
    records = to_records(inproc, loads, dataset, common.command_line(MODULE, argv), hardware, common.now_iso())
    return common.finish(NAME, args.results, records)


if __name__ == "__main__":
    raise SystemExit(main())
