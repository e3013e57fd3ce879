"""What the API's error answers may say. A 422 echoes at most a short prefix of what was sent
(FastAPI's default echoes each error's whole input, a 10 KB id included), and ``POST
/admin/reload`` answers a fixed sentence for a failed load: the reason (registry addresses, file
paths, library messages) goes to the server's log only."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

MAX_ECHOED_CHARS = 64
RELOAD_FAILED = "the champion could not be loaded; the reason is in the server's log"


def clip(value: Any, limit: int = MAX_ECHOED_CHARS) -> Any:
    """``value`` (its JSON form when not a string) if it is short, else its first ``limit``
    characters and its full length: an error never echoes a caller's 10 KB id back whole."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, BaseException):  # a validator's error in ``ctx``: its message
        value = str(value)
    if isinstance(value, str):
        text = value
    else:
        try:
            encoded = jsonable_encoder(value)
            text = json.dumps(encoded)
        except (TypeError, ValueError):
            encoded = text = str(value)
        if len(text) <= limit:
            return encoded
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def clipped_validation_errors(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 with what it echoes cut short: each error's ``input``, ``ctx`` values and
    ``loc`` parts (an unknown field's name is the caller's) to :data:`MAX_ECHOED_CHARS`."""
    errors = []
    for error in exc.errors():
        error = dict(error, loc=[p if isinstance(p, int) else clip(str(p)) for p in error.get("loc", ())])
        error["msg"] = clip(str(error.get("msg", "")), 4 * MAX_ECHOED_CHARS)
        if "input" in error:
            error["input"] = clip(error["input"])
        if isinstance(error.get("ctx"), dict):
            error["ctx"] = {key: clip(value) for key, value in error["ctx"].items()}
        errors.append(error)
    return JSONResponse({"detail": errors}, status_code=422)


def without_error_detail(answer: dict[str, Any]) -> dict[str, Any]:
    """``/admin/reload``'s answer with a fixed sentence for its error: the reason (registry
    addresses, file paths, library messages) is logged here, never sent to the caller."""
    if not answer.get("error"):
        return answer
    log.warning("POST /admin/reload: %s", answer["error"])
    return answer | {"error": RELOAD_FAILED}
