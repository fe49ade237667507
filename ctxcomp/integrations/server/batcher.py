"""Compress requests that arrive together in one batch, off the event loop.

:class:`Batcher` owns one worker thread, the only thread that runs the model (a daemon: a process
told to stop while the model is still loading exits without waiting for the load). Requests go into an
asyncio queue; one background task takes the first waiting request, gathers more until it holds
``max_batch`` or ``max_wait_ms`` has passed, and runs :meth:`ctxcomp.Compressor.compress_batch`
(``return_exceptions=True``: one bad request never fails its neighbours) on the worker thread.
While a batch runs, new requests queue up and form the next batch, so under load batches fill
without waiting. The model loads on the same thread at :meth:`Batcher.start`; batches wait for it.

Example:
    >>> import asyncio
    >>> from ctxcomp import Compressor, CompressionConfig
    >>> async def main():
    ...     batcher = Batcher(Compressor(CompressionConfig(scorer="attention")), ratio=0.5)
    ...     batcher.start()
    ...     ctx = await batcher.compress("Who?", ["Ann did. Bob did not."])
    ...     await batcher.close()
    ...     return ctx.stats.kept_tokens
    >>> asyncio.run(main())  # doctest: +SKIP
    3
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ctxcomp.api import Compressor
from ctxcomp.errors import CtxcompError
from ctxcomp.types import CompressedContext, DocLike

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ShuttingDownError(CtxcompError):
    """The server is shutting down and takes no new compression work."""


class ModelThread:
    """One daemon thread running blocking jobs in order; results come back as asyncio futures.

    Example:
        >>> import asyncio
        >>> async def main():
        ...     worker = ModelThread()
        ...     out = await worker.submit(lambda: 6 * 7)
        ...     worker.stop()
        ...     return out
        >>> asyncio.run(main())
        42
    """

    def __init__(self, name: str = "ctxcomp-model") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on the thread after the jobs already submitted.

        Args:
            fn: The blocking job.

        Returns:
            A future of the running loop holding its result or exception.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._thread.is_alive():
            self._thread.start()
        self._jobs.put((fn, future, loop))
        return future

    def stop(self) -> None:
        """Let the thread end once the jobs already submitted have run."""
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future, loop = job
            try:
                result, error = fn(), None
            except BaseException as err:  # handed to the awaiting coroutine
                result, error = None, err
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@dataclass(frozen=True)
class _Pending:
    item: dict[str, Any]
    future: asyncio.Future[CompressedContext]


class Batcher:
    """Batches concurrent compression requests and runs them on one worker thread.

    Args:
        compressor: The compressor (its model loads on :meth:`start`).
        budget: Default token budget of a request that gives neither budget nor ratio.
        ratio: Default keep ratio (with neither default: ``ctxcomp.DEFAULT_RATIO``).
        max_batch: Most requests per :meth:`~ctxcomp.Compressor.compress_batch` call.
        max_wait_ms: Longest the first request of a batch waits for others.
        on_batch: Called with the size of every batch, on the event loop (metrics).

    Example:
        >>> from ctxcomp import Compressor
        >>> b = Batcher(Compressor(), max_batch=8, max_wait_ms=2)
        >>> b.ready, b.max_batch
        (False, 8)
    """

    def __init__(
        self,
        compressor: Compressor,
        *,
        budget: int | None = None,
        ratio: float | None = None,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.compressor = compressor
        self.budget = budget
        self.ratio = ratio
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.on_batch = on_batch
        self._worker = ModelThread()
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded: asyncio.Future[float] | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start loading the model on the worker thread and the batching task (idempotent).

        Must be called from a running event loop; :meth:`compress` calls it too.
        """
        if self._task is not None or self._closing:
            return
        self._loaded = self._worker.submit(self._load)
        self._loaded.add_done_callback(self._log_load)
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ctxcomp-batcher")

    def _load(self) -> float:
        t0 = time.perf_counter()
        self.compressor.load()
        return time.perf_counter() - t0

    def _log_load(self, fut: asyncio.Future[float]) -> None:
        if fut.cancelled():
            return
        err = fut.exception()
        if err is None:
            logger.info("model %s loaded in %.1f s", self.compressor.config.proxy_model, fut.result())
        else:
            logger.error("model %s failed to load: %s", self.compressor.config.proxy_model, err)

    @property
    def ready(self) -> bool:
        """Whether the model has loaded."""
        return self._loaded is not None and self._loaded.done() and self.load_error is None

    @property
    def load_error(self) -> BaseException | None:
        """Why the model failed to load, or ``None`` (loaded or still loading)."""
        if self._loaded is None or not self._loaded.done() or self._loaded.cancelled():
            return None
        return self._loaded.exception()

    async def close(self) -> None:
        """Finish the batches already queued, then stop the task and the worker thread."""
        self._closing = True
        if self._task is not None and self._queue is not None:
            self._queue.put_nowait(None)
            await self._task
        self._worker.stop()

    def abandon(self) -> None:
        """Let the worker thread end without waiting, for a batcher whose event loop is gone.

        Example:
            >>> Batcher(Compressor()).abandon()
        """
        self._closing = True
        self._worker.stop()

    # ------------------------------------------------------------------ requests
    async def compress(
        self,
        query: str,
        docs: Sequence[DocLike],
        budget: int | None = None,
        ratio: float | None = None,
    ) -> CompressedContext:
        """Compress one request in the next batch.

        Args:
            query: The question.
            docs: Strings or Documents.
            budget: Token budget; with neither budget nor ratio, the batcher's defaults.
            ratio: Keep ratio.

        Returns:
            The compressed context.

        Raises:
            CtxcompError: Whatever compression raised for this request (others are unaffected), or
                :class:`ShuttingDownError`.

        Example:
            >>> ctx = await batcher.compress("Who?", ["Ann did. Bob did not."], budget=5)  # doctest: +SKIP
        """
        if self._closing:
            raise ShuttingDownError("the server is shutting down; retry on another instance")
        self.start()
        assert self._queue is not None
        if budget is None and ratio is None:
            budget, ratio = self.budget, self.ratio
        future: asyncio.Future[CompressedContext] = asyncio.get_running_loop().create_future()
        item = {"query": query, "docs": list(docs), "budget": budget, "ratio": ratio}
        self._queue.put_nowait(_Pending(item, future))
        return await future

    # ------------------------------------------------------------------ the task
    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        stopping = False
        while not stopping:
            first = await queue.get()
            if first is None:
                break
            batch = [first]
            stopping = await self._gather(queue, batch)
            live = [p for p in batch if not p.future.done()]  # a cancelled request drops out
            if live:
                await self._run_batch(live)
        while not queue.empty():
            left = queue.get_nowait()
            if left is not None and not left.future.done():
                left.future.set_exception(ShuttingDownError("the server shut down before this request ran"))

    async def _gather(self, queue: asyncio.Queue[_Pending | None], batch: list[_Pending]) -> bool:
        """Add waiting requests to ``batch`` until it is full or the wait is over; True on stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_ms / 1000
        while len(batch) < self.max_batch:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if item is None:
                return True
            batch.append(item)
        return False

    async def _run_batch(self, batch: list[_Pending]) -> None:
        assert self._loaded is not None
        if self.on_batch is not None:
            try:
                self.on_batch(len(batch))
            except Exception:  # a metrics hook must never stop the batcher
                logger.exception("on_batch failed")
        run = functools.partial(
            self.compressor.compress_batch, [p.item for p in batch], return_exceptions=True
        )
        results: list[Any]
        try:
            await asyncio.shield(self._loaded)
            results = await self._worker.submit(run)
        except Exception as err:  # the model did not load, or compress_batch itself failed
            results = [err] * len(batch)
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)


__all__ = ["Batcher", "ModelThread", "ShuttingDownError"]
