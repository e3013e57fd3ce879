"""Serving under overload, this checkout's API next to a baseline revision's, on the same state.

Builds the state of :mod:`benchmarks.serving_load` (ring-walk log, Feast on a private Redis, a
SASRec promoted in MLflow), then for each of the two trees starts ``uvicorn serving.app:app`` and
measures:

* **open loop** at ``--rate`` req/s of single requests (fixed schedule): throughput, p50/p99 and
  the share of answers that were ``feature_store_timeout`` fallbacks (the store is a healthy
  local Redis, so every one of them is the server's own doing);
* **closed loop**: ``--concurrency`` clients each sending single requests back to back (the
  server saturated): the same figures, and the share refused with 429;
* **batch flood**: ``--flood`` concurrent batch requests of 1000 users at k=100 while a prober
  sends ``GET /health`` and one user's ``GET /recommendations`` in turn: how long those took
  during the flood, how many batches were answered and how many refused (429).

The baseline tree is ``git archive`` of ``--baseline-rev`` (default: the last revision before
load shedding) run with this checkout's virtualenv. The load generator shares the machine with
the server and Redis; the machine's 1-minute load average is recorded with each scenario, since
other jobs on a shared machine move every figure here. For the same reason the two trees take
turns, ``--rounds`` times, each with a fresh server, and each figure is the median of its rounds.

    python -m benchmarks.serving_overload
    python -m benchmarks.serving_overload --rate 100 --concurrency 30 --flood 20 --duration 10

Writes ``benchmarks/results/serving_overload.json`` and its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
TITLE = "Serving under overload (load shedding, batch pool, forward turns)"
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


async def closed_loop(port: int, users: list[str], concurrency: int, duration_s: float) -> dict[str, Any]:
    rng = random.Random(3)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    timeouts = 0
    async with load.KeepAliveClient("127.0.0.1", port, concurrency) as client:
        stop_at = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal timeouts
            while time.perf_counter() < stop_at:
                connection = await client.acquire()
                started = time.perf_counter()
                status, body = await client.get(connection, f"/recommendations/{rng.choice(users)}?k=10")
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    timeouts += json.loads(body)["fallback_reason"] == "feature_store_timeout"

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ok, total = statuses.get(200, 0), sum(statuses.values())
    return {"throughput": ok / elapsed, "p50": load.percentile(latencies, 50), "p99": load.percentile(latencies, 99),
            "requests": total, "timeout_share": timeouts / max(ok, 1), "shed_share": statuses.get(429, 0) / max(total, 1),
            "errors": total - ok - statuses.get(429, 0)}


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
            "health_p50": load.percentile(health_ms, 50), "health_max": max(health_ms, default=float("nan")),
            "single_p50": load.percentile(single_ms, 50), "single_max": max(single_ms, default=float("nan")),
            "probes": len(health_ms)}


def measure_tree(settings, users: list[str], tree: Path, args, work: Path, label: str) -> dict[str, Any]:
    port = load.free_port()
    server = load.start_server(settings, port, work / f"uvicorn-{label}.log", tree=tree)
    base_url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        load.run_load(load.open_loop(base_url, users, 50, 3, seed=99))  # warm-up, not reported
        for rate in args.rate:
            before = os.getloadavg()[0]
            figures = load.run_load(load.open_loop(base_url, users, rate, args.duration, seed=1))
            out[f"open loop {rate:g} req/s"] = {
                "throughput": figures["throughput"], "p50": figures["p50"], "p99": figures["p99"],
                "timeout_share": figures["feature_timeouts"] / max(figures["ok"], 1), "errors": figures["errors"],
                "load_avg": (before + os.getloadavg()[0]) / 2}
        before = os.getloadavg()[0]
        figures = load.run_load(closed_loop(port, users, args.concurrency, args.duration))
        out[f"closed loop, {args.concurrency} clients"] = figures | {"load_avg": (before + os.getloadavg()[0]) / 2}
        before = os.getloadavg()[0]
        figures = load.run_load(batch_flood(base_url, users, args.flood))
        out[f"flood of {args.flood} batches ({BATCH_USERS} users, k={BATCH_K})"] = figures | {
            "load_avg": (before + os.getloadavg()[0]) / 2}
    finally:
        load.stop_server(server)
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


def _cell(metric: str, value: float | None) -> str:
    if value is None:
        return ""
    if UNITS[metric] == "fraction":
        return f"{value * 100:.2f} %"
    return f"{value:.0f}" if isinstance(value, int) or UNITS[metric] == "requests" else f"{value:.1f}"


def rows_of(runs: dict[str, dict]) -> list[list[str]]:
    rows = []
    for scenario, figures in runs["this tree"].items():
        for metric, value in figures.items():
            old = runs.get("baseline", {}).get(scenario, {}).get(metric)
            rows.append([scenario, f"{metric} ({UNITS[metric]})", _cell(metric, old), _cell(metric, value)])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from core.settings import Settings

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, action="append", help="open-loop req/s (repeatable; default 200)")
    parser.add_argument("--concurrency", type=int, default=30, help="closed-loop clients")
    parser.add_argument("--flood", type=int, default=20, help="concurrent batch requests")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load scenario")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each tree; figures are medians")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="revision to compare with; '' for none")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json")
    parser.add_argument("--docs", type=Path, default=common.DOCS_PATH)
    args = parser.parse_args(argv)
    args.rate = args.rate or [200.0]
    work = (args.work_dir or common.default_work_dir(NAME)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=work / "home", champion_poll_seconds=30)
    print(f"building the pipeline state in {settings.home} ...", flush=True)
    users = load.build_state(settings, args.users, args.items, args.epochs)
    redis_process, redis_port = load.start_private_redis(work)
    try:
        settings = settings.replace(feast_online_store="redis",
                                       redis_connection_string=f"127.0.0.1:{redis_port}")
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
        redis_process.kill()
        redis_process.wait()

    command = common.command_line(MODULE, argv)
    hardware = common.hardware(packages=("torch", "feast", "fastapi", "uvicorn", "redis"))
    dataset = (f"ring walk, {args.users} users, {args.items} items, SASRec, Redis online store, "
               f"median of {args.rounds} rounds")
    records = to_records(runs, names, dataset, command, hardware, common.now_iso())
    merged = common.update_results(args.results, records)
    headers = ["scenario", "figure", names.get("baseline", "baseline"), names["this tree"]]
    table = common.markdown_table(headers, rows_of(runs), align="llrr")
    common.replace_section(args.docs, NAME, TITLE, "\n".join([
        f"`{command}` — {dataset}, {args.duration:g} s per load scenario; {common.hardware_summary(hardware)}.",
        "",
        "Load generator, Redis and the API share the machine's cores; `load_avg` is the machine's "
        "1-minute load average during the scenario (above the core count, other jobs were competing "
        "for the CPU and every latency here grows with it). `timeout_share` counts "
        "`feature_store_timeout` fallbacks among the answers (the online store is a healthy local Redis).",
        "",
        table,
    ]))
    print(common.text_table(headers, rows_of(runs)))
    print(f"{len(records)} records -> {args.results} ({len(merged)} in all); section -> {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
