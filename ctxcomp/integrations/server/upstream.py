"""Forwarding to the OpenAI-compatible upstream with httpx: plain or streamed (SSE) answers.

The caller's headers go upstream (``Authorization`` included) except hop-by-hop ones; the
upstream's status, headers and body come back unchanged (bodies decoded: ``content-encoding`` is
dropped). An upstream that cannot be reached answers 502 (504 on a timeout) with a JSON error
naming its URL.

Example:
    >>> forward_headers({"Host": "x", "Authorization": "Bearer k", "Content-Length": "3"})
    {'Authorization': 'Bearer k'}
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

try:
    import httpx
    from starlette.background import BackgroundTask
    from starlette.responses import JSONResponse, Response, StreamingResponse
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    from ctxcomp.integrations.server.settings import missing_server_dependency

    raise missing_server_dependency(_err) from _err

from ctxcomp.integrations.server.schemas import error_body

logger = logging.getLogger(__name__)

_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "content-encoding",
    }
)


#: Answer headers the server sets itself.
_OWN = frozenset({"date", "server"})


def forward_headers(headers: Mapping[str, str], *, answer: bool = False) -> dict[str, str]:
    """``headers`` without hop-by-hop, length and encoding headers (httpx sets those itself).

    Args:
        headers: Request or answer headers.
        answer: Also drop ``date`` and ``server``, which this server sets on its answers.

    Example:
        >>> forward_headers({"content-type": "application/json", "connection": "close"})
        {'content-type': 'application/json'}
    """
    drop = _DROP | _OWN if answer else _DROP
    return {k: v for k, v in headers.items() if k.lower() not in drop}


class Upstream:
    """An OpenAI-compatible LLM server reached over HTTP.

    Args:
        base_url: Its base URL up to and including ``/v1`` (no trailing slash).
        timeout_s: The longest wait between two bytes of an answer (connecting: at most 10 s).

    Example:
        >>> import asyncio
        >>> up = Upstream("http://127.0.0.1:8001/v1")
        >>> up.url("/models")
        'http://127.0.0.1:8001/v1/models'
        >>> asyncio.run(up.aclose())
    """

    def __init__(self, base_url: str, timeout_s: float = 600.0) -> None:
        self.base_url = base_url
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=64),
        )

    def url(self, path: str) -> str:
        """The upstream URL of ``path`` (``/chat/completions``)."""
        return f"{self.base_url}{path}"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def relay(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request upstream and relay its answer (streamed when it is an event stream).

        Args:
            method: ``GET`` or ``POST``.
            path: The path under the base URL.
            headers: The caller's request headers.
            body: The request body.
            extra_headers: Headers added to the answer (``x-ctxcomp-*``).

        Returns:
            The response to send to the caller: the upstream's status, headers and body, or a JSON
            502/504 error when the upstream cannot be reached.

        Example:
            >>> response = await upstream.relay("GET", "/models", request.headers)  # doctest: +SKIP
        """
        url = self.url(path)
        request = self.client.build_request(method, url, headers=forward_headers(headers), content=body)
        try:
            answer = await self.client.send(request, stream=True)
        except httpx.TimeoutException as err:
            return _unreachable(504, f"the upstream {url} timed out ({type(err).__name__})")
        except httpx.TransportError as err:
            return _unreachable(502, f"cannot reach the upstream {url} ({type(err).__name__}: {err})")
        out_headers = {**forward_headers(answer.headers, answer=True), **(extra_headers or {})}
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(
                _chunks(answer, url),
                status_code=answer.status_code,
                headers=out_headers,
                background=BackgroundTask(answer.aclose),
            )
        try:
            content = await answer.aread()
        except httpx.TransportError as err:
            return _unreachable(502, f"the upstream {url} broke off its answer ({type(err).__name__})")
        finally:
            await answer.aclose()
        return Response(content, status_code=answer.status_code, headers=out_headers)


async def _chunks(answer: httpx.Response, url: str) -> AsyncIterator[bytes]:
    """The upstream's body as it arrives; a broken-off stream ends (and is logged)."""
    try:
        async for chunk in answer.aiter_bytes():
            yield chunk
    except httpx.TransportError as err:
        logger.warning("the upstream %s broke off a stream: %s", url, type(err).__name__)
    finally:  # also when the caller went away mid-stream
        await answer.aclose()


def _unreachable(status: int, message: str) -> JSONResponse:
    logger.warning("%s", message)
    return JSONResponse(error_body(kind="UpstreamError", message=message), status_code=status)


__all__ = ["Upstream", "forward_headers"]
