"""Keeping the event loop answering under load.

One uvicorn worker runs every request on one event loop, so anything that holds the loop (a
model forward, encoding a large answer) delays every other request, ``/health`` included, and
makes online-store reads that already have their reply look slow. Three parts keep it short:

* :class:`LoadShedding` (ASGI middleware) refuses work beyond ``serving_max_concurrency``
  requests in flight, and batches beyond ``2 * serving_batch_workers``, with 429 and
  ``Retry-After`` (counted in ``recsys_shed_requests_total{endpoint}``) instead of queueing it.
  ``/health``, ``/metrics`` and ``/admin/reload`` are never refused: a load balancer and an
  operator must see the service while it sheds;
* :func:`forward_turn`: single-user forwards stay on the loop (cheaper than a thread hop) but
  take turns, one per loop pass, so the loop polls its sockets between two forwards;
* :func:`batch_body`: a batch's JSON, built per user in the batch pool's thread (see
  ``RecommendationService.arecommend_many_body``), so the interpreter lock changes hands between
  users instead of being held for one encode of the whole answer.

A fourth lives in ``serving.app``'s start-up: the objects start-up built are frozen out of the
garbage collector, since a full collection (set off by a batch's allocations in any thread)
holds the interpreter lock, and so the event loop, for as long as it scans.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections import deque
from typing import Any, Callable, Iterable

BATCH_PATH = "/recommendations/batch"
NEVER_SHED = frozenset({"/health", "/metrics", "/admin/reload"})
RETRY_AFTER_S = 1


def batch_limit(settings) -> int:
    """Batches in flight at once: one running and one waiting per batch worker (a batch is up
    to a thousand users of work, so more would only wait, holding their request bodies)."""
    return 2 * max(1, settings.serving_batch_workers)


class LoadShedding:
    """429 with ``Retry-After`` for a request that would exceed the service's limits.

    The limits are read from the service's settings on every request (tests swap them); a limit
    of 0 or less turns that limit off. Counters are plain integers: the middleware runs on the
    one event loop, never in a thread.
    """

    def __init__(self, app, get_service: Callable[[], Any]):
        self.app, self.get_service = app, get_service
        self.in_flight = 0
        self.batches = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            return await self.app(scope, receive, send)
        service = self.get_service()
        if service is None:  # before start-up: nothing to protect yet
            return await self.app(scope, receive, send)
        settings = service.settings
        is_batch = scope["path"] == BATCH_PATH
        limit = settings.serving_max_concurrency
        if 0 < limit <= self.in_flight:
            return await self._shed(scope, send, service, f"{self.in_flight} requests in flight (limit {limit})")
        if is_batch and self.batches >= batch_limit(settings):
            return await self._shed(scope, send, service,
                                    f"{self.batches} batches in flight (limit {batch_limit(settings)})")
        self.in_flight += 1
        self.batches += is_batch
        service.metrics.in_flight.set(self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.batches -= is_batch
            service.metrics.in_flight.set(self.in_flight)

    async def _shed(self, scope, send, service, why: str) -> None:
        route = _matching_route(scope)
        if route is not None:
            scope["route"] = route  # the metrics middleware labels the answer by its route template
        endpoint = getattr(route, "path", None) or "unmatched"
        service.metrics.shed.labels(endpoint=endpoint).inc()
        body = json.dumps({"detail": f"overloaded: {why}; retry after {RETRY_AFTER_S} s"}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode())]})
        await send({"type": "http.response.body", "body": body})


def _matching_route(scope) -> Any:
    from starlette.routing import Match

    app = scope.get("app")
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route
    return None


class ForwardTurns:
    """One forward per loop pass on one event loop.

    A forward on the loop runs without yielding, so when many reads finish in the same pass,
    their forwards ran back to back and the loop polled no socket until all were done: a read
    sent meanwhile had its reply waiting while its timeout ran out (``feature_store_timeout``
    on a healthy store). Here the first forward of a pass goes at once; later ones wait and are
    let through one per pass, in arrival order, with a socket poll before each.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._waiting: deque[asyncio.Future] = deque()
        self._taken = False  # a forward already ran (or was let through) in this pass

    async def turn(self) -> None:
        if not self._taken and not self._waiting:
            self._taken = True
            self._loop.call_soon(self._next)  # runs at the next pass, after a socket poll
            return
        waiter = self._loop.create_future()
        self._waiting.append(waiter)
        await waiter

    def _next(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled waiter (client gone) gives its turn away
                waiter.set_result(None)
                self._loop.call_soon(self._next)
                return
        self._taken = False


_turns: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ForwardTurns]" = weakref.WeakKeyDictionary()


async def forward_turn() -> None:
    """Wait for this event loop's next forward turn (see :class:`ForwardTurns`)."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = ForwardTurns(loop)
    await turns.turn()


def batch_body(results: Iterable[Any]) -> bytes:
    """``{"results": [...]}`` as JSONResponse renders it, encoded one answer at a time."""
    parts = [json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
             for r in results]
    return ('{"results":[' + ",".join(parts) + "]}").encode("utf-8")
