"""HTTP middleware: ``ctxcomp serve`` (``pip install 'ctxcomp[server]'``).

* :mod:`~ctxcomp.integrations.server.app` — the FastAPI app (``create_app``).
* :mod:`~ctxcomp.integrations.server.chat` — the chat-request rewrite, shared with the LiteLLM hook.
* :mod:`~ctxcomp.integrations.server.batcher` — batches concurrent requests off the event loop.
* :mod:`~ctxcomp.integrations.server.upstream` — forwarding to the OpenAI-compatible LLM.
* :mod:`~ctxcomp.integrations.server.run` — uvicorn on a pre-bound socket, graceful shutdown.

Importing this package loads no server dependency; ``create_app`` does (lazily re-exported).

Example:
    >>> from ctxcomp.integrations.server import ServerSettings
    >>> ServerSettings(fail_closed=True).fail_closed
    True
"""

from __future__ import annotations

from typing import Any

from ctxcomp.integrations.server.settings import ServerSettings


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ctxcomp.integrations.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ServerSettings", "create_app"]
