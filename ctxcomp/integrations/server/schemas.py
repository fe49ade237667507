"""Request models the server owns (``/v1/compress`` and the chat ``ctxcomp`` field) and error bodies.

Validation failures become :class:`~ctxcomp.errors.InputError` naming the field the way the rest of
ctxcomp does (``docs[2].text``, ``ctxcomp.budget``), and every error goes out as one OpenAI-shaped
JSON body: ``{"error": {"type", "field", "message", "param", "code"}}``.

Example:
    >>> req = parse_model(CompressRequest, {"query": "Who?", "docs": ["Ann did."], "ratio": 0.5})
    >>> req.ratio, [d.id for d in req.documents()]
    (0.5, ['0'])
    >>> parse_model(CompressRequest, {"query": "Who?", "docs": [], "budgett": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ctxcomp.errors.InputError: budgett: is not a known field. Fix: remove it; the fields are budget, ...
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from ctxcomp.errors import CtxcompError, FieldError, InputError
from ctxcomp.records import parse_documents
from ctxcomp.types import Document

M = TypeVar("M", bound=BaseModel)


def _a_number(v: Any) -> Any:
    """Refuse what lax float parsing would accept but JSON callers never mean: strings, booleans."""
    if v is not None and (isinstance(v, (bool, str)) or not isinstance(v, (int, float))):
        raise ValueError(f"must be a number, got {type(v).__name__}")
    return v


class CompressRequest(BaseModel):
    """The body of ``POST /v1/compress``.

    Example:
        >>> CompressRequest(query="Who?", docs=["Ann did."], budget=10).budget
        10
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: StrictStr
    """The question the reader will answer."""

    docs: list[Any]
    """Documents: strings or ``{"id", "text", "metadata"}`` objects (:mod:`ctxcomp.records` rules)."""

    budget: StrictInt | None = Field(default=None, gt=0)
    """Token budget (overrides the server's default)."""

    ratio: float | None = Field(default=None, gt=0, le=1)
    """Keep ratio in (0, 1] (overrides the server's default)."""

    _number = field_validator("ratio", mode="before")(_a_number)

    def documents(self) -> list[Document]:
        """The validated documents (ids default to positions).

        Raises:
            InputError: A bad document, naming it (``docs[1].text``).

        Example:
            >>> CompressRequest(query="q", docs=[{"id": "a", "text": "A."}]).documents()[0].id
            'a'
        """
        return parse_documents(self.docs, where="docs")


class ContextField(BaseModel):
    """The ``ctxcomp`` field of a chat request: what to compress and into which budget.

    Example:
        >>> ContextField(documents=["A.", "B."], ratio=0.5).query is None
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    documents: list[Any]
    """Documents: strings or ``{"id", "text", "metadata"}`` objects."""

    query: StrictStr | None = None
    """The question; default: the text of the last user message."""

    budget: StrictInt | None = Field(default=None, gt=0)
    """Token budget (overrides the server's default)."""

    ratio: float | None = Field(default=None, gt=0, le=1)
    """Keep ratio in (0, 1] (overrides the server's default)."""

    _number = field_validator("ratio", mode="before")(_a_number)

    def parsed_documents(self) -> list[Document]:
        """The validated documents, named ``ctxcomp.documents[i]`` in errors.

        Example:
            >>> ContextField(documents=["A."]).parsed_documents()[0].text
            'A.'
        """
        return parse_documents(self.documents, where="ctxcomp.documents")


def _field_name(loc: tuple[int | str, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def parse_model(model: type[M], obj: Any, *, prefix: str = "") -> M:
    """Validate ``obj`` as ``model``, raising :class:`InputError` naming the first bad field.

    Args:
        model: The pydantic model.
        obj: The parsed JSON value.
        prefix: Field name the value sits under (``"ctxcomp"``), for messages.

    Returns:
        The model instance.

    Raises:
        InputError: Not an object, a missing, unknown or mistyped field.

    Example:
        >>> parse_model(ContextField, {"documents": "x"}, prefix="ctxcomp")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.InputError: ctxcomp.documents: Input should be a valid list. Fix: ...
    """
    if not isinstance(obj, dict):
        raise InputError(
            prefix or "body", f"must be a JSON object, got {type(obj).__name__}", "send a JSON object"
        )
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        first = err.errors()[0]
        field = _field_name(tuple(first["loc"]), prefix)
        if first["type"] == "extra_forbidden":
            raise InputError(
                field,
                "is not a known field",
                f"remove it; the fields are {', '.join(sorted(model.model_fields))}",
            ) from None
        if first["type"] == "missing":
            raise InputError(field, "is missing", "see the request schema in docs/server.md") from None
        problem = first["msg"].removeprefix("Value error, ")
        raise InputError(field, problem, "see the request schema in docs/server.md") from None


def error_body(err: BaseException | None = None, *, kind: str = "", message: str = "") -> dict[str, Any]:
    """The OpenAI-shaped JSON error body for ``err`` (or for ``kind``/``message``).

    Args:
        err: The error; its class name is the ``type`` and a :class:`FieldError`'s field the ``field``.
        kind: ``type`` when ``err`` is ``None``.
        message: ``message`` when ``err`` is ``None``, or instead of an unexpected error's text.

    Returns:
        ``{"error": {"type", "field", "message", "param", "code"}}`` (``param`` repeats ``field`` for
        OpenAI clients).

    Example:
        >>> error_body(InputError("query", "is empty", "ask something"))["error"]["field"]
        'query'
        >>> error_body(kind="UpstreamError", message="down")["error"]["message"]
        'down'
    """
    field = err.field if isinstance(err, FieldError) else None
    if err is not None:
        kind = type(err).__name__
        if isinstance(err, CtxcompError) or not message:
            message = str(err) or kind
    return {"error": {"type": kind, "field": field, "message": message, "param": field, "code": None}}


def status_for(err: BaseException) -> int:
    """HTTP status of a failed compression: 400 for bad input (:class:`InputError`), 503 otherwise.

    Example:
        >>> status_for(InputError("docs", "bad", "fix")), status_for(RuntimeError())
        (400, 503)
    """
    return 400 if isinstance(err, InputError) else 503


__all__ = ["CompressRequest", "ContextField", "error_body", "parse_model", "status_for"]
