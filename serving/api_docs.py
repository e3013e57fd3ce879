"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from this process, not a CDN.

FastAPI's own pages load Swagger UI, ReDoc, Google Fonts and a favicon from the internet, so on
a machine or network without it they render empty. The ``fastapi-offline`` package ships
``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js`` and ``favicon.png``; they
are mounted under :data:`STATIC_PATH` and the pages point there (ReDoc without Google Fonts:
it falls back to the browser's fonts).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
STATIC_PATH = "/static/api-docs"
# Swagger UI's "validator" badge sends the spec to an online validator; nothing to do offline.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def assets_dir() -> str:
    """The folder of the installed ``fastapi_offline`` package that holds the JS/CSS files."""
    return str(files("fastapi_offline") / "static")


def mount_offline_docs(app: FastAPI) -> None:
    """Add ``/docs``, its OAuth2 redirect page, ``/redoc`` and the static assets they load.

    ``app`` must be created with ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages do not
    take the same paths. URLs honour the ASGI ``root_path`` (the app behind a path prefix).
    """
    app.mount(STATIC_PATH, StaticFiles(directory=assets_dir()), name="api-docs-static")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or f"{DOCS_PATH}/oauth2-redirect"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PATH}/favicon.png",
            swagger_ui_parameters={**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_PATH}/favicon.png",
            with_google_fonts=False,
        )
