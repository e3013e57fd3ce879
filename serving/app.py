"""Routes of the recommendation API. Run: ``uvicorn serving.app:app``.

* ``GET  /recommendations/{user_id}?k=`` - one user's top-k (k 1-100);
* ``POST /recommendations/batch``        - up to 1000 users in one request;
* ``GET  /health``                       - what is served and whether it is the champion:
  ``ok`` (200) - the version the registry's champion alias points at;
  ``degraded`` (200) - a verified older version (the last good local copy when the champion could
  not be loaded at start, or the previous model while the alias points at a version serving
  refused), with the ``reason``. 200 on purpose: the answers are correct, from an older model,
  and a registry outage taking every replica out of rotation would turn it into a full outage;
  alert on ``status`` / ``recsys_serving_status{status="degraded"}`` instead;
  ``no_model`` (503) - nothing to serve, so a load balancer takes the replica out;
* ``GET  /metrics``                      - Prometheus text format;
* ``GET  /docs``, ``/redoc``             - Swagger UI / ReDoc, their assets served by the app
  (:mod:`serving.api_docs`), so they render without internet access;
* ``POST /events``                       - push live events into users' online recent items, so
  their next recommendations react within the session (Feast push source); with
  ``RECSYS_EVENTS_TOKEN`` set it needs ``Authorization: Bearer <token>``; event times are
  bounded (``max_future_skew_minutes`` ahead, ``max_event_age_days`` back) and the push is given
  up after ``push_timeout_ms`` (503).

Bound to an address other than loopback (``RECSYS_API_HOST``, the same host uvicorn binds: see
the Makefile's ``api`` target), the app refuses to start unless both tokens are set.
* ``POST /admin/reload``                 - check the registry's champion now (after a promotion
  or a rollback) instead of waiting for the poller; with ``RECSYS_ADMIN_TOKEN`` set it needs
  ``Authorization: Bearer <token>``.

Once a champion is loaded the recommendation routes never answer 5xx: a slow or failing online
store or model gives popular items with ``fallback: true`` and a ``fallback_reason``. Before any
promotion they answer 503. Beyond ``serving_max_concurrency`` requests in flight (or
``2 * serving_batch_workers`` batches) they answer 429 with ``Retry-After``; ``/health``,
``/metrics`` and ``/admin/reload`` are never refused (:mod:`serving.overload`).
"""

from __future__ import annotations

import gc
import ipaddress
import secrets
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.settings import Settings

MAX_K = 100
MAX_BATCH_USERS = 1000
MAX_USER_ID_LENGTH = 256
MAX_PUSHED_EVENTS = 100

FALLBACK_REASONS = Literal["unknown_user", "no_known_items", "feature_store_timeout", "feature_store_error",
                           "model_error"]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_ID_LENGTH)]


class Item(BaseModel):
    item_id: str
    score: float | None = Field(description="The model's score; null for a popularity fallback")
    rank: int = Field(ge=1)


class RecommendationOut(BaseModel):
    user_id: str
    items: list[Item]
    model_name: str
    model_version: str | None
    fallback: bool = Field(description="true: popular items, not the model's personal ranking")
    fallback_reason: FALLBACK_REASONS | None = None
    recent_item_ids: list[str] = Field(default_factory=list)
    source: Literal["model", "precomputed", "popularity"] = "model"


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] = Field(
        min_length=1, max_length=MAX_BATCH_USERS,
        description=f"1-{MAX_BATCH_USERS} user ids (1-{MAX_USER_ID_LENGTH} characters each)",
    )
    k: int = Field(10, ge=1, le=MAX_K, description=f"How many items per user (1-{MAX_K})")


class LiveEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    item_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_ID_LENGTH)]
    event_type: Literal["view", "click", "add_to_cart", "purchase"] = "view"
    event_time: datetime | None = Field(
        None, description="ISO 8601; default: now. Naive = UTC. At most max_future_skew_minutes "
                          "ahead of the server's clock and max_event_age_days back (else 422)")


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[LiveEvent] = Field(min_length=1, max_length=MAX_PUSHED_EVENTS,
                                    description=f"1-{MAX_PUSHED_EVENTS} events")


class EventsOut(BaseModel):
    users: int
    events: int
    recent_item_ids: dict[str, list[str]]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # 0.0.0.0 is an address; any other name may resolve anywhere


def refuse_exposed_without_tokens(settings: Settings) -> None:
    """Raise (one line) when the API binds a non-loopback address with a write route left open."""
    if is_loopback(settings.api_host):
        return
    missing = [name for name, token in (("RECSYS_EVENTS_TOKEN", settings.events_token),
                                        ("RECSYS_ADMIN_TOKEN", settings.admin_token)) if not token]
    if missing:
        raise RuntimeError(
            f"refusing to start: RECSYS_API_HOST={settings.api_host!r} is not a loopback address "
            f"and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty; set both "
            "tokens, or bind 127.0.0.1")


def require_bearer(request: Request, expected: str, what: str) -> None:
    """401 unless the request carries ``Bearer <expected>``; an empty ``expected`` lets all in
    (loopback only: :func:`refuse_exposed_without_tokens`)."""
    if not expected:
        return
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        raise HTTPException(status_code=401, detail=f"a valid {what} bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})


def events_authorized(request: Request) -> None:
    """Dependency of ``POST /events``: runs before the body is read, so an unauthenticated
    caller learns nothing about the payload rules."""
    require_bearer(request, request.app.state.service.settings.events_token, "events")


class BatchOut(BaseModel):
    results: list[RecommendationOut]


class ReloadOut(BaseModel):
    model_version: str | None
    changed: bool
    error: str | None = None
    previous_version: str | None = None


class ChampionRefused(BaseModel):
    version: str | None
    reason: str


class Health(BaseModel):
    status: Literal["ok", "degraded", "no_model"] = Field(
        description="ok (200): serving the champion; degraded (200): serving a verified older "
                    "version, see reason; no_model (503): nothing to serve")
    model_name: str | None
    model_version: str | None
    served_from: Literal["registry", "last_good"] | None = Field(
        None, description="registry: loaded from MLflow; last_good: the local copy of the last "
                          "verified version, used when the champion could not be loaded at start")
    reason: str | None = Field(None, description="Why the status is not ok")
    champion_refused: ChampionRefused | None = Field(
        None, description="The version the champion alias points at, refused by serving (no, failed "
                          "or unsigned decision record, replaced or broken artifact)")
    retrieval: Literal["ann", "exact"] | None = Field(
        None, description="ann: candidates from the version's nearest-neighbour index, scored "
                          "exactly; exact: every item scored")
    retrieval_reason: str | None = Field(None, description="Why the served model scores every item")


class MetricsMiddleware:
    """Counts and times every request by route template (``/recommendations/{user_id}``)."""

    def __init__(self, app, get_metrics):
        self.app, self.get_metrics = app, get_metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics = self.get_metrics()
            if metrics is not None:
                route = scope.get("route")
                endpoint = getattr(route, "path", None) or "unmatched"
                metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()
                metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from serving.recommendation_service import RecommendationService
        from serving.champion_poller import ChampionFollower

        if getattr(app.state, "service", None) is not None:
            # A service set by the caller (tests mounting one service on two apps) is theirs
            # to start and stop.
            yield
            return
        resolved = settings or Settings.from_env()
        refuse_exposed_without_tokens(resolved)  # before anything is loaded
        import torch

        threads_before = torch.get_num_threads()
        if resolved.serving_torch_threads > 0:
            torch.set_num_threads(resolved.serving_torch_threads)
        service = RecommendationService(resolved)
        app.state.service = service
        follower = ChampionFollower(service, resolved.champion_poll_seconds).start()
        # What start-up built (modules, the model, Feast's registry) stays for the process's life:
        # frozen, it is out of the collector's reach, so a full collection set off by a batch's
        # allocations scans only new objects while it holds every thread, the event loop's too.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            follower.stop()
            service.close()
            app.state.service = None
            gc.unfreeze()
            torch.set_num_threads(threads_before)  # an in-process app (tests, demo) leaves no trace

    app = FastAPI(
        title="Sequential recommender API",
        description=(
            "Next-item recommendations from the MLflow champion and Feast online features. "
            f"Limits: k 1-{MAX_K}; user ids 1-{MAX_USER_ID_LENGTH} characters; a batch holds "
            f"1-{MAX_BATCH_USERS} user ids; request bodies accept no unknown field. Answers are "
            "popular items with `fallback: true` when the user is unknown, the online store is "
            "slow or unreachable, or the model fails; 503 only when no model can be served. "
            "`/health`: `ok` 200, `degraded` 200 (a verified older version serves; see `reason`), "
            "`no_model` 503."
        ),
        lifespan=lifespan,
        # /docs and /redoc come from serving.api_docs, with their JS/CSS served locally.
        docs_url=None,
        redoc_url=None,
    )
    from serving.api_docs import mount_offline_docs

    mount_offline_docs(app)
    from fastapi.exceptions import RequestValidationError

    from serving.api_errors import clipped_validation_errors

    app.add_exception_handler(RequestValidationError, clipped_validation_errors)
    from serving.overload import LoadShedding

    # Inside the metrics middleware, so a refused request is counted and timed like any other.
    app.add_middleware(LoadShedding, get_service=lambda: getattr(app.state, "service", None))
    app.add_middleware(MetricsMiddleware, get_metrics=lambda: getattr(
        getattr(app.state, "service", None), "metrics", None))

    def service_of(request: Request):
        return request.app.state.service

    no_champion = {503: {"description": "No model can be served: none promoted yet, or the champion "
                                        "cannot serve and no verified earlier version is on disk"},
                   429: {"description": "Too many requests in flight; retry after the Retry-After "
                                        "header's seconds"}}

    @app.get("/health", response_model=Health,
             responses={503: {"model": Health, "description": "no_model: nothing to serve"}})
    async def health(request: Request) -> Response:
        # async and a snapshot read only: never queued behind the sync routes' worker threads.
        body = service_of(request).health
        return JSONResponse(body, status_code=503 if body["status"] == "no_model" else 200)

    @app.get("/recommendations/{user_id}", response_model=RecommendationOut, responses=no_champion)
    async def recommendations(
        request: Request,
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_USER_ID_LENGTH, description="The user's id")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description=f"How many items (1-{MAX_K})")] = 10,
    ) -> Response:
        from serving.recommendation_service import NoChampion

        try:
            answer = await service_of(request).arecommend(user_id, k)
        except NoChampion as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        # Built by the service in the declared shape; returning the Response skips FastAPI's
        # re-validation of every answer. The schemathesis test
        # checks answers against the OpenAPI schema, so the shape cannot drift unnoticed.
        return JSONResponse(answer.to_dict())

    @app.post("/recommendations/batch", response_model=BatchOut, responses=no_champion,
              summary=f"Recommendations for 1-{MAX_BATCH_USERS} users")
    async def recommendations_batch(request: Request, body: BatchRequest) -> Response:
        from serving.recommendation_service import NoChampion

        try:
            # Answers and their JSON are built in the batch pool, off the event loop.
            encoded = await service_of(request).arecommend_many_body(list(body.user_ids), body.k)
        except NoChampion as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        return Response(encoded, media_type="application/json")

    @app.post("/events", response_model=EventsOut, dependencies=[Depends(events_authorized)],
              responses={401: {"description": "RECSYS_EVENTS_TOKEN is set and the bearer token differs"},
                         422: {"description": "A malformed event or an event_time out of bounds "
                                               "(the reason names the event's index); nothing was pushed"},
                         503: {"description": "The online store is unreachable, busy or did not answer "
                                               "within push_timeout_ms; the push is not confirmed"}},
              summary=f"Append 1-{MAX_PUSHED_EVENTS} live events to users' online recent items")
    async def push_events(request: Request, body: EventsRequest) -> dict[str, Any]:
        # async: the push waits on features.push's own bounded thread with a deadline, never on
        # the worker threads the sync routes share.
        from features.push import PushRefused, push_user_events_within

        service = service_of(request)
        events = [e.model_dump(exclude_none=True) for e in body.events]
        try:
            pushed = await push_user_events_within(service.settings, events, store=service.feature_store)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except PushRefused as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        except Exception as exc:  # the store's own errors (connection refused, socket timeouts)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise HTTPException(status_code=503, detail=f"online store unavailable: {reason}") from exc
        return {k: pushed[k] for k in ("users", "events", "recent_item_ids")}

    @app.post("/admin/reload", response_model=ReloadOut,
              responses={401: {"description": "RECSYS_ADMIN_TOKEN is set and the bearer token differs"}},
              summary="Load the registry's current champion now if its signed decision record lets "
                      "it serve (refused versions are retried)")
    def reload(request: Request) -> dict[str, Any]:
        service = service_of(request)
        expected = service.settings.admin_token
        if expected:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {expected}".encode()):
                raise HTTPException(status_code=401, detail="a valid admin bearer token is required",
                                    headers={"WWW-Authenticate": "Bearer"})
        from serving.api_errors import without_error_detail

        return without_error_detail(service.reload_champion(force=True))

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    async def metrics(request: Request) -> Response:
        # async: rendering reads counters in memory, no I/O, and must not wait for a worker thread.
        m = service_of(request).metrics
        return Response(m.render(), media_type=m.content_type)

    return app


app = create_app()
