"""The API under load: a flood of batch requests is shed with 429 + Retry-After while /health and
single-user requests keep answering; requests beyond the concurrency limit are refused, never the
health check; healthy online-store reads do not time out because forwards queue on the loop.

Real parts: a private redis-server as Feast's online store, a model trained and promoted in MLflow,
uvicorn serving the app on a loopback port (in a thread of this process, so the test can make the
batch forward slow). The slow forward is the one injected fault: ``time.sleep`` stands in for a
long forward that, like torch's kernels, releases the interpreter lock. It makes "an admitted batch
is still running" certain, so the assertions are about order, not time; the only time bounds are
hang guards."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections import Counter

import httpx
import pytest

from serving.app import create_app
from tests.serving.conftest import (RedisServer, build_warehouse, free_port, make_settings, materialize_features,
                                    ring_user_sequences, train_and_promote)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server binary not installed"),
]

FLOOD = 20
BATCH_USERS = 1000
BATCH_K = 100
SLOW_BATCH_FORWARD_S = 1.5
HANG_GUARD_S = 60.0
KNOWN_USERS = [user_id for user_id, _, _ in ring_user_sequences()]


@pytest.fixture(scope="module")
def redis_served(tmp_path_factory):
    home = tmp_path_factory.mktemp("load-shedding")
    redis_server = RedisServer(home).start()
    settings = make_settings(home, feast_online_store="redis",
                             redis_connection_string=f"127.0.0.1:{redis_server.port}")
    build_warehouse(settings)
    materialize_features(settings)
    train_and_promote(settings, "popularity", epochs=1)  # cheap; the forward's cost is injected
    yield settings
    redis_server.stop()


class LiveServer:
    """uvicorn serving ``app`` on a free loopback port, in a thread with its own event loop."""

    def __init__(self, app):
        import uvicorn

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + HANG_GUARD_S
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=HANG_GUARD_S)


def slow_forward(monkeypatch, service, method: str = "recommend_many",
                 seconds: float = SLOW_BATCH_FORWARD_S) -> None:
    """Make the served model's ``method`` take ``seconds`` longer (a busy CPU's forward)."""
    model, _ = service._state
    real = getattr(model, method)

    def forward(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, method, forward)


def batch_ids() -> list[str]:
    return KNOWN_USERS + [f"not-yet-seen-{i}" for i in range(BATCH_USERS - len(KNOWN_USERS))]


async def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not await condition():
        assert time.monotonic() < deadline, f"hang guard: {what}"
        await asyncio.sleep(0.01)


async def flood_and_probe(url: str, expected_shed: int) -> dict:
    """FLOOD concurrent batches; once the refused ones are back, /health and a single request."""
    limits = httpx.Limits(max_connections=FLOOD + 4, max_keepalive_connections=FLOOD + 4)
    async with httpx.AsyncClient(base_url=url, timeout=HANG_GUARD_S, limits=limits) as client:
        body = {"user_ids": batch_ids(), "k": BATCH_K}

        async def batch():
            response = await client.post("/recommendations/batch", json=body)
            return response, time.perf_counter()

        flood = [asyncio.create_task(batch()) for _ in range(FLOOD)]

        async def refused_are_back():
            return sum(task.done() for task in flood) >= expected_shed

        await wait_for(refused_are_back, "the refused batches were not answered")
        health = await client.get("/health")
        health_at = time.perf_counter()
        single = await client.get(f"/recommendations/{KNOWN_USERS[0]}", params={"k": 10})
        single_at = time.perf_counter()
        answered = await asyncio.gather(*flood)
        metrics = (await client.get("/metrics")).text
    return {"answered": answered, "health": (health, health_at), "single": (single, single_at),
            "metrics": metrics}


def metric_value(text: str, prefix: str) -> float:
    found = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)]
    assert found, f"/metrics has no {prefix.strip()}"
    return found[0]


def test_batch_flood_is_shed_and_health_and_single_requests_answer_while_it_runs(redis_served, monkeypatch):
    # One batch running and one waiting per batch worker (serving.overload.batch_limit).
    admitted_limit = 2 * redis_served.serving_batch_workers
    app = create_app(redis_served)
    with LiveServer(app) as live:
        slow_forward(monkeypatch, app.state.service)
        seen = asyncio.run(flood_and_probe(live.url, FLOOD - admitted_limit))

    shed = [response for response, _ in seen["answered"] if response.status_code == 429]
    admitted = [(response, at) for response, at in seen["answered"] if response.status_code == 200]
    assert len(shed) == FLOOD - admitted_limit and len(admitted) == admitted_limit
    assert all(response.headers.get("retry-after", "").isdigit() for response in shed)
    assert "overloaded" in shed[0].json()["detail"]
    for response, _ in admitted:
        results = response.json()["results"]
        assert len(results) == BATCH_USERS
        assert sum(not r["fallback"] for r in results) == len(KNOWN_USERS)

    health, health_at = seen["health"]
    single, single_at = seen["single"]
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert single.status_code == 200 and single.json()["fallback"] is False
    # Both answered while every admitted batch was still being worked on: the loop was free.
    first_batch_at = min(at for _, at in admitted)
    assert health_at < first_batch_at and single_at < first_batch_at
    assert metric_value(seen["metrics"], 'recsys_shed_requests_total{endpoint="/recommendations/batch"}') == len(shed)
    assert metric_value(seen["metrics"],
                        'recsys_requests_total{endpoint="/recommendations/batch",status="429"}') == len(shed)


def test_requests_beyond_the_concurrency_limit_are_refused_but_health_and_metrics_answer(redis_served, monkeypatch):
    limited = redis_served.replace(serving_max_concurrency=2)
    app = create_app(limited)

    async def scenario(url: str) -> dict:
        async with httpx.AsyncClient(base_url=url, timeout=HANG_GUARD_S) as client:
            body = {"user_ids": KNOWN_USERS[:10], "k": 5}
            running = [asyncio.create_task(client.post("/recommendations/batch", json=body)) for _ in range(2)]

            async def both_in_flight():
                text = (await client.get("/metrics")).text
                return metric_value(text, "recsys_requests_in_flight ") >= 2

            await wait_for(both_in_flight, "the two batches were never in flight together")
            single = await client.get(f"/recommendations/{KNOWN_USERS[0]}")
            health = await client.get("/health")
            metrics = (await client.get("/metrics")).text
            batches = await asyncio.gather(*running)
        return {"single": single, "health": health, "metrics": metrics, "batches": batches}

    with LiveServer(app) as live:
        slow_forward(monkeypatch, app.state.service)
        seen = asyncio.run(scenario(live.url))

    assert seen["single"].status_code == 429 and seen["single"].headers["retry-after"].isdigit()
    assert seen["health"].status_code == 200
    assert metric_value(seen["metrics"], 'recsys_shed_requests_total{endpoint="/recommendations/{user_id}"}') == 1
    assert [b.status_code for b in seen["batches"]] == [200, 200]


def test_healthy_reads_do_not_time_out_while_forwards_queue_on_the_event_loop(redis_served, monkeypatch):
    """Many concurrent single requests whose forwards run on the loop: the online store (a
    healthy local Redis) answers in about a millisecond, so no answer may be a timeout fallback.

    The injected forward blocks the loop (as an inline forward does) for a twentieth of the read
    timeout; the clients together queue far more forward time than the timeout, which, run back
    to back, starved every read sent meanwhile until its timeout fired."""
    from serving.recommendation_service import RecommendationService

    settings = redis_served.replace(feature_timeout_ms=500)
    forward_s = settings.feature_timeout_ms / 1000 / 20
    clients, rounds = 40, 2
    service = RecommendationService(settings)
    try:
        slow_forward(monkeypatch, service, "recommend", forward_s)

        async def client(i: int) -> list:
            return [await service.arecommend(KNOWN_USERS[(i * rounds + r) % len(KNOWN_USERS)], 10)
                    for r in range(rounds)]

        async def all_clients() -> list:
            return [a for answers in await asyncio.gather(*(client(i) for i in range(clients))) for a in answers]

        answers = asyncio.run(all_clients())
    finally:
        service.close()
    assert Counter(a.fallback_reason for a in answers) == {None: clients * rounds}
