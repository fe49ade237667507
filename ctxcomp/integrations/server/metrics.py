"""Prometheus metrics of the server, in a registry of their own (one per app).

Example:
    >>> m = Metrics()
    >>> m.batch(3)
    >>> b"ctxcomp_batch_size_count 1.0" in m.render()
    True
"""

from __future__ import annotations

try:
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    from ctxcomp.integrations.server.settings import missing_server_dependency

    raise missing_server_dependency(_err) from _err

from ctxcomp.types import CompressedContext

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The server's counters and histograms.

    Attributes:
        registry: The registry ``/metrics`` renders.

    Example:
        >>> Metrics().request("/v1/compress", 200)
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ctxcomp_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "ctxcomp_compress_seconds",
            "Wall time of one compression (queueing included)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.original_tokens = Counter(
            "ctxcomp_original_tokens", "Tokens of the documents before compression", registry=r
        )
        self.kept_tokens = Counter("ctxcomp_kept_tokens", "Tokens of the compressed contexts", registry=r)
        self.failures = Counter(
            "ctxcomp_compress_failures", "Compressions that failed, by error type", ["type"], registry=r
        )
        self.batch_size = Histogram(
            "ctxcomp_batch_size", "Requests per compression batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.ready = Gauge("ctxcomp_model_ready", "1 once the proxy model has loaded", registry=r)

    def request(self, endpoint: str, status: int) -> None:
        """Count one answered request."""
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()

    def compressed(self, ctx: CompressedContext | None, seconds: float, error: BaseException | None) -> None:
        """Record one compression: its latency, and its tokens or its error type."""
        self.latency.observe(seconds)
        if ctx is not None:
            self.original_tokens.inc(ctx.stats.original_tokens)
            self.kept_tokens.inc(ctx.stats.kept_tokens)
        if error is not None:
            self.failures.labels(type=type(error).__name__).inc()

    def batch(self, size: int) -> None:
        """Record one batch's size."""
        self.batch_size.observe(size)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "Metrics"]
