"""Serving under overload, this checkout's API next to a baseline revision's, on the same state.

On the state of :mod:`benchmarks.serving_load` (Feast on a private Redis), for each tree a fresh
``uvicorn serving.app:app``: **open loop** at ``--rate`` req/s (throughput, p50/p99, share of
``feature_store_timeout`` fallbacks: the server's own doing on a healthy Redis); **closed loop** of
``--concurrency`` back-to-back clients (also the share refused with 429); **batch flood** of
``--flood`` batches (1000 users, k=100) while a prober times ``/health`` and one user's request.
The baseline tree is ``git archive`` of ``--baseline-rev`` run with this venv. Each scenario
records the 1-minute load average; the trees take turns ``--rounds`` times; figures are medians.

    python -m benchmarks.serving_overload --rate 100 --concurrency 30 --flood 20 --duration 10
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common
from benchmarks import serving_load as load

NAME = "serving_overload"
MODULE = "benchmarks.serving_overload"
BASELINE_REV = "572dd4f"  # the last revision before load shedding and the batch pool
BATCH_USERS, BATCH_K = 1000, 100


def baseline_tree(rev: str, work: Path) -> Path:
    """The files of ``rev`` in ``work/baseline-<rev>`` (no worktree: nothing is added to .git)."""
    target = work / f"baseline-{rev}"
    if not target.is_dir():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(common.REPO_ROOT), "archive", "--format=tar", rev],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


async def closed_loop(base_url: str, users: list[str], concurrency: int, duration_s: float) -> dict[str, Any]:
    rng = random.Random(3)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    timeouts = 0
    async with load.load_client(base_url, concurrency) as client:
        stop_at = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal timeouts
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await client.get(f"/recommendations/{rng.choice(users)}?k=10")
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    timeouts += response.json()["fallback_reason"] == "feature_store_timeout"

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ok, total = statuses.get(200, 0), sum(statuses.values())
    return {"throughput": ok / elapsed, "p50": common.percentile(latencies, 50),
            "p99": common.percentile(latencies, 99), "requests": total, "timeout_share": timeouts / max(ok, 1),
            "shed_share": statuses.get(429, 0) / max(total, 1), "errors": total - ok - statuses.get(429, 0)}


async def batch_flood(base_url: str, users: list[str], flood: int) -> dict[str, Any]:
    import httpx

    body = {"user_ids": users[:BATCH_USERS], "k": BATCH_K}
    limits = httpx.Limits(max_connections=flood + 2, max_keepalive_connections=flood + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=300.0, limits=limits) as client:
        began = time.perf_counter()

        async def batch():
            response = await client.post("/recommendations/batch", json=body)
            # Counted in the bytes: decoding a few MB of JSON here would stall this loop, and the
            # probes' timings with it.
            return response.status_code, response.content.count(b'"fallback":true')

        tasks = [asyncio.create_task(batch()) for _ in range(flood)]
        health_ms, single_ms = [], []
        await asyncio.sleep(0.2)  # the flood's requests are in
        while not all(task.done() for task in tasks):
            for path, times in (("/health", health_ms), (f"/recommendations/{users[0]}", single_ms)):
                started = time.perf_counter()
                await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
        answered = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    ok = [fallbacks for status, fallbacks in answered if status == 200]
    return {"flood_s": elapsed, "answered": len(ok), "shed": sum(status == 429 for status, _ in answered),
            "errors": sum(status not in (200, 429) for status, _ in answered),
            "batch_fallback_share": sum(ok) / max(len(ok) * BATCH_USERS, 1),
            "health_p50": common.percentile(health_ms, 50), "health_max": max(health_ms, default=float("nan")),
            "single_p50": common.percentile(single_ms, 50), "single_max": max(single_ms, default=float("nan")),
            "probes": len(health_ms)}


def measure_tree(settings, users: list[str], tree: Path, args, work: Path, label: str) -> dict[str, Any]:
    port = common.free_port()
    server = load.start_server(settings, port, work / f"uvicorn-{label}.log", tree=tree)
    base_url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        load.run_load(load.open_loop(base_url, users, 50, 3, seed=99))  # warm-up, not reported
        def run(coroutine) -> dict[str, Any]:  # the figures and the mean 1-min load average around them
            before = os.getloadavg()[0]
            figures = load.run_load(coroutine)
            return figures | {"load_avg": (before + os.getloadavg()[0]) / 2}

        for rate in args.rate:
            f = run(load.open_loop(base_url, users, rate, args.duration, seed=1))
            out[f"open loop {rate:g} req/s"] = {"throughput": f["throughput"], "p50": f["p50"], "p99": f["p99"],
                                                "timeout_share": f["feature_timeouts"] / max(f["ok"], 1),
                                                "errors": f["errors"], "load_avg": f["load_avg"]}
        out[f"closed loop, {args.concurrency} clients"] = run(closed_loop(base_url, users, args.concurrency,
                                                                          args.duration))
        out[f"flood of {args.flood} batches ({BATCH_USERS} users, k={BATCH_K})"] = run(
            batch_flood(base_url, users, args.flood))
    finally:
        common.stop_process(server)
    return out


def medians(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Each scenario's figures, the median over the rounds."""
    return {scenario: {metric: common.median([r[scenario][metric] for r in rounds]) for metric in figures}
            for scenario, figures in rounds[0].items()}


UNITS = {"throughput": "req/s", "p50": "ms", "p99": "ms", "timeout_share": "fraction", "shed_share": "fraction",
         "errors": "requests", "requests": "requests", "load_avg": "1-min load average", "flood_s": "s",
         "answered": "requests", "shed": "requests", "batch_fallback_share": "fraction", "health_p50": "ms",
         "health_max": "ms", "single_p50": "ms", "single_max": "ms", "probes": "requests"}


def to_records(runs: dict[str, dict], names: dict[str, str], dataset: str, command: str, hardware: dict,
               date_: str) -> list[dict]:
    records = []
    for label, scenarios in runs.items():
        baseline = None if label == "baseline" else names.get("baseline")
        for scenario, figures in scenarios.items():
            for metric, value in figures.items():
                records.append(common.record(metric, value, UNITS[metric], dataset=f"{dataset}, {scenario}",
                                             model=names[label], baseline=baseline, command=command,
                                             hardware=hardware, date=date_))
    return records


def main(argv: Sequence[str] | None = None) -> int:
    from core.settings import Settings

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = load.build_parser(MODULE, __doc__, NAME)
    parser.add_argument("--rate", type=float, action="append", help="open-loop req/s (repeatable; default 200)")
    parser.add_argument("--concurrency", type=int, default=30, help="closed-loop clients")
    parser.add_argument("--flood", type=int, default=20, help="concurrent batch requests")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load scenario")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each tree; figures are medians")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="revision to compare with; '' for none")
    args = parser.parse_args(argv)
    args.rate = args.rate or [200.0]
    work = (args.work_dir or common.default_work_dir(NAME)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=work / "home", champion_poll_seconds=30)
    print(f"building the pipeline state in {settings.home} ...", flush=True)
    users = load.build_state(settings, args.users, args.items, args.epochs)
    redis_process, redis_port = common.start_private_redis(work)
    try:
        settings = settings.replace(feast_online_store="redis", redis_connection_string=f"127.0.0.1:{redis_port}")
        load.rematerialize(settings)
        revision = common.git_revision() or "this checkout"
        names = {"this tree": f"API at {revision} (uvicorn, 1 worker)"}
        trees = {}
        if args.baseline_rev:
            trees["baseline"] = baseline_tree(args.baseline_rev, work)
            names["baseline"] = f"API at {args.baseline_rev} (uvicorn, 1 worker)"
        trees["this tree"] = common.REPO_ROOT
        rounds: dict[str, list[dict]] = {label: [] for label in trees}
        for round_ in range(1, args.rounds + 1):
            for label, tree in trees.items():
                print(f"round {round_}/{args.rounds}: measuring {names[label]} ...", flush=True)
                rounds[label].append(measure_tree(settings, users, tree, args, work, label.replace(" ", "-")))
        runs = {label: medians(measured) for label, measured in rounds.items()}
    finally:
        common.stop_process(redis_process)

    command = common.command_line(MODULE, argv)
    hardware = common.hardware(packages=("torch", "feast", "fastapi", "uvicorn", "redis"))
    dataset = (f"ring walk, {args.users} users, {args.items} items, SASRec, Redis online store, "
               f"median of {args.rounds} rounds")
    records = to_records(runs, names, dataset, command, hardware, common.now_iso())
    return common.finish(NAME, args.results, records)


if __name__ == "__main__":
    raise SystemExit(main())
