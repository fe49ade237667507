"""The chat-request rewrite shared by the proxy and the LiteLLM hook.

A chat request may carry a top-level ``"ctxcomp": {"documents", "query"?, "budget"?, "ratio"?}``.
:func:`rewrite` compresses the documents for the query (default: the text of the last user
message) and puts the result into the messages: every ``{context}`` placeholder in a message's
text is replaced with it; without a placeholder, a system message holding it is inserted just
before the last user message (at the end when there is none). The ``ctxcomp`` field is removed;
every other field passes through untouched. When compression fails the request is, by default,
still rewritten with the documents uncompressed (fail-open) and the error named in the headers.

Example:
    >>> msgs = [{"role": "system", "content": "Answer from: {context}"}, {"role": "user", "content": "Who?"}]
    >>> place_context(msgs, "Ann did.")[0]["content"]
    'Answer from: Ann did.'
    >>> [m["role"] for m in place_context(msgs[1:], "Ann did.")]
    ['system', 'user']
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ctxcomp.compressors.prune import DOC_SEPARATOR
from ctxcomp.errors import CtxcompError, InputError
from ctxcomp.integrations.server.schemas import ContextField, parse_model
from ctxcomp.types import CompressedContext, Document

logger = logging.getLogger(__name__)

#: The field of a chat request that carries the documents.
FIELD = "ctxcomp"
#: Replaced by the (compressed) context in any message's text.
PLACEHOLDER = "{context}"

#: ``compress(query, documents, budget, ratio)``, e.g. :meth:`Batcher.compress`.
CompressFn = Callable[[str, list[Document], int | None, float | None], Awaitable[CompressedContext]]


@dataclass(frozen=True)
class Rewrite:
    """A rewritten chat request.

    Attributes:
        body: The request to forward (a new dict; the input is never mutated).
        headers: ``x-ctxcomp-*`` response headers describing what was done.
        result: The compression result (``None`` when compression failed).
        error: The failure that was passed over (fail-open), else ``None``.

    Example:
        >>> Rewrite({"model": "m", "messages": []}).headers
        {}
    """

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    result: CompressedContext | None = None
    error: BaseException | None = None


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message: its string content, or its text parts joined by newlines.

    Example:
        >>> message_text({"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]})
        'Hi'
    """
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def _last_user(messages: list[Mapping[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def default_query(messages: list[Mapping[str, Any]]) -> str:
    """The question of a chat: the last user message's text, without the ``{context}`` placeholder.

    Raises:
        InputError: No user message, or one without text (field ``ctxcomp.query``).

    Example:
        >>> default_query([{"role": "user", "content": "Context: {context}\\nWho built it?"}])
        'Context: \\nWho built it?'
    """
    i = _last_user(messages)
    text = "" if i is None else message_text(messages[i]).replace(PLACEHOLDER, "").strip()
    if not text:
        raise InputError(
            f"{FIELD}.query",
            "is not given and there is no user message with text to take it from",
            "pass ctxcomp.query, or end the messages with the user's question",
        )
    return text


def _has_placeholder(message: Mapping[str, Any]) -> bool:
    return PLACEHOLDER in message_text(message)


def _fill(message: Mapping[str, Any], context: str) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": content.replace(PLACEHOLDER, context)}
    parts = [
        {**p, "text": p["text"].replace(PLACEHOLDER, context)}
        if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        else p
        for p in content or []
    ]
    return {**message, "content": parts}


def place_context(messages: list[Mapping[str, Any]], context: str) -> list[dict[str, Any]]:
    """Put ``context`` into ``messages`` (see the module docstring); returns a new list.

    Args:
        messages: The chat messages (never mutated).
        context: The text to place.

    Returns:
        The new messages.

    Example:
        >>> place_context([{"role": "user", "content": "Q?"}], "C.")[0]
        {'role': 'system', 'content': 'C.'}
    """
    if any(_has_placeholder(m) for m in messages):
        return [_fill(m, context) if _has_placeholder(m) else dict(m) for m in messages]
    out = [dict(m) for m in messages]
    if context:
        i = _last_user(messages)
        out.insert(len(out) if i is None else i, {"role": "system", "content": context})
    return out


def plain_context(documents: Any) -> str:
    """The uncompressed context of raw documents (best effort: whatever has a text).

    Example:
        >>> plain_context(["A.", {"text": "B."}, 7])
        'A.\\n\\nB.'
    """
    if not isinstance(documents, list):
        return ""
    texts = [
        d if isinstance(d, str) else d.get("text") if isinstance(d, Mapping) else None for d in documents
    ]
    return DOC_SEPARATOR.join(t for t in texts if isinstance(t, str))


def checked_messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``messages`` of a chat request, checked to be a list of objects.

    Raises:
        InputError: Missing, not a list, or an item that is not an object.

    Example:
        >>> len(checked_messages({"messages": [{"role": "user", "content": "Hi"}]}))
        1
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InputError(
            "messages", "must be a list of messages", 'send [{"role": "user", "content": "..."}]'
        )
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InputError(f"messages[{i}]", f"must be an object, got {type(m).__name__}", "send a message")
    return messages


def _fallback(rest: dict[str, Any], raw: Any) -> dict[str, Any]:
    """``rest`` with the documents placed uncompressed, when its messages allow it."""
    try:
        messages = checked_messages(rest)
    except InputError:
        return rest
    documents = raw.get("documents") if isinstance(raw, Mapping) else None
    return {**rest, "messages": place_context(messages, plain_context(documents))}


def _ms(t0: float) -> str:
    return f"{(time.perf_counter() - t0) * 1000:.1f}"


async def rewrite(body: Mapping[str, Any], compress: CompressFn, *, fail_closed: bool = False) -> Rewrite:
    """Compress the documents of a chat request into its messages.

    Args:
        body: The parsed chat request; must hold the ``ctxcomp`` field (never mutated).
        compress: ``compress(query, documents, budget, ratio)``.
        fail_closed: Raise the compression error instead of forwarding uncompressed.

    Returns:
        The rewritten request and its ``x-ctxcomp-*`` headers.

    Raises:
        CtxcompError: Only with ``fail_closed``: :class:`InputError` for a bad field, or the error
            compression raised.

    Example:
        >>> import asyncio
        >>> async def keep_all(q, docs, budget, ratio): ...
        >>> messages = [{"role": "user", "content": "Who?"}]
        >>> body = {"model": "m", "messages": messages, "ctxcomp": {"documents": 3}}
        >>> out = asyncio.run(rewrite(body, keep_all))
        >>> out.headers["x-ctxcomp-error"], "ctxcomp" in out.body
        ('InputError', False)
    """
    rest = {k: v for k, v in body.items() if k != FIELD}
    t0 = time.perf_counter()
    try:
        spec = parse_model(ContextField, body[FIELD], prefix=FIELD)
        messages = checked_messages(rest)
        documents = spec.parsed_documents()
        query = spec.query if spec.query is not None else default_query(messages)
        if not query.strip():
            raise InputError(f"{FIELD}.query", "is empty", "pass the user's question or omit the field")
        ctx = await compress(query, documents, spec.budget, spec.ratio)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        if fail_closed:
            raise
        if isinstance(err, CtxcompError):
            logger.warning("compression failed, forwarding uncompressed: %s: %s", type(err).__name__, err)
        else:
            logger.exception("compression failed unexpectedly, forwarding uncompressed")
        headers = {"x-ctxcomp-error": type(err).__name__, "x-ctxcomp-compress-ms": _ms(t0)}
        return Rewrite(_fallback(rest, body[FIELD]), headers, error=err)
    rest["messages"] = place_context(messages, ctx.text)
    headers = {
        "x-ctxcomp-original-tokens": str(ctx.stats.original_tokens),
        "x-ctxcomp-kept-tokens": str(ctx.stats.kept_tokens),
        "x-ctxcomp-compress-ms": _ms(t0),
    }
    return Rewrite(rest, headers, result=ctx)


__all__ = [
    "FIELD",
    "PLACEHOLDER",
    "CompressFn",
    "Rewrite",
    "checked_messages",
    "default_query",
    "message_text",
    "place_context",
    "plain_context",
    "rewrite",
]
