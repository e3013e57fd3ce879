"""Routes of the recommendation API. Run: ``uvicorn serving.app:app``.

* ``GET  /recommendations/{user_id}?k=`` - one user's top-k (k 1-100);
* ``POST /recommendations/batch``        - up to 1000 users in one request;
* ``GET  /health``                       - the champion being served;
* ``GET  /metrics``                      - Prometheus text format;
* ``POST /events``                       - push live events into users' online recent items, so
  their next recommendations react within the session (Feast push source);
* ``POST /admin/reload``                 - check the registry's champion now (after a promotion
  or a rollback) instead of waiting for the poller; with ``RECSYS_ADMIN_TOKEN`` set it needs
  ``Authorization: Bearer <token>``.

Once a champion is loaded the recommendation routes never answer 5xx: a slow or failing online
store or model gives popular items with ``fallback: true`` and a ``fallback_reason``. Before any
promotion they answer 503.
"""

from __future__ import annotations

import secrets
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.settings import Settings

MAX_K = 100
MAX_BATCH_USERS = 1000
MAX_USER_ID_LENGTH = 256
MAX_PUSHED_EVENTS = 100

FALLBACK_REASONS = Literal["unknown_user", "feature_store_timeout", "feature_store_error", "model_error"]
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
    event_time: datetime | None = Field(None, description="ISO 8601; default: now. Naive = UTC")


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[LiveEvent] = Field(min_length=1, max_length=MAX_PUSHED_EVENTS,
                                    description=f"1-{MAX_PUSHED_EVENTS} events")


class EventsOut(BaseModel):
    users: int
    events: int
    recent_item_ids: dict[str, list[str]]


class BatchOut(BaseModel):
    results: list[RecommendationOut]


class ReloadOut(BaseModel):
    model_version: str | None
    changed: bool
    error: str | None = None
    previous_version: str | None = None


class Health(BaseModel):
    status: Literal["ok", "no_model"]
    model_name: str | None
    model_version: str | None


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
        from serving.recommender import RecommendationService
        from serving.registry import ChampionFollower

        if getattr(app.state, "service", None) is not None:
            # A service set by the caller (tests mounting one service on two apps) is theirs
            # to start and stop.
            yield
            return
        import torch

        resolved = settings or Settings.from_env()
        threads_before = torch.get_num_threads()
        if resolved.serving_torch_threads > 0:
            torch.set_num_threads(resolved.serving_torch_threads)
        service = RecommendationService(resolved)
        app.state.service = service
        follower = ChampionFollower(service, resolved.champion_poll_seconds).start()
        try:
            yield
        finally:
            follower.stop()
            service.close()
            app.state.service = None
            torch.set_num_threads(threads_before)  # an in-process app (tests, demo) leaves no trace

    app = FastAPI(
        title="Sequential recommender API",
        description=(
            "Next-item recommendations from the MLflow champion and Feast online features. "
            f"Limits: k 1-{MAX_K}; user ids 1-{MAX_USER_ID_LENGTH} characters; a batch holds "
            f"1-{MAX_BATCH_USERS} user ids; request bodies accept no unknown field. Answers are "
            "popular items with `fallback: true` when the user is unknown, the online store is "
            "slow or unreachable, or the model fails; 503 only before any model was promoted."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, get_metrics=lambda: getattr(
        getattr(app.state, "service", None), "metrics", None))

    def service_of(request: Request):
        return request.app.state.service

    no_champion = {503: {"description": "No champion has been promoted yet"}}

    @app.get("/health", response_model=Health)
    def health(request: Request) -> dict[str, Any]:
        service = service_of(request)
        return {
            "status": "ok" if service.model_version else "no_model",
            "model_name": service.model_name,
            "model_version": service.model_version,
        }

    @app.get("/recommendations/{user_id}", response_model=RecommendationOut, responses=no_champion)
    async def recommendations(
        request: Request,
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_USER_ID_LENGTH, description="The user's id")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description=f"How many items (1-{MAX_K})")] = 10,
    ) -> Response:
        from serving.recommender import NoChampion

        try:
            answer = await service_of(request).arecommend(user_id, k)
        except NoChampion as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        # Built by the service in the declared shape; returning the Response skips FastAPI's
        # re-validation of every answer (a fifth of the route's time). The schemathesis test
        # checks answers against the OpenAPI schema, so the shape cannot drift unnoticed.
        return JSONResponse(answer.to_dict())

    @app.post("/recommendations/batch", response_model=BatchOut, responses=no_champion,
              summary=f"Recommendations for 1-{MAX_BATCH_USERS} users")
    async def recommendations_batch(request: Request, body: BatchRequest) -> Response:
        from serving.recommender import NoChampion

        try:
            results = await service_of(request).arecommend_many(list(body.user_ids), body.k)
        except NoChampion as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        return JSONResponse({"results": [r.to_dict() for r in results]})

    @app.post("/events", response_model=EventsOut,
              responses={422: {"description": "A malformed event; nothing was pushed"},
                         503: {"description": "The online store is unreachable; nothing was pushed"}},
              summary=f"Append 1-{MAX_PUSHED_EVENTS} live events to users' online recent items")
    def push_events(request: Request, body: EventsRequest) -> dict[str, Any]:
        from features.push import push_user_events

        service = service_of(request)
        events = [e.model_dump(exclude_none=True) for e in body.events]
        try:
            pushed = push_user_events(service.settings, events, store=service.feature_store)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except Exception as exc:  # the store's own errors (connection refused, timeouts)
            raise HTTPException(status_code=503, detail=f"online store unavailable: {exc}") from exc
        return {k: pushed[k] for k in ("users", "events", "recent_item_ids")}

    @app.post("/admin/reload", response_model=ReloadOut,
              responses={401: {"description": "RECSYS_ADMIN_TOKEN is set and the bearer token differs"}},
              summary="Load the registry's current champion now (refused versions are retried)")
    def reload(request: Request) -> dict[str, Any]:
        service = service_of(request)
        expected = service.settings.admin_token
        if expected:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {expected}".encode()):
                raise HTTPException(status_code=401, detail="a valid admin bearer token is required",
                                    headers={"WWW-Authenticate": "Bearer"})
        return service.reload_champion(force=True)

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics(request: Request) -> Response:
        m = service_of(request).metrics
        return Response(m.render(), media_type=m.content_type)

    return app


app = create_app()
