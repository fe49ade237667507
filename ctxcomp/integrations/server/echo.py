"""``--upstream echo``: no LLM; a chat request is answered with the request ctxcomp would forward.

For trying the proxy out and for debugging placement: the assistant's message is the forwarded
request as indented JSON (compressed context in place, ``ctxcomp`` field gone), streamed as one
chunk when the request asks for ``stream``.

Example:
    >>> r = echo_response(b'{"model": "m", "messages": []}', {"x-ctxcomp-kept-tokens": "3"})
    >>> r.status_code, r.headers["x-ctxcomp-kept-tokens"]
    (200, '3')
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

try:
    from starlette.responses import JSONResponse, Response
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    from ctxcomp.integrations.server.settings import missing_server_dependency

    raise missing_server_dependency(_err) from _err

#: The ``--upstream`` value that selects this mode.
ECHO = "echo"


def echo_response(body: bytes, headers: Mapping[str, str] | None = None) -> Response:
    """A chat completion (or SSE stream) whose content is ``body``, the request as forwarded.

    Args:
        body: The request body that would go upstream.
        headers: Headers for the answer (``x-ctxcomp-*``).

    Returns:
        The response.
    """
    try:
        request: Any = json.loads(body)
        content = json.dumps(request, indent=2, ensure_ascii=False)
    except ValueError:
        request, content = None, body.decode("utf-8", errors="replace")
    model = request.get("model", ECHO) if isinstance(request, dict) else ECHO
    base = {"id": "chatcmpl-echo", "created": int(time.time()), "model": model}
    if isinstance(request, dict) and request.get("stream"):
        chunks = [
            {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None},
            {"index": 0, "delta": {}, "finish_reason": "stop"},
        ]
        events = "".join(
            f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [c]})}\n\n"
            for c in chunks
        )
        return Response(
            events + "data: [DONE]\n\n", media_type="text/event-stream", headers=dict(headers or {})
        )
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    completion = {**base, "object": "chat.completion", "choices": [choice]}
    return JSONResponse(completion, headers=dict(headers or {}))


def echo_models() -> JSONResponse:
    """The model list of the echo upstream.

    Example:
        >>> echo_models().status_code
        200
    """
    model = {"id": ECHO, "object": "model", "created": 0, "owned_by": "ctxcomp"}
    return JSONResponse({"object": "list", "data": [model]})


__all__ = ["ECHO", "echo_models", "echo_response"]
