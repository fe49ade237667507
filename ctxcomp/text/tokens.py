"""Token counting with the reader's tokenizer: the unit every budget is expressed in.

Example:
    >>> class Chars:  # any object with an HF-style __call__ works
    ...     name_or_path = "chars"
    ...     def __call__(self, texts, add_special_tokens=False):
    ...         return {"input_ids": [list(t) for t in texts]}
    >>> TokenCounter(Chars()).count("abc")
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TokenCounter:
    """Counts tokens of strings without special tokens.

    Args:
        tokenizer: A ``transformers`` tokenizer (or anything callable the same way).
        name: Id reported in stats; defaults to the tokenizer's ``name_or_path``.
    """

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.name = name or str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__))

    def count(self, text: str) -> int:
        """Tokens in ``text``.

        Args:
            text: Any string.

        Returns:
            The count (0 for the empty string).
        """
        if not text:
            return 0
        return len(self.tokenizer([text], add_special_tokens=False)["input_ids"][0])

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each string, in one batched call.

        Args:
            texts: Strings.

        Returns:
            One count per string.
        """
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) if t else 0 for x, t in zip(ids, texts, strict=True)]
