"""The FastAPI app of ``ctxcomp serve``: ``/v1/compress``, the chat proxy, health and metrics.

Endpoints (details and examples: ``docs/server.md``):

* ``POST /v1/compress`` — ``{"query", "docs", "budget"?, "ratio"?}`` -> one compress-jsonl result
  record (``text``, ``sentences``, ``documents``, ``stats``).
* ``POST /v1/chat/completions`` — OpenAI-compatible proxy; a request's ``ctxcomp`` field is
  compressed into its messages (:mod:`ctxcomp.integrations.server.chat`) and the request forwarded
  to ``{upstream}/chat/completions``; without the field it is forwarded byte for byte.
* ``GET /v1/models`` — forwarded. ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

With ``upstream="echo"`` there is no LLM: chat requests are answered with the request that would
have been forwarded (:mod:`~ctxcomp.integrations.server.echo`).

Every error is JSON, ``{"error": {"type", "field", "message", "param", "code"}}``, never a traceback.

Example:
    >>> from ctxcomp import Compressor
    >>> app = create_app(Compressor(), ServerSettings(upstream="http://127.0.0.1:8001/v1"))
    >>> sorted(r.path for r in app.routes if r.path.startswith("/v1"))
    ['/v1/chat/completions', '/v1/compress', '/v1/models']
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    from ctxcomp.integrations.server.settings import missing_server_dependency

    raise missing_server_dependency(_err) from _err

from ctxcomp.api import Compressor, check_query
from ctxcomp.errors import CtxcompError
from ctxcomp.integrations.server.batcher import Batcher
from ctxcomp.integrations.server.chat import FIELD, rewrite
from ctxcomp.integrations.server.echo import ECHO, echo_models, echo_response
from ctxcomp.integrations.server.metrics import CONTENT_TYPE, Metrics
from ctxcomp.integrations.server.schemas import CompressRequest, error_body, parse_model, status_for
from ctxcomp.integrations.server.settings import ServerSettings
from ctxcomp.integrations.server.upstream import Upstream
from ctxcomp.records import load_json, result_record
from ctxcomp.types import CompressedContext, Document

logger = logging.getLogger(__name__)

ENDPOINTS = ("/v1/compress", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz", "/metrics")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RequestTooLarge(CtxcompError):
    """The request body is over ``max_request_bytes``."""


class CountRequests:
    """ASGI middleware counting answered requests by endpoint and status (unknown paths: ``other``).

    Example:
        >>> CountRequests(app=None, metrics=None).app is None
        True
    """

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, remembering the status it is answered with."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope["path"]
            self.metrics.request(path if path in ENDPOINTS else "other", status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all.

    Raises:
        RequestTooLarge: Over the limit (by ``Content-Length`` or by what arrived).

    Example:
        >>> body = await read_body(request, 8 * 1024 * 1024)  # doctest: +SKIP
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the body has {declared} bytes, over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"the body is over the limit of {limit} bytes")
    return bytes(body)


def _jsonable(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None`` (metadata scores may be infinite)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def error_response(
    err: BaseException, status: int, headers: dict[str, str] | None = None, message: str = ""
) -> JSONResponse:
    """The JSON error response for ``err``.

    Example:
        >>> from ctxcomp.errors import InputError
        >>> error_response(InputError("query", "is empty", "ask"), 400).status_code
        400
    """
    return JSONResponse(error_body(err, message=message), status_code=status, headers=headers)


def _too_large(err: RequestTooLarge) -> JSONResponse:
    msg = f"{err}; send less, or start the server with a larger --max-request-bytes"
    return error_response(err, 413, message=msg)


def _no_upstream() -> JSONResponse:
    msg = "this server has no upstream LLM; start ctxcomp serve with --upstream URL (http://host:port/v1)"
    return JSONResponse(error_body(kind="NoUpstream", message=msg), status_code=503)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def create_app(compressor: Compressor, settings: ServerSettings | None = None) -> FastAPI:
    """Build the server's FastAPI app around one compressor.

    The model starts loading on a worker thread when the app starts (``/healthz`` answers at once,
    ``/readyz`` turns 200 once it has loaded); every compression runs on that thread, batched
    (:class:`~ctxcomp.integrations.server.batcher.Batcher`).

    Args:
        compressor: The compressor (not yet loaded, usually).
        settings: Upstream, defaults and limits; ``None``: :class:`ServerSettings()` (no upstream).

    Returns:
        The app; serve it with uvicorn (``ctxcomp serve`` does).

    Example:
        >>> import uvicorn
        >>> from ctxcomp import Compressor
        >>> settings = ServerSettings(upstream="http://127.0.0.1:8001/v1")
        >>> uvicorn.run(create_app(Compressor(), settings))  # doctest: +SKIP
    """
    settings = settings or ServerSettings()
    metrics = Metrics()
    batcher = Batcher(
        compressor,
        budget=settings.budget,
        ratio=settings.ratio,
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        on_batch=metrics.batch,
    )
    metrics.ready.set_function(lambda: float(batcher.ready))
    echo = settings.upstream == ECHO
    upstream = (
        Upstream(settings.upstream, settings.upstream_timeout_s) if settings.upstream and not echo else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.close()
            if upstream is not None:
                await upstream.aclose()

    from ctxcomp import __version__

    app = FastAPI(title="ctxcomp", version=__version__, lifespan=lifespan)
    app.add_middleware(CountRequests, metrics=metrics)
    app.state.batcher, app.state.metrics, app.state.settings = batcher, metrics, settings

    async def compress(
        query: str, docs: list[Document], budget: int | None, ratio: float | None
    ) -> CompressedContext:
        t0 = time.perf_counter()
        try:
            ctx = await batcher.compress(query, docs, budget, ratio)
        except Exception as err:
            metrics.compressed(None, time.perf_counter() - t0, err)
            raise
        metrics.compressed(ctx, time.perf_counter() - t0, None)
        return ctx

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        body = error_body(kind="HTTPError", message=f"{request.method} {request.url.path}: {exc.detail}")
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(exc, 500, message="internal error; see the server log")

    @app.post("/v1/compress")
    async def compress_endpoint(request: Request) -> Response:
        """Compress documents for a question; the answer is one compress-jsonl result record."""
        try:
            raw = await read_body(request, settings.max_request_bytes)
            req = parse_model(CompressRequest, load_json(raw, where="body"))
            check_query(req.query)
            ctx = await compress(req.query, req.documents(), req.budget, req.ratio)
        except RequestTooLarge as err:
            return _too_large(err)
        except CtxcompError as err:
            return error_response(err, status_for(err))
        return JSONResponse(_jsonable(result_record(ctx)))

    async def forward(request: Request, body: bytes, headers: dict[str, str] | None = None) -> Response:
        if upstream is None:
            return echo_response(body, headers)
        return await upstream.relay("POST", "/chat/completions", request.headers, body, headers)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        """OpenAI-compatible chat: compress the ``ctxcomp`` documents into the messages, forward."""
        if upstream is None and not echo:
            return _no_upstream()
        try:
            raw = await read_body(request, settings.max_request_bytes)
        except RequestTooLarge as err:
            return _too_large(err)
        body = _json_object(raw)
        if body is None or FIELD not in body:
            return await forward(request, raw)
        try:
            out = await rewrite(body, compress, fail_closed=settings.fail_closed)
        except Exception as err:
            if not isinstance(err, CtxcompError):
                logger.exception("compression failed unexpectedly (fail-closed)")
            msg = "" if isinstance(err, CtxcompError) else "compression failed; see the server log"
            return error_response(err, status_for(err), {"x-ctxcomp-error": type(err).__name__}, msg)
        content = json.dumps(out.body, ensure_ascii=False).encode("utf-8")
        return await forward(request, content, out.headers)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        """The upstream's model list."""
        if upstream is None:
            return echo_models() if echo else _no_upstream()
        return await upstream.relay("GET", "/models", request.headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready: the model has loaded (503 while loading or after a failed load)."""
        if batcher.ready:
            return JSONResponse({"status": "ready", "model": compressor.config.proxy_model})
        err = batcher.load_error
        if err is not None:
            return JSONResponse({"status": "failed", **error_body(err)}, status_code=503)
        return JSONResponse({"status": "loading", "model": compressor.config.proxy_model}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


__all__ = ["ENDPOINTS", "CountRequests", "RequestTooLarge", "create_app", "error_response", "read_body"]
