"""A hung online store on the push path: a real TCP server that accepts connections and never
answers stands in for a hung Redis. ``POST /events`` answers 503 with a one-line reason instead of
hanging, the pushes do not pile up threads, and a direct (command-line) push fails at the Redis
client's socket timeout instead of holding its thread for good."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient

from features import push as push_module
from features import store as feature_ops
from tests.reliability.events_host import applied, events_app

# Only a guard against a hang: every call here is expected back long before it.
HANG_GUARD_S = 30.0
CONCURRENT_PUSHES = 60


class HungServer:
    """Listens on a free loopback port, accepts every connection and never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hung-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections.append(connection)

    def close(self) -> None:
        """Closing the accepted connections releases any client still waiting (old code)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def hung(tmp_path):
    """Settings whose Redis online store is the hung server (registry applied beforehand)."""
    server = HungServer()
    settings = applied(tmp_path / "home").replace(
        feast_online_store="redis",
        redis_connection_string=f"127.0.0.1:{server.port}", push_timeout_ms=300)
    yield settings, server
    server.close()


def _threads_in_redis_client() -> int:
    """Threads whose stack is inside the redis client right now (waiting on the hung server)."""
    return sum(
        any("/redis/" in f.f_code.co_filename for f in _stack(frame))
        for frame in sys._current_frames().values()
    )


def _stack(frame):
    while frame is not None:
        yield frame
        frame = frame.f_back


def test_pushes_to_a_hung_store_answer_503_without_piling_up_threads(hung):
    settings, server = hung
    client_context = TestClient(events_app(settings))
    client = client_context.__enter__()
    answers: list = []
    peak = {"redis_threads": 0, "push_threads": 0}

    def push(n: int) -> None:
        answers.append(client.post("/events", json={"events": [{"user_id": f"u{n}", "item_id": "i1"}]}))

    try:
        callers = [threading.Thread(target=push, args=(n,), daemon=True) for n in range(CONCURRENT_PUSHES)]
        for caller in callers:
            caller.start()
        guard = time.monotonic() + HANG_GUARD_S
        while any(c.is_alive() for c in callers) and time.monotonic() < guard:
            peak["redis_threads"] = max(peak["redis_threads"], _threads_in_redis_client())
            peak["push_threads"] = max(peak["push_threads"], sum(
                t.name.startswith("feature-push") for t in threading.enumerate()))
            time.sleep(0.005)
        assert not any(c.is_alive() for c in callers), "a push to the hung store never answered"
        assert server.connections, "the store was never even reached"

        assert len(answers) == CONCURRENT_PUSHES
        for answer in answers:
            assert answer.status_code == 503
            reason = answer.json()["detail"]
            assert "\n" not in reason and reason.startswith(("online store did not answer within 300 ms",
                                                             "online store busy",
                                                             "online store unavailable"))
        assert any("did not answer within" in a.json()["detail"] for a in answers)
        # one push thread talks to the store; the request threads never do
        assert peak["push_threads"] <= 1 and peak["redis_threads"] <= 1
        assert push_module._QUEUE.pending <= push_module.MAX_PENDING_PUSHES
    finally:
        server.close()
        client_context.__exit__(None, None, None)


def test_a_direct_push_to_a_hung_redis_fails_at_the_socket_timeout(hung):
    import redis

    settings, _ = hung
    outcome: dict = {}

    def push() -> None:
        try:
            push_module.push_user_events(settings, [{"user_id": "u1", "item_id": "i9"}],
                                         store=feature_ops.feature_store(settings))
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    caller = threading.Thread(target=push, daemon=True)
    caller.start()
    caller.join(timeout=HANG_GUARD_S)
    assert not caller.is_alive(), "a push to the hung Redis never returned"
    assert isinstance(outcome.get("error"), redis.exceptions.TimeoutError), outcome
