"""Settings of the HTTP server, and the install hint for its optional dependencies.

Example:
    >>> s = ServerSettings(upstream="http://127.0.0.1:8001/v1/", ratio=0.3)
    >>> s.upstream, s.fail_closed, s.max_batch
    ('http://127.0.0.1:8001/v1', False, 16)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ctxcomp.errors import MissingDependencyError

#: Packages of the ``server`` extra.
SERVER_PACKAGES = ("fastapi", "starlette", "uvicorn", "httpx", "prometheus_client")


class ServerSettings(BaseModel):
    """How ``ctxcomp serve`` behaves (everything but the compression config).

    Example:
        >>> ServerSettings(max_batch=4).max_wait_ms
        5.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    upstream: str | None = None
    """Base URL of the OpenAI-compatible LLM, up to and including ``/v1`` (requests go to
    ``{upstream}/chat/completions``); ``"echo"``: no LLM, chat requests are answered with the request
    that would be forwarded; ``None``: only ``/v1/compress`` is served."""

    budget: int | None = Field(default=None, gt=0)
    """Default token budget of a request that gives neither ``budget`` nor ``ratio``."""

    ratio: float | None = Field(default=None, gt=0, le=1)
    """Default keep ratio (with neither default: ``ctxcomp.DEFAULT_RATIO``)."""

    fail_closed: bool = False
    """Refuse a chat request whose compression fails (400 bad input, 503 otherwise) instead of
    forwarding it with the documents uncompressed."""

    max_batch: int = Field(default=16, ge=1, le=1024)
    """Most requests compressed together in one batch."""

    max_wait_ms: float = Field(default=5.0, ge=0, le=10_000)
    """Longest a request waits for others to join its batch."""

    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    """Largest request body accepted (413 beyond it)."""

    upstream_timeout_s: float = Field(default=600.0, gt=0)
    """Seconds to wait for the upstream's next byte (connecting: at most 10)."""

    @field_validator("upstream")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        if v is None or v == "echo":
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (or be 'echo'), got {v!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _one_default(self) -> ServerSettings:
        if self.budget is not None and self.ratio is not None:
            raise ValueError("give a default budget or a default ratio, not both")
        return self


def missing_server_dependency(err: ImportError) -> ImportError:
    """The error to raise when importing a ``server`` extra package failed.

    Args:
        err: The ``ImportError``.

    Returns:
        A :class:`~ctxcomp.errors.MissingDependencyError` naming ``ctxcomp[server]`` when a server
        package is missing, else ``err`` itself (a broken install is not a missing extra).

    Example:
        >>> missing_server_dependency(ModuleNotFoundError(name="uvicorn")).extra
        'server'
    """
    top = (err.name or "").split(".")[0]
    if top not in SERVER_PACKAGES:
        return err
    return MissingDependencyError(top, "server", "the ctxcomp HTTP server")


__all__ = ["SERVER_PACKAGES", "ServerSettings", "missing_server_dependency"]
