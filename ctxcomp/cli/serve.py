"""``ctxcomp serve``: compression as HTTP middleware in front of an OpenAI-compatible LLM.

Serves ``POST /v1/compress``, an OpenAI-compatible ``POST /v1/chat/completions`` proxy that
compresses the documents a request carries in its ``ctxcomp`` field and forwards it to
``--upstream``, ``GET /v1/models``, ``/healthz``, ``/readyz`` and ``/metrics`` (``docs/server.md``).
Needs ``pip install 'ctxcomp[server]'``.

Example:
    $ ctxcomp serve --upstream http://127.0.0.1:8001/v1 --ratio 0.3
    ctxcomp serve: listening on http://127.0.0.1:8000 (upstream http://127.0.0.1:8001/v1) ...
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ctxcomp.cli.common import EXIT_OK, add_budget_args, add_config_args, config_from_args
from ctxcomp.errors import ConfigError, InputError

#: ServerSettings field -> the flag that sets it (for error messages).
_FLAGS = {
    "upstream": "--upstream",
    "budget": "--budget",
    "ratio": "--ratio",
    "max_batch": "--max-batch",
    "max_wait_ms": "--max-wait-ms",
    "max_request_bytes": "--max-request-bytes",
    "upstream_timeout_s": "--upstream-timeout",
}


def add_parser(sub: Any) -> None:
    """Register ``serve``.

    Args:
        sub: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_parser(p.add_subparsers(dest="command"))
        >>> a = p.parse_args(["serve", "--port", "0", "--fail-closed", "--ratio", "0.3"])
        >>> a.port, a.fail_closed, a.ratio, a.max_batch
        (0, True, 0.3, 16)
    """
    p = sub.add_parser(
        "serve",
        help="serve compression over HTTP (/v1/compress and an OpenAI-compatible chat proxy)",
        description="Compression as HTTP middleware before an OpenAI-compatible LLM; see docs/server.md.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--upstream",
        help="base URL of the OpenAI-compatible LLM up to /v1, e.g. http://127.0.0.1:8001/v1; 'echo': no "
        "LLM, answer each chat request with the request that would be forwarded (without it only "
        "/v1/compress is served)",
    )
    add_budget_args(p)
    add_config_args(p)
    p.add_argument(
        "--fail-closed",
        action="store_true",
        help="refuse a chat request whose compression fails (400 bad input, 503 otherwise) "
        "instead of forwarding its documents uncompressed",
    )
    p.add_argument("--max-batch", type=int, default=16, help="most requests compressed together (16)")
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="longest a request waits for its batch to fill (5)"
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=8 * 1024 * 1024,
        help="largest request body accepted; 413 beyond it (8 MiB)",
    )
    p.add_argument(
        "--upstream-timeout",
        dest="upstream_timeout_s",
        type=float,
        default=600.0,
        help="seconds to wait for the upstream's next byte (600; connecting: at most 10)",
    )
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~ctxcomp.integrations.server.ServerSettings` of the parsed flags.

    Raises:
        ConfigError: A flag's value is invalid, naming the flag.

    Example:
        >>> ns = argparse.Namespace(upstream="ftp://x", budget=None, ratio=None, fail_closed=False,
        ...     max_batch=16, max_wait_ms=5.0, max_request_bytes=10, upstream_timeout_s=60.0)
        >>> settings_from_args(ns)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.ConfigError: --upstream: must start with http:// or https:// ... got 'ftp://x'...
    """
    from pydantic import ValidationError

    from ctxcomp.integrations.server.settings import ServerSettings

    values = {name: getattr(args, name) for name in _FLAGS}
    try:
        return ServerSettings(fail_closed=args.fail_closed, **values)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        flag = _FLAGS.get(name, "--budget/--ratio")
        problem = first["msg"].removeprefix("Value error, ")
        raise ConfigError(flag, problem, "see `ctxcomp serve --help`") from None


def run(args: argparse.Namespace) -> int:
    """Run ``ctxcomp serve`` until SIGTERM/SIGINT.

    Args:
        args: Parsed arguments.

    Returns:
        The exit status.

    Example:
        >>> from ctxcomp.cli import build_parser
        >>> run(build_parser().parse_args(["serve", "--upstream", "echo"]))  # doctest: +SKIP
    """
    from ctxcomp.api import Compressor

    config = config_from_args(args)
    settings = settings_from_args(args)
    from ctxcomp.integrations.server.app import create_app
    from ctxcomp.integrations.server.run import bind, serve, url_of

    try:
        sock = bind(args.host, args.port)
    except OSError as err:
        raise InputError(
            "--host/--port", f"cannot listen on {args.host}:{args.port} ({err.strerror})", "pick a free port"
        ) from None
    upstream = settings.upstream or "none: only /v1/compress"
    print(
        f"ctxcomp serve: listening on {url_of(sock)} (upstream {upstream}); "
        f"loading {config.proxy_model}, /readyz turns 200 once loaded",
        file=sys.stderr,
        flush=True,
    )
    verbose = bool(getattr(args, "verbose", False))
    serve(
        create_app(Compressor(config), settings),
        sock,
        log_level="info" if verbose else "warning",
        access_log=verbose,
    )
    return EXIT_OK
