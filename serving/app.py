"""Routes of the recommendation API. Run: ``uvicorn serving.app:app``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request

from pipeline.settings import Settings

MAX_K = 100


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from serving.recommender import RecommendationService

        app.state.service = RecommendationService(settings or Settings.from_env())
        yield

    app = FastAPI(
        title="Sequential recommender API",
        description="Next-item recommendations from the MLflow champion and Feast online features.",
        lifespan=lifespan,
    )

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        service = request.app.state.service
        return {
            "status": "ok" if service.model_version else "no_model",
            "model_name": service.model_name,
            "model_version": service.model_version,
        }

    @app.get("/recommendations/{user_id}")
    def recommendations(
        request: Request,
        user_id: Annotated[str, Path(min_length=1, max_length=256, description="The user's id")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description=f"How many items (1-{MAX_K})")] = 10,
    ) -> dict[str, Any]:
        from serving.recommender import NoChampion

        try:
            return asdict(request.app.state.service.recommend(user_id, k))
        except NoChampion as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    return app


app = create_app()
