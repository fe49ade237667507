"""Question-answering data helpers shared by probe training, calibration and the benchmarks.

One copy of the rules: reading JSONL(.gz) with line numbers, SQuAD-style answer normalisation,
answer matching, the train/eval split by question hash, and how a passage is shown.

Example:
    >>> has_answer("It was Wilhelm Conrad Röntgen.", ["wilhelm conrad röntgen"])
    True
    >>> split_of("who wrote hamlet?") in ("train", "eval")
    True
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import string
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ctxcomp.errors import InputError

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def iter_jsonl(path: str | Path, *, field: str = "--data") -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for every non-blank line of a JSONL or JSONL.gz file.

    Args:
        path: The file (``.gz`` is decompressed).
        field: Name of the argument that gave the path, for messages.

    Yields:
        Line numbers (1-based) and parsed values.

    Raises:
        InputError: Unreadable file or invalid JSON (naming the line).

    Example:
        >>> list(iter_jsonl("/nonexistent.jsonl"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.InputError: --data: cannot read '/nonexistent.jsonl' ...
    """
    p = Path(path)
    opener: Callable[..., Any] = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(
                        f"{p}:{lineno}", f"invalid JSON ({err.msg})", "write one JSON object a line"
                    ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(
            field, f"cannot read {str(p)!r} ({err})", "pass an existing UTF-8 JSONL (or .jsonl.gz) file"
        ) from err


def read_jsonl(path: str | Path, *, field: str = "--data") -> list[Any]:
    """Every non-blank line of a JSONL or JSONL.gz file, parsed.

    Args:
        path: The file.
        field: Name of the argument that gave the path, for messages.

    Returns:
        One value per line.

    Raises:
        InputError: Unreadable file or invalid JSON (naming the line).
    """
    return [obj for _, obj in iter_jsonl(path, field=field)]


def normalize_answer(text: str) -> str:
    """Case- and punctuation-normalised text (SQuAD-style, articles dropped).

    Args:
        text: Any text.

    Returns:
        The normalised text.

    Example:
        >>> normalize_answer("The  Eiffel-Tower!")
        'eiffeltower'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def has_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether ``text`` contains one of ``answers`` after normalisation.

    Args:
        text: Candidate text.
        answers: Gold answers.

    Returns:
        True on a match.

    Example:
        >>> has_answer("Paris is big.", ["paris", ""])
        True
    """
    t = normalize_answer(text)
    return any((a := normalize_answer(x)) and a in t for x in answers)


def split_of(question: str, *, eval_every: int = 5) -> str:
    """Deterministic split of a question: ``eval`` for one in ``eval_every`` (by sha256), else ``train``.

    Args:
        question: Question text.
        eval_every: One question in this many is ``eval`` (5 for the NQ pool; the smaller same-topic
            and multi-hop sets use 2).

    Returns:
        ``"train"`` or ``"eval"``.

    Example:
        >>> split_of("who got the first nobel prize in physics")
        'train'
    """
    h = int(hashlib.sha256(question.encode()).hexdigest(), 16)
    return "eval" if h % eval_every == 0 else "train"


def passage(ctx: Mapping[str, Any]) -> str:
    """How a ``{"title", "text"}`` passage is shown to models: ``"Title. Text"``.

    Args:
        ctx: The passage.

    Returns:
        Its text with the title in front (when it has one).

    Example:
        >>> passage({"title": "Paris", "text": "Capital of France."})
        'Paris. Capital of France.'
    """
    return f"{ctx['title']}. {ctx['text']}" if ctx.get("title") else str(ctx["text"])


__all__ = ["has_answer", "iter_jsonl", "normalize_answer", "passage", "read_jsonl", "split_of"]
