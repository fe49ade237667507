"""LiteLLM proxy hook: compress a chat request's ``ctxcomp`` documents before LiteLLM calls the model.

:class:`CtxcompHook` is a LiteLLM ``CustomLogger`` whose ``async_pre_call_hook`` applies the same
rewrite as ``ctxcomp serve`` (:mod:`ctxcomp.integrations.server.chat`): the request's
``"ctxcomp": {"documents", "query"?, "budget"?, "ratio"?}`` field is compressed for the query
(default: the last user message), placed at the ``{context}`` placeholder or in a system message
before the last user message, and removed. A failed compression forwards the documents uncompressed
(fail-open) unless ``fail_closed=True``, which rejects the request (400 bad input, 503 otherwise).
Compression runs batched on a worker thread, never on LiteLLM's event loop.

Load it from LiteLLM's ``config.yaml`` (a file ``ctxcomp_hook.py`` next to it, see
``docs/server.md``)::

    # ctxcomp_hook.py
    from ctxcomp.integrations.litellm import CtxcompHook
    proxy_handler_instance = CtxcompHook(ratio=0.3)

    # config.yaml
    litellm_settings:
      callbacks: ctxcomp_hook.proxy_handler_instance

or, with the defaults, ``callbacks: ctxcomp.integrations.litellm.proxy_handler_instance``.

Example:
    >>> import asyncio
    >>> hook = CtxcompHook(ratio=0.5)
    >>> data = {"model": "m", "messages": [{"role": "user", "content": "Who built it?"}],
    ...         "ctxcomp": {"documents": ["Ann built the tower in 1874. It is tall."]}}
    >>> out = asyncio.run(hook.async_pre_call_hook(None, None, data, "acompletion"))  # doctest: +SKIP
    >>> out["messages"][0]  # doctest: +SKIP
    {'role': 'system', 'content': 'Ann built the tower in 1874.'}
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as _err:  # pragma: no cover - exercised only without litellm
    if _err.name is not None and _err.name.split(".")[0] != "litellm":
        raise
    raise ImportError(
        "ctxcomp.integrations.litellm is a LiteLLM proxy hook and needs LiteLLM. "
        "Fix: pip install 'litellm[proxy]'."
    ) from _err

from ctxcomp.api import Compressor, resolve_budget
from ctxcomp.config import CompressionConfig
from ctxcomp.integrations.server.batcher import Batcher
from ctxcomp.integrations.server.chat import FIELD, Rewrite, rewrite
from ctxcomp.integrations.server.schemas import error_body, status_for

logger = logging.getLogger(__name__)

#: LiteLLM call types that carry chat messages.
CHAT_CALL_TYPES = ("completion", "acompletion")


class CtxcompHook(CustomLogger):
    """A LiteLLM ``CustomLogger`` that compresses a request's ``ctxcomp`` documents before the call.

    Args:
        config: Compression config (default: ``CompressionConfig()``, the offline default proxy).
        compressor: A compressor to use instead of building one from ``config``.
        budget: Default token budget of a request that gives neither budget nor ratio.
        ratio: Default keep ratio (with neither default: ``ctxcomp.DEFAULT_RATIO``).
        fail_closed: Reject a request whose compression fails instead of forwarding it uncompressed.
        max_batch: Most requests compressed together.
        max_wait_ms: Longest a request waits for its batch to fill.

    Attributes:
        last: The last :class:`~ctxcomp.integrations.server.chat.Rewrite` (for logging and tests).

    Example:
        >>> hook = CtxcompHook(budget=300, fail_closed=True)
        >>> hook.fail_closed, hook.budget
        (True, 300)
    """

    def __init__(
        self,
        config: CompressionConfig | None = None,
        *,
        compressor: Compressor | None = None,
        budget: int | None = None,
        ratio: float | None = None,
        fail_closed: bool = False,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
    ) -> None:
        super().__init__()
        if budget is not None or ratio is not None:
            resolve_budget(1, budget, ratio)  # validate now
        self.compressor = compressor if compressor is not None else Compressor(config)
        self.budget, self.ratio, self.fail_closed = budget, ratio, fail_closed
        self.max_batch, self.max_wait_ms = max_batch, max_wait_ms
        self.last: Rewrite | None = None
        self._batcher: Batcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def batcher(self) -> Batcher:
        """The batcher of the running event loop (a new one when the loop changed).

        Example:
            >>> async def size() -> int:
            ...     return CtxcompHook(ratio=0.3).batcher().max_batch
            >>> asyncio.run(size())
            16
        """
        loop = asyncio.get_running_loop()
        if self._batcher is None or self._loop is not loop:
            if self._batcher is not None:
                self._batcher.abandon()
            self._batcher = Batcher(
                self.compressor,
                budget=self.budget,
                ratio=self.ratio,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
            )
            self._loop = loop
        return self._batcher

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any] | None:
        """Rewrite ``data`` when it carries a ``ctxcomp`` field (LiteLLM's pre-call hook).

        Args:
            user_api_key_dict: LiteLLM's key info (unused).
            cache: LiteLLM's cache (unused).
            data: The request body; never mutated.
            call_type: LiteLLM's call type; only chat calls are rewritten.

        Returns:
            The rewritten request, or ``data`` itself when there is nothing to do.

        Raises:
            Exception: Only with ``fail_closed``: an HTTP 400/503 (``fastapi.HTTPException`` when
                available, else the compression error itself).

        Example:
            >>> data = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
            >>> asyncio.run(CtxcompHook().async_pre_call_hook(None, None, data, "acompletion")) is data
            True
        """
        if call_type not in CHAT_CALL_TYPES or not isinstance(data, dict) or FIELD not in data:
            return data
        try:
            out = await rewrite(data, self.batcher().compress, fail_closed=self.fail_closed)
        except Exception as err:  # only with fail_closed: rewrite() passes over failures otherwise
            raise _rejection(err) from err
        self.last = out
        done = ", ".join(f"{k.removeprefix('x-ctxcomp-')}={v}" for k, v in out.headers.items())
        logger.info("ctxcomp: %s", done)
        return out.body


def _rejection(err: Exception) -> Exception:
    """An HTTP error LiteLLM's proxy answers with (400 bad input, 503 otherwise), carrying the error."""
    try:
        from fastapi import HTTPException
    except ImportError:
        return err
    return HTTPException(status_code=status_for(err), detail=error_body(err)["error"])


_DEFAULT: list[CtxcompHook] = []


def __getattr__(name: str) -> Any:
    """``proxy_handler_instance``: a hook with the defaults, made on first access (for config.yaml)."""
    if name == "proxy_handler_instance":
        if not _DEFAULT:
            _DEFAULT.append(CtxcompHook())
        return _DEFAULT[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CHAT_CALL_TYPES", "CtxcompHook"]
