"""Run the app with uvicorn on a socket bound beforehand (so port 0 reports the port it got).

On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in flight finish
(streams included), then the app's shutdown finishes the queued batches and closes the upstream
connections; :func:`serve` then returns (the process exits 0, not killed by the signal).

Example:
    >>> sock = bind("127.0.0.1", 0)
    >>> url_of(sock).startswith("http://127.0.0.1:")
    True
    >>> sock.close()
"""

from __future__ import annotations

import signal
import socket
import threading
from types import FrameType
from typing import Any

try:
    import uvicorn
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    from ctxcomp.integrations.server.settings import missing_server_dependency

    raise missing_server_dependency(_err) from _err


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port).

    Args:
        host: Address to listen on (``127.0.0.1``, ``0.0.0.0``, ``::``).
        port: Port, or 0.

    Returns:
        The bound, listening socket.

    Raises:
        OSError: The address is in use or cannot be bound.

    Example:
        >>> s = bind("127.0.0.1", 0); s.getsockname()[1] > 0
        True
        >>> s.close()
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The ``http://host:port`` a bound socket serves.

    Example:
        >>> s = bind("127.0.0.1", 0); url_of(s).count(":")
        2
        >>> s.close()
    """
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: Any, sock: socket.socket, *, log_level: str = "warning", access_log: bool = False) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM/SIGINT, then shut down gracefully.

    Args:
        app: The ASGI app (:func:`~ctxcomp.integrations.server.app.create_app`).
        sock: A socket from :func:`bind`.
        log_level: uvicorn's log level.
        access_log: Log every request.

    Example:
        >>> serve(create_app(Compressor()), bind("127.0.0.1", 8000))  # doctest: +SKIP
    """
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on")
    # uvicorn re-raises the signal after its graceful shutdown; end quietly instead of dying by it.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stopped) if main else None
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


class _Stopped(Exception):
    """Raised by the SIGTERM handler once uvicorn has shut down."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


__all__ = ["bind", "serve", "url_of"]
